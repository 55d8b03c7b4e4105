//! Jobs the API keeps for `GET`: running ones always, finished ones until
//! their retention ends, at most `max` at once.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::notify::Job;

pub struct JobStore {
    jobs: hashbrown::HashMap<u64, Arc<Job>>,
    /// Ids in submission order, for retention.
    order: VecDeque<u64>,
    max: usize,
    retention_ms: u64,
    /// Devices over all kept jobs (each costs ~60 bytes until it expires).
    devices: usize,
    max_devices: usize,
}

impl JobStore {
    pub fn new(max: usize, retention_ms: u64, max_devices: usize) -> JobStore {
        JobStore {
            jobs: hashbrown::HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
            retention_ms,
            devices: 0,
            max_devices,
        }
    }

    /// Drops finished jobs past their retention; true when one more job
    /// of `devices` devices fits.
    pub fn has_room(&mut self, now_ms: u64, devices: usize) -> bool {
        self.purge(now_ms);
        self.jobs.len() < self.max && self.devices.saturating_add(devices) <= self.max_devices
    }

    pub fn insert(&mut self, job: Arc<Job>, now_ms: u64) {
        self.purge(now_ms);
        self.devices += job.devices.len();
        self.order.push_back(job.id);
        self.jobs.insert(job.id, job);
    }

    pub fn get(&mut self, id: u64, now_ms: u64) -> Option<Arc<Job>> {
        self.purge(now_ms);
        self.jobs.get(&id).cloned()
    }

    pub fn running(&self) -> usize {
        self.jobs.values().filter(|j| !j.is_finished()).count()
    }

    fn purge(&mut self, now_ms: u64) {
        let jobs = &mut self.jobs;
        let devices = &mut self.devices;
        let retention = self.retention_ms;
        self.order.retain(|id| {
            let keep = jobs.get(id).is_some_and(|j| {
                let f = j.finished_unix_ms();
                f == 0 || now_ms < f + retention
            });
            if !keep {
                if let Some(j) = jobs.remove(id) {
                    *devices -= j.devices.len();
                }
            }
            keep
        });
    }
}
