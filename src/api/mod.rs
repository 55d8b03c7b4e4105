//! The HTTP control API: fan-out jobs (`/v1/notify`), who is registered
//! (`/v1/registrations/{target}`), Prometheus metrics (`/metrics`) and
//! `/healthz`. [`Service::handle`] is plain request → response, so every
//! rule is unit-tested without sockets; [`http`] serves it with tiny_http on
//! side threads, never on a worker.
//!
//! Over 700 lines on purpose: the routes and their JSON shapes in one file,
//! read top to bottom as the API's reference.

mod access;
mod blocks;
mod fanout;
pub mod http;
mod jobs;
pub mod request;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use serde_json::json;

pub use crate::addr::Cidr;
use access::{Access, Client};
use jobs::JobStore;

use crate::config::{ApiConfig, NotifySection};
use crate::notify::{contact_me_body, resolve, wake_body, Created, Job, JobPart, Kind, Labels};
use crate::runtime::{Command, Control};

/// One HTTP request, as the service sees it.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    pub method: &'a str,
    /// Path and query, e.g. `/v1/notify/12?offset=0&limit=100`.
    pub url: &'a str,
    pub source: IpAddr,
    /// The `Authorization` header's value.
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiResponse {
    fn json(status: u16, v: serde_json::Value) -> ApiResponse {
        ApiResponse {
            status,
            content_type: "application/json",
            body: v.to_string(),
            headers: Vec::new(),
        }
    }

    fn error(status: u16, msg: &str) -> ApiResponse {
        ApiResponse::json(status, json!({ "error": msg }))
    }
}

/// API counters (the API thread is not a worker: atomics are fine here).
#[derive(Debug, Default)]
pub struct ApiStats {
    pub requests_2xx: AtomicU64,
    pub requests_4xx: AtomicU64,
    pub requests_5xx: AtomicU64,
    pub jobs_accepted: AtomicU64,
    /// Fan-out across the cluster: parts handed to other nodes, parts no
    /// node took (unreachable, refused, no API address), parts lost to a
    /// node that stopped answering.
    pub cluster_parts: AtomicU64,
    pub cluster_parts_failed: AtomicU64,
    pub cluster_parts_lost: AtomicU64,
}

/// The control API's state.
pub struct Service {
    ctl: Control,
    epoch: Instant,
    /// Swapped whole by [`Service::set_access`] (SIGHUP).
    access: RwLock<Arc<Access>>,
    jobs: Mutex<JobStore>,
    next_id: AtomicU64,
    labels: Labels,
    max_body: usize,
    /// API handling time, µs.
    latency: Mutex<hdrhistogram::Histogram<u64>>,
    pub stats: Arc<ApiStats>,
    /// `[cluster]` with `cluster.api_client`: jobs reach every node.
    fanout: Option<Arc<fanout::FanoutCfg>>,
    /// The cluster jobs' coordination, by job id (as long as the job is kept).
    fanouts: Mutex<hashbrown::HashMap<u64, Arc<fanout::Fanout>>>,
    coordinators: fanout::Running,
}

impl Service {
    pub fn new(ctl: Control, api: &ApiConfig, notify: &NotifySection) -> Service {
        let epoch = ctl.epoch;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Service {
            ctl,
            epoch,
            access: RwLock::new(Arc::new(Access::new(api))),
            jobs: Mutex::new(JobStore::new(
                api.max_jobs,
                api.job_retention_s * 1000,
                api.max_job_devices,
            )),
            // Job ids are not secrets (jobs are only shown to their owner),
            // but they should not collide across restarts.
            next_id: AtomicU64::new((seed & 0xffff_ffff) << 20),
            labels: crate::config::Config {
                notify: notify.clone(),
                ..Default::default()
            }
            .notify()
            .labels,
            max_body: api.max_body,
            latency: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).expect("bounds"),
            ),
            stats: Arc::new(ApiStats::default()),
            fanout: None,
            fanouts: Mutex::new(hashbrown::HashMap::new()),
            coordinators: Arc::default(),
        }
    }

    /// Fan-out across the cluster, when `cfg` turns it on (`[cluster]` and
    /// `cluster.api_client`).
    pub fn with_cluster(mut self, cfg: &crate::config::Config) -> Service {
        self.fanout = fanout::FanoutCfg::from_config(cfg).map(Arc::new);
        self
    }

    /// Replaces `api.allow` and `api.clients` (a reload): requests that
    /// start after this use the new ones.
    pub fn set_access(&self, api: &ApiConfig) {
        *self.access.write() = Arc::new(Access::new(api));
    }

    /// Largest body the HTTP layer should read.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Answers one request.
    pub fn handle(&self, req: &ApiRequest<'_>) -> ApiResponse {
        let t0 = Instant::now();
        let resp = self.route(req);
        let us = t0.elapsed().as_micros() as u64;
        let _ = self.latency.lock().record(us.max(1));
        let counter = match resp.status {
            200..=299 => &self.stats.requests_2xx,
            400..=499 => &self.stats.requests_4xx,
            _ => &self.stats.requests_5xx,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        resp
    }

    fn route(&self, req: &ApiRequest<'_>) -> ApiResponse {
        let access = self.access.read().clone();
        if !access.source_allowed(req.source) {
            return ApiResponse::error(403, "source address not allowed (api.allow)");
        }
        let (path, query) = req.url.split_once('?').unwrap_or((req.url, ""));
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method, segments.as_slice()) {
            ("GET", ["healthz"]) => ApiResponse {
                status: 200,
                content_type: "text/plain",
                body: "ok\n".into(),
                headers: Vec::new(),
            },
            ("GET", ["metrics"]) => ApiResponse {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: self.metrics(),
                headers: Vec::new(),
            },
            (_, ["healthz"] | ["metrics"]) => method_not_allowed("GET"),
            (_, ["v1", ..]) => {
                let client = match access.authenticate(req.authorization, req.source) {
                    Ok(c) => c,
                    Err(r) => return r,
                };
                match (req.method, &segments[1..]) {
                    ("POST", ["notify"]) => self.submit(req.body, client),
                    (_, ["notify"]) => method_not_allowed("POST"),
                    ("GET", ["notify", id]) => self.show(id, query, client),
                    ("DELETE", ["notify", id]) => self.cancel(id, client),
                    (_, ["notify", _]) => method_not_allowed("GET, DELETE"),
                    ("GET", ["registrations", target]) => self.registrations(target),
                    ("GET", ["calls"]) => self.calls(query),
                    (_, ["calls"]) => method_not_allowed("GET"),
                    ("GET", ["blocks"]) => self.blocks(),
                    (_, ["blocks"]) => method_not_allowed("GET"),
                    ("DELETE", ["blocks", addr]) => self.unblock(addr),
                    (_, ["blocks", _]) => method_not_allowed("DELETE"),
                    (_, ["registrations", _]) => method_not_allowed("GET"),
                    _ => ApiResponse::error(404, "no such resource"),
                }
            }
            _ => ApiResponse::error(404, "no such resource"),
        }
    }

    fn now_secs(&self) -> u32 {
        self.epoch.elapsed().as_secs() as u32
    }

    /// The runtime's clock, as the cores' `now` counts it.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn submit(&self, body: &[u8], client: &Client) -> ApiResponse {
        let request_body = body;
        let (mut spec, part_of) = match request::parse_part(body, &client.name) {
            Ok(s) => s,
            Err(e) => return ApiResponse::json(400, json!({ "error": e.error, "field": e.field })),
        };
        let peer_client = self.fanout.as_ref().map(|f| f.cluster.api_client.as_str());
        if part_of.is_some() && peer_client != Some(client.name.as_str()) {
            return ApiResponse::json(
                403,
                json!({"error": "only the cluster's own client (cluster.api_client) posts a node's part", "field": "cluster_part"}),
            );
        }
        // A part from another node runs here and is never split again.
        let spread = self.fanout.clone().filter(|_| part_of.is_none());
        if spread.is_some() {
            if self.coordinators.load(Ordering::Acquire) >= fanout::MAX_COORDINATORS {
                return ApiResponse::error(
                    503,
                    "too many cluster jobs being handed out; try again shortly",
                );
            }
            // The merged job is reported when every node's part is over.
            spec.callback_url = None;
        }
        if !self.jobs.lock().has_room(unix_ms(), 0) {
            return ApiResponse::error(
                503,
                "too many jobs kept; wait for some to expire (api.max_jobs)",
            );
        }
        let cores = self.ctl.inboxes.len();
        let t0 = Instant::now();
        let (devices, unmatched) = resolve::resolve(
            &self.ctl.directory,
            &spec.targets,
            spec.kind,
            self.now_secs(),
        );
        // Kept jobs hold ~60 bytes per device until they expire: bounded.
        if !self.jobs.lock().has_room(unix_ms(), devices.len()) {
            return ApiResponse::error(
                503,
                "too many job devices kept; wait for jobs to expire (api.max_job_devices)",
            );
        }
        let parts = resolve::split_by_core(&devices, cores);
        let busy: Vec<usize> = (0..parts.len()).filter(|&i| !parts[i].is_empty()).collect();
        let body = match spec.kind {
            Kind::ContactMe => contact_me_body(&spec, &self.labels),
            Kind::WakeInvite => wake_body(&spec, &self.labels),
        };
        let rate = spec.rate.map(|r| (r / busy.len().max(1) as u32).max(1));
        let callback = self
            .fanout
            .is_some()
            .then(|| serde_json::from_slice::<serde_json::Value>(request_body).ok())
            .flatten()
            .and_then(|b| b["callback_url"].as_str().map(str::to_owned));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let job = Arc::new(Job::new(
            id,
            spec,
            body.into_bytes().into(),
            devices,
            unmatched,
            busy.len(),
            Created {
                unix_ms: unix_ms(),
                at: self.now_ms(),
            },
        ));
        self.jobs.lock().insert(job.clone(), unix_ms());
        if let Some(cfg) = spread {
            self.spread(cfg, &job, request_body, callback);
        }
        // The job is reported (webhook) once: by the core that finishes its
        // last part, or here when no core gets a part or the last part could
        // not be handed over.
        let mut report = busy.is_empty();
        for (core, devices) in parts.into_iter().enumerate() {
            if devices.is_empty() {
                continue;
            }
            let part = JobPart {
                job: job.clone(),
                devices,
            };
            report |= self.dispatch(core, part, rate);
        }
        self.stats.jobs_accepted.fetch_add(1, Ordering::Relaxed);
        if report {
            if let Some(req) = job_webhook(&job) {
                // A full queue is counted; the job record still has it all.
                let _ = crate::hooks::enqueue(&self.ctl.http_tx, &self.ctl.hooks, req);
            }
        }
        tracing::info!(
            job = id,
            owner = %client.name,
            kind = job.spec.kind.as_str(),
            devices = job.devices.len(),
            unmatched = job.unmatched.len(),
            setup_ms = t0.elapsed().as_millis() as u64,
            "notify job accepted"
        );
        let mut r = ApiResponse::json(
            202,
            json!({
                "job": id.to_string(),
                "status": status(&job),
                "devices": job.devices.len(),
                "unmatched_targets": unmatched_targets(&job),
                "cluster": self.fanouts.lock().contains_key(&id),
            }),
        );
        r.headers.push(("Location", format!("/v1/notify/{id}")));
        r
    }

    /// Starts handing the other nodes their parts of `job` (see
    /// [`fanout`]); with no coordinator thread the job stays this node's.
    fn spread(
        &self,
        cfg: Arc<fanout::FanoutCfg>,
        job: &Arc<Job>,
        body: &[u8],
        callback: Option<String>,
    ) {
        let Ok(original) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        let state = Arc::new(fanout::Fanout::default());
        {
            let mut f = self.fanouts.lock();
            // Forget the coordination of jobs no longer kept.
            let mut jobs = self.jobs.lock();
            let now = unix_ms();
            f.retain(|id, _| jobs.get(*id, now).is_some());
            f.insert(job.id, state.clone());
        }
        let (http_tx, hooks) = (self.ctl.http_tx.clone(), self.ctl.hooks.clone());
        let me = cfg.cluster.node;
        let webhook: fanout::Webhook = Box::new(move |job: &Job, st: &fanout::State| {
            let Some(url) = callback else { return };
            let v = fanout::merged(job, job_json(job, None), st, me, None);
            let req = crate::hooks::Request {
                url: url.into(),
                body: v.to_string().into_bytes(),
                kind: crate::hooks::Kind::Webhook,
            };
            let _ = crate::hooks::enqueue(&http_tx, &hooks, req);
        });
        let c = fanout::Coordinator {
            cfg,
            job: job.clone(),
            body: original,
            fanout: state,
            running: self.coordinators.clone(),
            stats: self.stats.clone(),
            webhook,
        };
        if let Err(e) = c.spawn() {
            tracing::warn!(job = job.id, error = %e, "cluster job: no coordinator thread; this node's devices only");
            self.fanouts.lock().remove(&job.id);
        }
    }

    /// The job as `GET` shows it: merged over the nodes for a cluster job.
    fn job_view(&self, job: &Job, page: Option<(usize, usize)>) -> serde_json::Value {
        let local = job_json(job, page.map(|(o, l)| (o, l, &*self.ctl.directory)));
        let f = self.fanouts.lock().get(&job.id).cloned();
        match (f, &self.fanout) {
            (Some(f), Some(cfg)) => {
                fanout::merged(job, local, &f.state.lock(), cfg.cluster.node, page)
            }
            _ => local,
        }
    }

    /// Hands a part to its core; a core whose inbox stays full for a second
    /// gets its devices settled as cancelled rather than lost. True when
    /// that settled the job's last part (the caller reports the job).
    fn dispatch(&self, core: usize, part: JobPart, rate: Option<u32>) -> bool {
        let inbox = &self.ctl.inboxes[core];
        let mut cmd = Command::Job(part, rate);
        for _ in 0..100 {
            match inbox.try_send(cmd) {
                Ok(()) => return false,
                Err(back) => {
                    cmd = back;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
        if let Command::Job(part, _) = cmd {
            tracing::warn!(
                core,
                job = part.job.id,
                "worker inbox full: job part cancelled"
            );
            for &d in &part.devices {
                part.job
                    .set_outcome(d as usize, crate::notify::Outcome::Cancelled);
            }
            return part.job.part_done(self.now_ms());
        }
        false
    }

    fn find(&self, id: &str, client: &Client) -> Option<Arc<Job>> {
        let id: u64 = id.parse().ok()?;
        let job = self.jobs.lock().get(id, unix_ms())?;
        // A client sees only its own jobs.
        (job.spec.owner == client.name).then_some(job)
    }

    fn show(&self, id: &str, query: &str, client: &Client) -> ApiResponse {
        let Some(job) = self.find(id, client) else {
            return ApiResponse::error(404, "no such job");
        };
        let mut offset = 0usize;
        let mut limit = 1000usize;
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let n = match v.parse::<usize>() {
                Ok(n) => n,
                Err(_) => {
                    return ApiResponse::json(400, json!({"error": "not a number", "field": k}))
                }
            };
            match k {
                "offset" => offset = n,
                "limit" => limit = n.clamp(1, 10_000),
                _ => {
                    return ApiResponse::json(
                        400,
                        json!({"error": "unknown query parameter; use offset and limit", "field": k}),
                    )
                }
            }
        }
        ApiResponse::json(200, self.job_view(&job, Some((offset, limit))))
    }

    fn cancel(&self, id: &str, client: &Client) -> ApiResponse {
        let Some(job) = self.find(id, client) else {
            return ApiResponse::error(404, "no such job");
        };
        if job.is_finished() && !self.fanouts.lock().contains_key(&job.id) {
            return ApiResponse::json(200, self.job_view(&job, None));
        }
        // A cluster job's coordinator passes the cancellation on.
        job.cancel();
        ApiResponse::json(202, self.job_view(&job, None))
    }

    /// Asks every core through its inbox (`ask` wraps the reply channel in
    /// the command) and gathers their lists; a core that does not answer
    /// within a second is counted as missing rather than waited for.
    fn ask_cores<T>(
        &self,
        ask: impl Fn(crossbeam_channel::Sender<Vec<T>>) -> Command,
    ) -> (Vec<T>, usize) {
        let (tx, rx) = crossbeam_channel::bounded(self.ctl.inboxes.len());
        let asked = self
            .ctl
            .inboxes
            .iter()
            .filter(|inbox| inbox.try_send(ask(tx.clone())).is_ok())
            .count();
        drop(tx);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let mut all = Vec::new();
        let mut answered = 0;
        while answered < asked {
            match rx.recv_deadline(deadline) {
                Ok(list) => {
                    all.extend(list);
                    answered += 1;
                }
                Err(_) => break,
            }
        }
        (all, self.ctl.inboxes.len() - answered)
    }

    /// `GET /v1/calls?offset=N&limit=M`: the dialogs in flight on every
    /// core, asked through the inboxes (a core that does not answer within
    /// a second is reported as missing rather than waited for).
    fn calls(&self, query: &str) -> ApiResponse {
        let param = |name: &str, default: usize| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(default)
        };
        let (offset, limit) = (param("offset", 0), param("limit", 100).clamp(1, 1000));
        let (mut all, missing) = self.ask_cores(Command::Calls);
        all.sort_by(|a, b| {
            b.duration_ms
                .cmp(&a.duration_ms)
                .then(a.call_id.cmp(&b.call_id))
        });
        let total = all.len();
        let page: Vec<_> = all.into_iter().skip(offset).take(limit).collect();
        ApiResponse::json(
            200,
            json!({
                "total": total,
                "offset": offset,
                "limit": limit,
                "cores_missing": missing,
                "calls": page,
            }),
        )
    }

    fn registrations(&self, target: &str) -> ApiResponse {
        // `:` and `@` arrive %-escaped from some clients.
        let target = crate::sip::scan::unescape(target).map_or_else(
            || target.to_owned(),
            |b| String::from_utf8_lossy(&b).into_owned(),
        );
        if target == resolve::ALL {
            return ApiResponse::json(
                400,
                json!({"error": "name one AOR, device id or namespace id", "field": "target"}),
            );
        }
        let (devices, _) = resolve::resolve(
            &self.ctl.directory,
            std::slice::from_ref(&target),
            Kind::WakeInvite,
            self.now_secs(),
        );
        let items: Vec<_> = devices
            .iter()
            .map(|d| {
                let view = self.ctl.directory.with_aor(&d.aor, |r| {
                    r.and_then(|r| r.contacts.iter().find(|c| c.binding == d.binding).cloned())
                });
                json!({
                    "aor": &*d.aor,
                    "contact": view.as_ref().map(|v| v.contact.to_string()),
                    "device": d.instance.as_deref(),
                    "source": view.as_ref().map(|v| v.source.to_string()),
                    "expires_in": view.as_ref().map(|v| v.expires_at.saturating_sub(self.now_secs())),
                    "scope": view.as_ref().and_then(|v| v.scope.as_deref().map(str::to_owned)),
                    "nated": view.as_ref().map(|v| v.is_nated()),
                    "reachable": view.as_ref().map(|v| v.is_reachable()),
                    "contact_me": view.as_ref().map(|v| v.accepts_contact_me()),
                })
            })
            .collect();
        ApiResponse::json(200, json!({ "target": target, "bindings": items }))
    }

    fn metrics(&self) -> String {
        use crate::metrics::{render, render_cores, Desc};
        let mut out = String::with_capacity(8192);
        render_cores(&mut out, &self.ctl.metrics);
        let s = &self.stats;
        let api = [
            (
                "tether_api_requests_2xx_total",
                "API requests answered 2xx.",
                &s.requests_2xx,
            ),
            (
                "tether_api_requests_4xx_total",
                "API requests answered 4xx.",
                &s.requests_4xx,
            ),
            (
                "tether_api_requests_5xx_total",
                "API requests answered 5xx.",
                &s.requests_5xx,
            ),
            (
                "tether_api_jobs_accepted_total",
                "Fan-out jobs accepted.",
                &s.jobs_accepted,
            ),
            (
                "tether_api_cluster_parts_total",
                "Parts of jobs handed to other cluster nodes.",
                &s.cluster_parts,
            ),
            (
                "tether_api_cluster_parts_failed_total",
                "Parts of jobs no node took (unreachable, refused, no API address): their targets are no_binding.",
                &s.cluster_parts_failed,
            ),
            (
                "tether_api_cluster_parts_lost_total",
                "Parts of jobs whose node stopped answering while they ran.",
                &s.cluster_parts_lost,
            ),
        ];
        for (name, help, v) in api {
            render(
                &mut out,
                &Desc {
                    name,
                    log: "",
                    help,
                    counter: true,
                },
                v.load(Ordering::Relaxed),
            );
        }
        self.ctl.hooks.render(&mut out, self.ctl.http_rx.len());
        if let Some(c) = &self.ctl.cluster {
            c.render(&mut out);
        }
        if let Some(p) = &self.ctl.persist {
            p.render(&mut out);
        }
        let running = self.jobs.lock().running();
        render(
            &mut out,
            &Desc {
                name: "tether_api_jobs_running",
                log: "",
                help: "Fan-out jobs not finished yet.",
                counter: false,
            },
            running as u64,
        );
        let h = self.latency.lock();
        out.push_str("# HELP tether_api_latency_microseconds API request handling time.\n");
        out.push_str("# TYPE tether_api_latency_microseconds summary\n");
        for q in [0.5, 0.9, 0.99] {
            out.push_str(&format!(
                "tether_api_latency_microseconds{{quantile=\"{q}\"}} {}\n",
                h.value_at_quantile(q)
            ));
        }
        out.push_str(&format!(
            "tether_api_latency_microseconds_count {}\n",
            h.len()
        ));
        out
    }
}

fn method_not_allowed(allow: &str) -> ApiResponse {
    let mut r = ApiResponse::error(405, "method not allowed");
    r.headers.push(("Allow", allow.into()));
    r
}

fn status(job: &Job) -> &'static str {
    match (job.is_finished(), job.is_cancelled()) {
        (true, true) => "cancelled",
        (true, false) => "finished",
        (false, true) => "cancelling",
        (false, false) => "running",
    }
}

fn unmatched_targets(job: &Job) -> Vec<&str> {
    job.unmatched
        .iter()
        .map(|&i| job.spec.targets[i as usize].as_str())
        .collect()
}

/// The job-result webhook: the finished job's summary (as `GET` shows it,
/// without devices) for its `callback_url`, if it has one.
pub fn job_webhook(job: &Job) -> Option<crate::hooks::Request> {
    let url = job.spec.callback_url.as_deref()?;
    Some(crate::hooks::Request {
        url: url.into(),
        body: job_json(job, None).to_string().into_bytes(),
        kind: crate::hooks::Kind::Webhook,
    })
}

/// A job as JSON; `page` = (offset, limit) of per-device outcomes to
/// include, with each device's contact as the directory has it now.
pub fn job_json(
    job: &Job,
    page: Option<(usize, usize, &crate::registrar::Directory)>,
) -> serde_json::Value {
    let c = job.counts();
    let by_code: serde_json::Map<String, serde_json::Value> = c
        .rejected_by_code
        .iter()
        .map(|(code, n)| (code.to_string(), json!(n)))
        .collect();
    let finished = job.finished_unix_ms();
    let mut v = json!({
        "job": job.id.to_string(),
        "kind": job.spec.kind.as_str(),
        "request_id": job.spec.request_id,
        "status": status(job),
        "created_unix_ms": job.created_unix_ms,
        "finished_unix_ms": (finished != 0).then_some(finished),
        "counts": {
            "targets": c.targets,
            "devices": c.devices,
            "sent": job.sent.load(Ordering::Relaxed),
            "retransmissions": job.retransmissions.load(Ordering::Relaxed),
            "delivered": c.delivered,
            "rejected": c.rejected,
            "rejected_by_code": by_code,
            "timed_out": c.timed_out,
            "no_binding": c.no_binding + c.unmatched_targets,
            "path_dead": c.path_dead,
            "not_accepted": c.not_accepted,
            "cancelled": c.cancelled,
            "in_flight": c.in_flight,
            "pending": c.pending,
        },
        "unmatched_targets": unmatched_targets(job),
    });
    if let Some((offset, limit, dir)) = page {
        let end = offset.saturating_add(limit).min(job.devices.len());
        let items: Vec<_> = (offset.min(end)..end)
            .map(|i| {
                let d = &job.devices[i];
                let o = job.outcome(i);
                let contact = dir.with_aor(&d.aor, |r| {
                    r.and_then(|r| r.contacts.iter().find(|c| c.binding == d.binding))
                        .map(|c| c.contact.to_string())
                });
                json!({
                    "target": job.spec.targets[d.target as usize],
                    "aor": &*d.aor,
                    "contact": contact,
                    "device": d.instance.as_deref(),
                    "outcome": o.name(),
                    "code": o.code(),
                })
            })
            .collect();
        v["devices"] = json!({
            "offset": offset,
            "limit": limit,
            "total": job.devices.len(),
            "items": items,
        });
    }
    v
}

/// Wall-clock milliseconds since the Unix epoch (job times shown to
/// callers, job retention). Read here, not in notify: the cores get time
/// only as `now`.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
