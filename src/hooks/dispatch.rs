//! The HTTP side threads: `webhooks.threads` of them share the runtime's
//! bounded queue of [`Request`]s, each with its own ureq agent (and so its
//! own keep-alive connections).
//!
//! - A **webhook** is POSTed; a 2xx is delivered. Anything else (another
//!   status, refused, timed out) is tried again `webhooks.retries` times,
//!   after `webhooks.backoff_ms`, doubled each time, then counted failed.
//!   A retry waits in its thread's own due-queue, not in a sleep, so the
//!   thread goes on with the queue meanwhile.
//! - With `webhooks.batch` above 1, the events for `webhooks.url` go as
//!   a JSON array: the one a thread takes, and those queued behind it at
//!   that moment (it never waits to fill a batch), up to `batch`. Under
//!   load, one POST then carries many events; that is what keeps tens of
//!   thousands of events per second affordable (BENCHMARKS.md).
//! - A **callout** is POSTed once within its own `timeout_ms`; its status
//!   and body (at most [`MAX_ANSWER`] bytes) go back to the asking core as
//!   [`Command::HttpAnswer`]; no answer is status 0.
//!
//! With `webhooks.secret` set every request carries [`super::sign`]'s
//! header. The threads start with the runtime and end at its shutdown,
//! after the request each has in hand; what is still queued then is
//! dropped (logged).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, Receiver, Sender, TryRecvError};

use super::{sign, Answer, Kind, Request, Stats};
use crate::config::WebhookConfig;
use crate::endpoint::Command;
use crate::runtime::Inbox;

/// The most of a callout's answer body handed to the core.
pub const MAX_ANSWER: usize = 64 * 1024;

/// The running side threads.
pub struct Dispatcher {
    threads: Vec<JoinHandle<()>>,
    /// Dropped to stop the threads (they select on its receiver).
    stop: Option<Sender<()>>,
}

impl Dispatcher {
    /// Starts `cfg.threads` threads taking requests from `queue`; callout
    /// answers go to `inboxes[core]`.
    pub fn start(
        cfg: &WebhookConfig,
        queue: Receiver<Request>,
        inboxes: Vec<Inbox>,
        stats: Arc<Stats>,
    ) -> std::io::Result<Dispatcher> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let n = cfg.threads.max(1);
        // A thread's retries wait in its own queue: together they hold at
        // most what the shared queue does.
        let max_waiting = (cfg.queue / n).max(1);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let config = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_millis(cfg.timeout_ms)))
                // Callouts want the status of every answer; webhooks
                // read it themselves.
                .http_status_as_error(false)
                .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
                .build();
            let mut t = Poster {
                agent: ureq::Agent::with_parts(
                    config,
                    ureq::unversioned::transport::DefaultConnector::default(),
                    super::resolve::CachingResolver::default(),
                ),
                secret: cfg.secret.as_deref().map(|s| s.as_bytes().into()),
                batch: (cfg.batch > 1 && !cfg.url.is_empty())
                    .then(|| (Arc::<str>::from(cfg.url.as_str()), cfg.batch)),
                retries: cfg.retries,
                backoff_ms: cfg.backoff_ms,
                max_waiting,
                queue: queue.clone(),
                stop: stop_rx.clone(),
                inboxes: inboxes.clone(),
                stats: stats.clone(),
                waiting: BinaryHeap::new(),
                seq: 0,
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tether-http{i}"))
                    .spawn(move || t.run())?,
            );
        }
        Ok(Dispatcher {
            threads,
            stop: Some(stop_tx),
        })
    }

    /// Stops the threads and waits for them: each finishes the request it
    /// has in hand (at most `webhooks.timeout_ms`, or a callout's own).
    pub fn shutdown(mut self) {
        self.stop.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A webhook waiting for its next attempt.
struct Retry {
    due: Instant,
    /// Breaks ties in arrival order.
    seq: u64,
    req: Request,
    /// Events it carries (more than one in a batch).
    events: u64,
    /// Attempts made so far.
    attempts: u32,
}

impl PartialEq for Retry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Retry {}
impl PartialOrd for Retry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Retry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// What one POST got.
enum Reply {
    /// An HTTP answer (any status), with its body when asked for.
    Status(u16, Vec<u8>),
    /// None: refused, timed out, or broken off.
    Failed(String),
}

/// Whether a counter going from `before` to `after` passed a power of two:
/// one log line per doubling, so a flood shows without flooding the log.
fn doubled(before: u64, after: u64) -> bool {
    after > before && (before == 0 || after.ilog2() != before.ilog2())
}

/// One side thread.
struct Poster {
    agent: ureq::Agent,
    secret: Option<Box<[u8]>>,
    /// `webhooks.url` and `webhooks.batch`, when batching.
    batch: Option<(Arc<str>, usize)>,
    retries: u32,
    backoff_ms: u64,
    max_waiting: usize,
    queue: Receiver<Request>,
    stop: Receiver<()>,
    inboxes: Vec<Inbox>,
    stats: Arc<Stats>,
    /// Webhooks waiting for a retry, earliest first.
    waiting: BinaryHeap<Reverse<Retry>>,
    seq: u64,
}

impl Poster {
    fn run(&mut self) {
        loop {
            let now = Instant::now();
            while self.waiting.peek().is_some_and(|r| r.0.due <= now) {
                if self.stopped() {
                    return self.quit();
                }
                let Some(Reverse(r)) = self.waiting.pop() else {
                    break;
                };
                self.stats.retry_waiting.fetch_sub(1, Ordering::Relaxed);
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                self.webhook(r.req, r.events, r.attempts);
            }
            let wait = self.waiting.peek().map_or(Duration::from_secs(3600), |r| {
                r.0.due.saturating_duration_since(Instant::now())
            });
            select! {
                recv(self.queue) -> req => match req {
                    Ok(req) => self.handle(req),
                    // Every sender is gone: nothing more can come.
                    Err(_) if self.waiting.is_empty() => return,
                    Err(_) => std::thread::sleep(wait.min(Duration::from_millis(100))),
                },
                recv(self.stop) -> _ => return self.quit(),
                default(wait) => {}
            }
            if self.stopped() {
                return self.quit();
            }
        }
    }

    fn stopped(&self) -> bool {
        matches!(self.stop.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// At shutdown: what this thread leaves unsent, logged.
    fn quit(&mut self) {
        let left = self.waiting.len();
        if left > 0 {
            self.stats
                .retry_waiting
                .fetch_sub(left as u64, Ordering::Relaxed);
            tracing::info!(webhooks = left, "shutting down: retries not attempted");
        }
        self.waiting.clear();
    }

    fn handle(&mut self, req: Request) {
        match req.kind {
            Kind::Webhook => match &self.batch {
                Some((url, max)) if *url == req.url => {
                    let max = *max;
                    self.batch(req, max)
                }
                _ => self.webhook(req, 1, 0),
            },
            Kind::Callout {
                core,
                purpose,
                id,
                timeout_ms,
            } => {
                let reply = self.post(&req, Some(Duration::from_millis(timeout_ms)), true);
                let answer = match reply {
                    Reply::Status(status, body) => {
                        self.stats.callouts_answered.fetch_add(1, Ordering::Relaxed);
                        Answer {
                            purpose,
                            id,
                            status,
                            body: body.into_boxed_slice(),
                        }
                    }
                    Reply::Failed(e) => {
                        self.stats.callouts_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(url = %req.url, error = %e, ?purpose, "callout got no answer");
                        Answer::none(purpose, id)
                    }
                };
                // A full inbox or a gone core: the core's own deadline covers it.
                let sent = self
                    .inboxes
                    .get(usize::from(core))
                    .is_some_and(|inbox| inbox.send(Command::HttpAnswer(answer)));
                if !sent {
                    tracing::debug!(
                        core,
                        ?purpose,
                        id,
                        "callout answer not delivered to its core"
                    );
                }
            }
        }
    }

    /// Sends `first` (an event for `webhooks.url`) and the events queued
    /// behind it, up to `max`, as one JSON array. Anything else taken off
    /// the queue meanwhile is handled after it.
    fn batch(&mut self, first: Request, max: usize) {
        let mut body = Vec::with_capacity(first.body.len() * 8);
        body.push(b'[');
        body.extend_from_slice(&first.body);
        let mut events = 1;
        let mut others = Vec::new();
        while events < max {
            match self.queue.try_recv() {
                Ok(r) if r.kind == Kind::Webhook && r.url == first.url => {
                    body.push(b',');
                    body.extend_from_slice(&r.body);
                    events += 1;
                }
                Ok(r) => {
                    others.push(r);
                    // A callout waits at most for this batch's POST.
                    if others.len() >= 16 {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        body.push(b']');
        let req = Request { body, ..first };
        self.webhook(req, events as u64, 0);
        // Callouts and other URLs' webhooks: `handle` sends them as they came.
        for r in others {
            self.handle(r);
        }
    }

    /// One attempt of a webhook carrying `events` events that had
    /// `attempts` before.
    fn webhook(&mut self, req: Request, events: u64, attempts: u32) {
        let error = match self.post(&req, None, false) {
            Reply::Status(200..=299, _) => {
                self.stats.delivered.fetch_add(events, Ordering::Relaxed);
                return;
            }
            Reply::Status(status, _) => format!("HTTP status {status}"),
            Reply::Failed(e) => e,
        };
        if attempts >= self.retries {
            let n = self.stats.failed.fetch_add(events, Ordering::Relaxed) + events;
            tracing::debug!(url = %req.url, %error, attempts = attempts + 1, "webhook failed; giving up");
            if doubled(n - events, n) {
                tracing::warn!(url = %req.url, %error, failed_total = n, "webhook failed every attempt");
            }
            return;
        }
        if self.waiting.len() >= self.max_waiting {
            let n = self.stats.dropped.fetch_add(events, Ordering::Relaxed) + events;
            if doubled(n - events, n) {
                tracing::warn!(url = %req.url, dropped_total = n, "webhook retry queue full: dropped (webhooks.queue)");
            }
            return;
        }
        let backoff = self.backoff_ms.saturating_mul(1 << attempts.min(16));
        tracing::debug!(url = %req.url, %error, attempt = attempts + 1, backoff_ms = backoff, "webhook failed; retrying");
        self.seq += 1;
        self.waiting.push(Reverse(Retry {
            due: Instant::now() + Duration::from_millis(backoff),
            seq: self.seq,
            req,
            events,
            attempts: attempts + 1,
        }));
        self.stats.retry_waiting.fetch_add(1, Ordering::Relaxed);
    }

    /// POSTs `req` (signed when there is a secret). `timeout` replaces the
    /// agent's `webhooks.timeout_ms`; `want_body` keeps up to
    /// [`MAX_ANSWER`] bytes of the answer, otherwise it is read and dropped
    /// (so the connection is kept for the next request).
    fn post(&self, req: &Request, timeout: Option<Duration>, want_body: bool) -> Reply {
        let mut r = self
            .agent
            .post(&*req.url)
            .header("Content-Type", "application/json");
        if let Some(secret) = &self.secret {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            r = r.header(sign::HEADER, sign::signature(secret, t, &req.body));
        }
        if let Some(t) = timeout {
            r = r.config().timeout_global(Some(t)).build();
        }
        let mut resp = match r.send(&req.body[..]) {
            Ok(resp) => resp,
            Err(e) => return Reply::Failed(e.to_string()),
        };
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        let read = resp
            .body_mut()
            .with_config()
            .reader()
            .take(MAX_ANSWER as u64)
            .read_to_end(&mut body);
        match read {
            Ok(_) if want_body => Reply::Status(status, body),
            Ok(_) => Reply::Status(status, Vec::new()),
            // The status came but the body broke off: no usable answer.
            Err(e) if want_body => Reply::Failed(e.to_string()),
            Err(_) => Reply::Status(status, Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::Purpose;

    /// A loopback HTTP server answering every request `status` with a
    /// body of `len` bytes; it hands each request's signature header over.
    fn server(status: u16, len: usize) -> (String, Receiver<Option<String>>) {
        let s = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}/callout", s.server_addr().to_ip().unwrap());
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            while let Ok(req) = s.recv() {
                let sig = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv(sign::HEADER))
                    .map(|h| h.value.to_string());
                let _ = tx.send(sig);
                let _ = req.respond(
                    tiny_http::Response::from_data(vec![b'x'; len]).with_status_code(status),
                );
            }
        });
        (url, rx)
    }

    fn callout(url: &str, core: u16, id: u64) -> Request {
        Request {
            url: url.into(),
            body: b"{}".to_vec(),
            kind: Kind::Callout {
                core,
                purpose: Purpose::Route,
                id,
                timeout_ms: 5000,
            },
        }
    }

    #[test]
    fn callouts_are_answered_to_their_core_signed_and_bounded() {
        let (url, seen) = server(403, MAX_ANSWER + 100);
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (mut inboxes, mut rx) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let (t, r) = crossbeam_channel::bounded(4);
            inboxes.push(Inbox::new(t, waker.clone()));
            rx.push(r);
        }
        let cfg = WebhookConfig {
            secret: Some("k".into()),
            threads: 1,
            ..WebhookConfig::default()
        };
        let (tx, queue) = crossbeam_channel::bounded(8);
        let stats = Arc::new(Stats::default());
        let d = Dispatcher::start(&cfg, queue, inboxes, stats.clone()).unwrap();
        // A port nobody listens on: refused at once.
        let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://{}/", refused.local_addr().unwrap());
        drop(refused);
        tx.send(callout(&url, 1, 7)).unwrap();
        tx.send(callout(&dead, 0, 8)).unwrap();
        let wait = Duration::from_secs(10);
        let Ok(Command::HttpAnswer(a)) = rx[1].recv_timeout(wait) else {
            panic!("no answer on core 1");
        };
        assert_eq!((a.purpose, a.id, a.status), (Purpose::Route, 7, 403));
        assert_eq!(a.body.len(), MAX_ANSWER, "the body is cut at 64 KiB");
        let Ok(Command::HttpAnswer(a)) = rx[0].recv_timeout(wait) else {
            panic!("no answer on core 0");
        };
        assert_eq!(a, Answer::none(Purpose::Route, 8));
        let sig = seen.recv_timeout(wait).unwrap().expect("signed");
        assert!(sig.starts_with("t=") && sig.contains(",v1="), "{sig}");
        d.shutdown();
        assert_eq!(stats.callouts_answered.load(Ordering::Relaxed), 1);
        assert_eq!(stats.callouts_failed.load(Ordering::Relaxed), 1);
    }
}
