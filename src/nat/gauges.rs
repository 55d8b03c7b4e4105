//! Path gauges for the metrics.

use super::PathState;

/// Paths per state and dead paths, kept as they change: the metrics read
/// them every second and a scan of a million paths is ~150 MB of memory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gauges {
    /// Indexed by [`gauge_slot`]: registration-only, dialog+registration, dialog-only.
    pub(super) by_state: [u64; 3],
    pub(super) dead: u64,
}

impl Gauges {
    pub(super) fn moved(&mut self, from: PathState, to: PathState) {
        if from == to {
            return;
        }
        if let Some(i) = gauge_slot(from) {
            self.by_state[i] -= 1;
        }
        if let Some(i) = gauge_slot(to) {
            self.by_state[i] += 1;
        }
    }
}

pub(super) fn gauge_slot(s: PathState) -> Option<usize> {
    match s {
        PathState::RegistrationOnly => Some(0),
        PathState::DialogAndRegistration => Some(1),
        PathState::DialogOnly => Some(2),
        PathState::Idle => None,
    }
}
