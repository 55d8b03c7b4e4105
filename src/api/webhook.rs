//! Job results to the application server: when a job finishes, its summary
//! is POSTed as JSON to the job's `callback_url`, with retries and doubling
//! backoff, from one side thread fed by a bounded channel.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::ApiStats;
use crate::config::WebhookConfig;
use crate::notify::Job;

struct Pending {
    due: Instant,
    job: Arc<Job>,
    attempt: u32,
}

/// Starts the webhook thread. It ends when every sender of `finished` is gone.
pub fn spawn(
    cfg: WebhookConfig,
    finished: Receiver<Arc<Job>>,
    stats: Arc<ApiStats>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tether-webhooks".into())
        .spawn(move || run(&cfg, &finished, &stats))
}

fn run(cfg: &WebhookConfig, finished: &Receiver<Arc<Job>>, stats: &ApiStats) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(cfg.timeout_ms)))
        .build()
        .into();
    let mut queue: Vec<Pending> = Vec::new();
    loop {
        let wait = queue
            .iter()
            .map(|p| p.due.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        match finished.recv_timeout(wait) {
            Ok(job) if job.spec.callback_url.is_some() => {
                if queue.len() >= cfg.queue {
                    stats.webhooks_dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        job = job.id,
                        "webhook queue full: result not sent (webhooks.queue)"
                    );
                } else {
                    queue.push(Pending {
                        due: Instant::now(),
                        job,
                        attempt: 0,
                    });
                }
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) if queue.is_empty() => return,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(wait.min(Duration::from_millis(100)));
            }
        }
        let now = Instant::now();
        let mut i = 0;
        while i < queue.len() {
            if queue[i].due > now {
                i += 1;
                continue;
            }
            let p = queue.swap_remove(i);
            let url = p.job.spec.callback_url.as_deref().unwrap_or_default();
            let body = super::job_json(&p.job, None).to_string();
            let result = agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(body.as_bytes());
            match result {
                Ok(_) => {
                    stats.webhooks_delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if p.attempt < cfg.retries => {
                    let backoff = cfg.backoff_ms.saturating_mul(1 << p.attempt.min(16));
                    tracing::info!(job = p.job.id, %url, error = %e, attempt = p.attempt + 1, "webhook failed; retrying");
                    queue.push(Pending {
                        due: Instant::now() + Duration::from_millis(backoff),
                        job: p.job,
                        attempt: p.attempt + 1,
                    });
                }
                Err(e) => {
                    stats.webhooks_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(job = p.job.id, %url, error = %e, "webhook failed; giving up");
                }
            }
        }
    }
}
