//! Job runs: the job parts this core is sending, which device of each comes
//! next, how many sent devices still await a final outcome, and the counting
//! of outcomes as devices settle. A run retires when every device it holds
//! is sent and settled; the last run of a job, on any core, finishes it.

use std::sync::Arc;

use super::engine::Stats;
use super::job::{Job, JobPart, Outcome};
use super::pace::Bucket;

/// A job part in progress on this core.
struct Run {
    part: JobPart,
    /// Index into `part.devices` of the next device to send.
    next: usize,
    /// Devices sent whose outcome is not settled yet.
    outstanding: usize,
    /// The job's own rate limit (this core's share), if it has one.
    bucket: Option<Bucket>,
}

impl Run {
    fn unsent(&self) -> usize {
        self.part.devices.len() - self.next
    }
}

/// This core's runs, by slot (a slot is reused once its run retires).
#[derive(Default)]
pub(super) struct Runs {
    slots: Vec<Option<Run>>,
    /// Devices sent to whose outcome is not settled yet, over all runs
    /// (what pacing limits).
    awaiting: usize,
}

impl Runs {
    /// Takes a job part; `rate` is this core's share of the job's own rate
    /// limit. Returns its run slot (the caller then checks it for done: a
    /// part may hold no device).
    pub fn start(&mut self, part: JobPart, rate: Option<u32>, now: u64) -> u32 {
        let run = Run {
            part,
            next: 0,
            outstanding: 0,
            bucket: rate.map(|r| Bucket::new(r, now)),
        };
        let idx = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.slots[idx] = Some(run);
        idx as u32
    }

    /// Run slots, live or free (runs are visited by slot index).
    pub fn slots(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Runs still going.
    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    pub fn awaiting(&self) -> usize {
        self.awaiting
    }

    /// True when some run has devices not sent yet.
    pub fn has_unsent(&self) -> bool {
        self.slots.iter().flatten().any(|r| r.unsent() > 0)
    }

    /// The job of a live run.
    pub fn job(&self, run: u32) -> Arc<Job> {
        let r = self.slots[run as usize].as_ref().expect("live run");
        r.part.job.clone()
    }

    /// How many devices `run` may send now, at most `budget`, its own rate
    /// limit's tokens taken for them. A cancelled job's unsent devices are
    /// settled as cancelled instead (0 to send). `None`: no such run.
    pub fn quota(&mut self, run: u32, budget: usize, now: u64, stats: &mut Stats) -> Option<usize> {
        let r = self.slots[run as usize].as_mut()?;
        if r.part.job.is_cancelled() {
            for &d in &r.part.devices[r.next..] {
                r.part.job.set_outcome(d as usize, Outcome::Cancelled);
                stats.cancelled += 1;
            }
            r.next = r.part.devices.len();
            return Some(0);
        }
        let mut n = budget.min(r.unsent());
        if let Some(b) = r.bucket.as_mut() {
            n = n.min(b.available(now));
            b.take(n);
        }
        Some(n)
    }

    /// Takes `run`'s next unsent device.
    pub fn next_device(&mut self, run: u32) -> Option<u32> {
        let r = self.slots[run as usize].as_mut()?;
        let d = *r.part.devices.get(r.next)?;
        r.next += 1;
        Some(d)
    }

    /// A device of `run` was sent its request: it awaits an outcome.
    pub fn sent(&mut self, run: u32) {
        if let Some(r) = self.slots[run as usize].as_mut() {
            r.outstanding += 1;
        }
        self.awaiting += 1;
    }

    /// A sent device of `run` settled with `o` (the first final outcome
    /// only): counts it and retires the run if that was its last. Returns the
    /// job when this finished it.
    pub fn settle(
        &mut self,
        run: u32,
        o: Outcome,
        now: u64,
        stats: &mut Stats,
    ) -> Option<Arc<Job>> {
        self.awaiting -= 1;
        count(stats, o);
        let r = self.slots[run as usize].as_mut()?;
        r.outstanding -= 1;
        self.check_done(run, now, stats)
    }

    /// Retires `run` if its devices are all sent and settled at `now`.
    /// Returns the job when that was the job's last part anywhere.
    pub fn check_done(&mut self, run: u32, now: u64, stats: &mut Stats) -> Option<Arc<Job>> {
        let r = self.slots[run as usize].as_ref()?;
        if r.unsent() > 0 || r.outstanding > 0 {
            return None;
        }
        let r = self.slots[run as usize].take().expect("checked");
        stats.parts_finished += 1;
        if r.part.job.part_done(now) {
            stats.jobs_finished += 1;
            return Some(r.part.job);
        }
        None
    }
}

/// Counts a device's settled outcome.
pub(super) fn count(stats: &mut Stats, o: Outcome) {
    match o {
        Outcome::Delivered(_) => stats.delivered += 1,
        Outcome::Rejected(_) => stats.rejected += 1,
        Outcome::TimedOut => stats.timed_out += 1,
        Outcome::NoBinding => stats.no_binding += 1,
        Outcome::PathDead => stats.path_dead += 1,
        Outcome::NotAccepted => stats.not_accepted += 1,
        Outcome::Cancelled => stats.cancelled += 1,
        Outcome::Pending | Outcome::InFlight => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Created;

    fn job(devices: usize) -> Arc<Job> {
        let (spec, dev) = crate::notify::job::sample();
        Arc::new(Job::new(
            1,
            spec,
            Box::default(),
            vec![dev; devices],
            vec![],
            1,
            Created { unix_ms: 0, at: 0 },
        ))
    }

    #[test]
    fn a_run_retires_once_every_device_is_sent_and_settled() {
        let (mut runs, mut stats) = (Runs::default(), Stats::default());
        let j = job(2);
        let part = JobPart {
            job: j.clone(),
            devices: vec![0, 1],
        };
        // A job rate of 1/s: one send now, whatever the budget.
        let r = runs.start(part, Some(1), 0);
        assert_eq!(runs.quota(r, 10, 0, &mut stats), Some(1));
        assert_eq!(runs.next_device(r), Some(0));
        runs.sent(r);
        assert!(
            runs.check_done(r, 0, &mut stats).is_none(),
            "a device is unsent"
        );
        assert_eq!(runs.quota(r, 10, 1000, &mut stats), Some(1));
        assert_eq!(runs.next_device(r), Some(1));
        runs.sent(r);
        assert!(!runs.has_unsent());
        assert_eq!(runs.awaiting(), 2);
        assert!(runs
            .settle(r, Outcome::Delivered(200), 0, &mut stats)
            .is_none());
        let done = runs.settle(r, Outcome::TimedOut, 7000, &mut stats);
        assert!(done.is_some_and(|d| Arc::ptr_eq(&d, &j)));
        assert_eq!(j.finished_unix_ms(), 7000, "finished at the settling's now");
        assert_eq!((runs.active(), runs.awaiting()), (0, 0));
        assert_eq!((stats.delivered, stats.timed_out), (1, 1));
        assert_eq!((stats.parts_finished, stats.jobs_finished), (1, 1));
    }

    #[test]
    fn a_cancelled_job_settles_its_unsent_devices_as_cancelled() {
        let (mut runs, mut stats) = (Runs::default(), Stats::default());
        let j = job(3);
        let r = runs.start(
            JobPart {
                job: j.clone(),
                devices: vec![0, 1, 2],
            },
            None,
            0,
        );
        assert_eq!(runs.next_device(r), Some(0));
        j.cancel();
        assert_eq!(runs.quota(r, 10, 0, &mut stats), Some(0));
        assert_eq!(stats.cancelled, 2);
        assert_eq!(j.outcome(2), Outcome::Cancelled);
        assert_eq!(j.outcome(0), Outcome::Pending, "a sent device is not");
        assert!(runs.check_done(r, 0, &mut stats).is_some());
    }
}
