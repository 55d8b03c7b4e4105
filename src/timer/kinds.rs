//! Every deadline a core keeps, as one enum on one wheel.
//!
//! A core's state machines (registrar, NAT keepalive, fan-out engine, the
//! proxy's transactions and dialogs, REGISTERs waiting on a callout) share
//! one [`Timers`]: they arm and cancel through it, and the endpoint polls
//! it and hands each due [`Timer`] to the state machine its variant names. One unit
//! (milliseconds on the runtime's clock), one `poll_timeout`.
//!
//! On the wheel a timer is packed into 8 bytes (a 3-bit kind, a 29-bit and
//! a 32-bit field), so a record is 16 bytes: at a million endpoints the
//! two timers each keeps (binding expiry, keepalive check) would cost 16 MB
//! more as a plain 12-byte enum padded to 16.

use super::{TimerHandle, TimerWheel};

/// What a keepalive timer of a NAT path is for (seed 004).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveStep {
    /// Time to check whether the path has been idle for the interval.
    Check,
    /// Halfway through a prompt's timeout: retransmit.
    Retransmit,
    /// A prompt's timeout.
    Timeout,
    /// The linger after the last dialog is over.
    Linger,
}

/// A deadline of one of a core's state machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The registrar's binding in `slot` (of generation `gen`) may expire.
    Expiry { slot: u32, gen: u32 },
    /// A step of NAT path `path`'s keepalive; `nonce` (30 bits) tells a
    /// superseded one apart (keepalive timers take no handle).
    Keepalive {
        path: u32,
        step: KeepaliveStep,
        nonce: u32,
    },
    /// The fan-out client transaction in `slot` (`nonce` tells reuses apart):
    /// retransmission or timeout (RFC 3261 Timers A/B/E/F/K, the ring timer).
    Transaction { slot: u32, nonce: u32 },
    /// The fan-out pacer may send again.
    Pace,
    /// Sweep the contact-me subscriptions for expired ones.
    Subscriptions,
    /// A deadline of the proxy transaction in `slot`: `what` names its
    /// server transaction, a branch, a branch's CANCEL or Timer C (see
    /// `proxy::timers`); the low 24 bits of `nonce` tell reuses apart.
    Proxy { slot: u32, what: u8, nonce: u32 },
    /// The dialog in `slot` has lasted `proxy.max_call_s`.
    Dialog { slot: u32, nonce: u32 },
    /// The REGISTER parked in `slot` (`nonce` tells reuses apart) has
    /// waited `auth.http.timeout_ms` for the authorization service.
    Authorize { slot: u32, nonce: u32 },
}

/// The largest value of a packed timer's 29-bit field (slot and path
/// indices: half a billion per core).
pub const MAX_INDEX: u32 = (1 << 29) - 1;

/// The largest keepalive timer nonce (30 bits, beside the 2-bit step).
pub const MAX_NONCE: u32 = (1 << 30) - 1;

/// A [`Timer`] in 8 bytes: kind in the top 3 bits, then a 29-bit index,
/// then a 32-bit field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed(u64);

const EXPIRY: u64 = 0;
const KEEPALIVE: u64 = 1;
const TRANSACTION: u64 = 2;
const PACE: u64 = 3;
const SUBSCRIPTIONS: u64 = 4;
const PROXY: u64 = 5;
const DIALOG: u64 = 6;
/// The last of the eight kinds the 3-bit field holds.
const AUTHORIZE: u64 = 7;

impl Packed {
    fn new(kind: u64, index: u32, field: u32) -> Packed {
        assert!(index <= MAX_INDEX, "timer index {index} over 29 bits");
        Packed(kind << 61 | u64::from(index) << 32 | u64::from(field))
    }

    pub fn pack(t: Timer) -> Packed {
        match t {
            Timer::Expiry { slot, gen } => Packed::new(EXPIRY, slot, gen),
            Timer::Keepalive { path, step, nonce } => {
                Packed::new(KEEPALIVE, path, (nonce & MAX_NONCE) << 2 | step as u32)
            }
            Timer::Transaction { slot, nonce } => Packed::new(TRANSACTION, slot, nonce),
            Timer::Pace => Packed::new(PACE, 0, 0),
            Timer::Subscriptions => Packed::new(SUBSCRIPTIONS, 0, 0),
            Timer::Proxy { slot, what, nonce } => {
                Packed::new(PROXY, slot, (nonce & 0xFF_FFFF) << 8 | u32::from(what))
            }
            Timer::Dialog { slot, nonce } => Packed::new(DIALOG, slot, nonce),
            Timer::Authorize { slot, nonce } => Packed::new(AUTHORIZE, slot, nonce),
        }
    }

    pub fn unpack(self) -> Timer {
        let index = ((self.0 >> 32) as u32) & MAX_INDEX;
        let field = self.0 as u32;
        match self.0 >> 61 {
            EXPIRY => Timer::Expiry {
                slot: index,
                gen: field,
            },
            KEEPALIVE => Timer::Keepalive {
                path: index,
                nonce: field >> 2,
                step: match field & 3 {
                    0 => KeepaliveStep::Check,
                    1 => KeepaliveStep::Retransmit,
                    2 => KeepaliveStep::Timeout,
                    _ => KeepaliveStep::Linger,
                },
            },
            TRANSACTION => Timer::Transaction {
                slot: index,
                nonce: field,
            },
            PACE => Timer::Pace,
            PROXY => Timer::Proxy {
                slot: index,
                what: field as u8,
                nonce: field >> 8,
            },
            DIALOG => Timer::Dialog {
                slot: index,
                nonce: field,
            },
            AUTHORIZE => Timer::Authorize {
                slot: index,
                nonce: field,
            },
            _ => Timer::Subscriptions,
        }
    }
}

/// One core's timers: a [`TimerWheel`] of [`Timer`]s.
#[derive(Debug, Default)]
pub struct Timers {
    wheel: TimerWheel<Packed>,
}

impl Timers {
    /// A wheel whose clock starts at `now` (ms).
    pub fn new(now: u64) -> Timers {
        Timers {
            wheel: TimerWheel::new(now),
        }
    }

    /// Arms `t` for `at` (ms); a time already past fires on the next poll.
    pub fn arm(&mut self, at: u64, t: Timer) -> TimerHandle {
        self.wheel.insert(at, Packed::pack(t))
    }

    /// Arms `t` for `at` without a handle, for timers never cancelled
    /// (see [`TimerWheel::insert_unhandled`]).
    pub fn arm_unhandled(&mut self, at: u64, t: Timer) {
        self.wheel.insert_unhandled(at, Packed::pack(t));
    }

    /// Disarms a timer; true if it was still pending.
    pub fn cancel(&mut self, h: TimerHandle) -> bool {
        self.wheel.cancel(h)
    }

    /// One timer due at `now`, or `None`; call until `None`.
    pub fn poll(&mut self, now: u64) -> Option<Timer> {
        self.wheel.poll(now).map(|(_, p)| p.unpack())
    }

    /// The timer `ahead` places after the next [`Self::poll`], if already
    /// due (see [`TimerWheel::peek_due`]).
    pub fn peek_due(&self, ahead: usize) -> Option<Timer> {
        self.wheel.peek_due(ahead).map(|p| p.unpack())
    }

    /// When the next timer is due (never later than its deadline).
    pub fn next_deadline(&self) -> Option<u64> {
        self.wheel.next_deadline()
    }

    /// Pending timers.
    pub fn len(&self) -> usize {
        self.wheel.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wheel.is_empty()
    }

    /// See [`TimerWheel::heap_bytes`].
    pub fn heap_bytes(&self) -> (usize, usize) {
        self.wheel.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_eight_bytes() {
        assert_eq!(std::mem::size_of::<Packed>(), 8);
        let steps = [
            KeepaliveStep::Check,
            KeepaliveStep::Retransmit,
            KeepaliveStep::Timeout,
            KeepaliveStep::Linger,
        ];
        let mut all = vec![Timer::Pace, Timer::Subscriptions];
        for (i, v) in [(0, 0), (1, 7), (MAX_INDEX, u32::MAX), (12345, 1 << 31)] {
            all.push(Timer::Expiry { slot: i, gen: v });
            all.push(Timer::Transaction { slot: i, nonce: v });
            all.push(Timer::Dialog { slot: i, nonce: v });
            all.push(Timer::Authorize { slot: i, nonce: v });
            all.push(Timer::Proxy {
                slot: i,
                what: v as u8,
                nonce: v & 0xFF_FFFF,
            });
            for step in steps {
                all.push(Timer::Keepalive {
                    path: i,
                    step,
                    nonce: v & MAX_NONCE,
                });
            }
        }
        for t in all {
            assert_eq!(Packed::pack(t).unpack(), t);
        }
    }

    #[test]
    #[should_panic(expected = "over 29 bits")]
    fn an_index_over_29_bits_is_refused() {
        Packed::pack(Timer::Expiry {
            slot: MAX_INDEX + 1,
            gen: 0,
        });
    }

    #[test]
    fn fires_in_deadline_order_and_cancels() {
        let mut t = Timers::new(0);
        t.arm(30, Timer::Pace);
        let h = t.arm(10, Timer::Subscriptions);
        t.arm(20, Timer::Expiry { slot: 1, gen: 2 });
        assert!(t.cancel(h));
        assert_eq!(t.next_deadline().map(|d| d <= 20), Some(true));
        assert_eq!(t.poll(25), Some(Timer::Expiry { slot: 1, gen: 2 }));
        assert_eq!(t.poll(25), None);
        assert_eq!(t.poll(30), Some(Timer::Pace));
        assert!(t.is_empty());
    }
}
