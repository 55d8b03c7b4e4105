//! Fan-out across the cluster (issue 18): a job posted to any node with
//! `[cluster]` on reaches every node's devices, each prompted by the node
//! that owns it, and reports one merged result.
//!
//! The node the job was posted to (the origin) runs its own part at once,
//! like any job. A coordinator thread of its own (never a worker; it may
//! wait on Redis and HTTP) then resolves the targets' owners from the
//! ownership records, posts each other live node its part, and follows the
//! parts until they finish. `GET /v1/notify/{id}` on the origin merges its
//! own part with the parts' last known state ([`merged`]).
//!
//! Why the nodes' HTTP APIs and not a Redis stream per node: a part is a
//! job like any other (same validation, same per-device outcomes, same
//! `GET`), the origin learns each part's result from the same request that
//! follows it, a node that is gone fails the POST at once (its targets are
//! reported `no_binding`), and Redis carries nothing but ownership, so a
//! Redis outage leaves every node serving its own devices. A stream would
//! need consumer groups, trimming and a second channel back for results.
//!
//! A part carries `cluster_part` and may only be posted by the client named
//! `cluster.api_client` (the API's bearer tokens and `allow` networks, as
//! for any client); a node never splits a part again, so a part cannot loop.
//!
//! Over 700 lines with its tests: the split, the hand-out, following the
//! parts and the merge are one protocol between nodes, read together; the
//! tests at the end drive the merge with fabricated parts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::cluster::ClusterSection;
use crate::notify::{resolve, Job};

/// Coordinator threads at once; more cluster jobs get 503.
pub(super) const MAX_COORDINATORS: usize = 64;

/// A part's device outcomes are copied to the origin when it finishes, up
/// to this many (a broadcast's parts are reported by their counts only).
const MAX_ITEMS: usize = 100_000;

/// How often a running part is read.
const POLL: Duration = Duration::from_millis(100);

/// A part whose node has not answered this many reads in a row is lost.
const LOST_AFTER: u32 = 10;

/// What a node needs to hand out parts.
#[derive(Debug, Clone)]
pub(super) struct FanoutCfg {
    pub cluster: ClusterSection,
    /// The bearer token of `cluster.api_client`.
    pub token: String,
}

impl FanoutCfg {
    /// Fan-out is on with `[cluster]` and `cluster.api_client` naming a client.
    pub fn from_config(cfg: &crate::config::Config) -> Option<FanoutCfg> {
        if !cfg.cluster.enabled || cfg.cluster.api_client.is_empty() {
            return None;
        }
        let token = cfg
            .api
            .clients
            .iter()
            .find(|c| c.name == cfg.cluster.api_client)?
            .token
            .clone();
        Some(FanoutCfg {
            cluster: cfg.cluster.clone(),
            token,
        })
    }
}

/// Where a node's part stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PartStatus {
    /// Not posted yet.
    Posting,
    Running,
    /// Finished or cancelled there (the part's own status is in `state`).
    Settled,
    /// The node could not be reached, or refused the part: its targets
    /// were not reached (`no_binding`).
    Failed(String),
    /// The node stopped answering while the part ran: its devices not
    /// settled by then count as `no_binding`.
    Lost,
}

impl PartStatus {
    fn name(&self) -> &'static str {
        match self {
            PartStatus::Posting => "posting",
            PartStatus::Running => "running",
            PartStatus::Settled => "settled",
            PartStatus::Failed(_) => "failed",
            PartStatus::Lost => "lost",
        }
    }

    fn settled(&self) -> bool {
        !matches!(self, PartStatus::Posting | PartStatus::Running)
    }
}

/// One other node's part of a job.
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub node: u32,
    pub api: Option<String>,
    /// Indices into the job's targets.
    pub targets: Vec<u32>,
    /// Its job id on that node.
    pub job: Option<String>,
    pub status: PartStatus,
    /// The part as that node last reported it (`GET /v1/notify/{id}`).
    pub last: Value,
    /// Its per-device outcomes, once settled (explicit targets only).
    pub items: Vec<Value>,
    failures: u32,
}

/// The coordinator's findings, read by `GET` while it works.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The coordinator is over: every part is settled (or there were none).
    pub done: bool,
    /// Why the job reached this node's devices only, if it did.
    pub note: Option<String>,
    pub parts: Vec<Part>,
    /// Cancellation was passed on to the parts.
    cancel_sent: bool,
}

/// A cluster job's coordination, shared by the coordinator and the API.
#[derive(Debug, Default)]
pub(super) struct Fanout {
    pub state: Mutex<State>,
}

/// A job's body as posted to the peers: the caller's, with the part's
/// targets, its origin, and no callback (the origin reports the merged job).
pub(super) fn part_body(original: &Value, targets: &[&str], origin: u32, job: u64) -> Value {
    let mut b = original.clone();
    if let Value::Object(m) = &mut b {
        let t: Vec<Value> = targets
            .iter()
            .map(|t| {
                if *t == resolve::ALL {
                    json!({"all": true})
                } else {
                    json!(t)
                }
            })
            .collect();
        m.insert("targets".into(), Value::Array(t));
        m.remove("callback_url");
        m.insert(
            "cluster_part".into(),
            json!({"origin": origin, "job": job.to_string()}),
        );
    }
    b
}

/// Which nodes get which targets: an AOR's owners from the ownership
/// records; a target without an `@` that matched nothing here (a device id,
/// which the records cannot look up) goes to every live node; `*` too.
/// `owners[i]` are the live owners of target `i` (`None` for `*`).
pub(super) fn split(
    targets: &[String],
    owners: &[Option<BTreeSet<u32>>],
    unmatched_here: &BTreeSet<u32>,
    live: &[u32],
    me: u32,
) -> BTreeMap<u32, Vec<u32>> {
    let mut parts: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (i, t) in targets.iter().enumerate() {
        let i = i as u32;
        let to: Vec<u32> = match owners.get(i as usize) {
            Some(None) | None => live.to_vec(),
            Some(Some(o)) if o.is_empty() && !t.contains('@') && unmatched_here.contains(&i) => {
                live.to_vec()
            }
            Some(Some(o)) => o.iter().copied().filter(|n| live.contains(n)).collect(),
        };
        for n in to.into_iter().filter(|&n| n != me) {
            parts.entry(n).or_default().push(i);
        }
    }
    parts
}

/// The AOR a target names (what its ownership records are keyed by).
fn aor_of(t: &str) -> &str {
    let bare = t
        .strip_prefix("sip:")
        .or_else(|| t.strip_prefix("sips:"))
        .unwrap_or(t);
    crate::registrar::Target::parse(bare).aor
}

/// Numeric counts summed over the nodes.
const SUMMED: [&str; 11] = [
    "devices",
    "sent",
    "retransmissions",
    "delivered",
    "rejected",
    "timed_out",
    "path_dead",
    "not_accepted",
    "cancelled",
    "in_flight",
    "pending",
];

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// The job as `GET` shows it on the origin: `local` is this node's part as
/// [`super::job_json`] made it (with its page of devices, if asked), `me`
/// this node's number. Counts are summed over the nodes; a target counts
/// as unmatched (`no_binding`) only when no node matched it; a lost part's
/// unsettled devices count as `no_binding`; `nodes` lists every part.
pub(super) fn merged(
    job: &Job,
    local: Value,
    st: &State,
    me: u32,
    page: Option<(usize, usize)>,
) -> Value {
    let mut v = local;
    let local_unmatched: BTreeSet<u32> = job.unmatched.iter().copied().collect();
    let mut counts = v["counts"].clone();
    let local_nb = n(&counts, "no_binding").saturating_sub(local_unmatched.len() as u64);
    let mut no_binding = local_nb;
    let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(m) = counts["rejected_by_code"].as_object() {
        for (k, c) in m {
            *by_code.entry(k.clone()).or_default() += c.as_u64().unwrap_or(0);
        }
    }
    // Targets some node matched.
    let mut matched: BTreeSet<u32> = (0..job.spec.targets.len() as u32)
        .filter(|i| !local_unmatched.contains(i))
        .collect();
    let mut nodes = vec![json!({
        "node": me,
        "job": job.id.to_string(),
        "status": v["status"].clone(),
        "devices": job.devices.len(),
    })];
    for p in &st.parts {
        let c = &p.last["counts"];
        let unmatched: BTreeSet<&str> = p.last["unmatched_targets"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if matches!(
            p.status,
            PartStatus::Running | PartStatus::Settled | PartStatus::Lost
        ) {
            for &i in &p.targets {
                let t = job.spec.targets.get(i as usize).map_or("", String::as_str);
                if !unmatched.contains(t) && !p.last.is_null() {
                    matched.insert(i);
                }
            }
            for k in SUMMED {
                let sum = n(&counts, k) + n(c, k);
                counts[k] = json!(sum);
            }
            no_binding += n(c, "no_binding").saturating_sub(unmatched.len() as u64);
            if p.status == PartStatus::Lost {
                // Never settled there: the node is gone with its bindings.
                let open = n(c, "pending") + n(c, "in_flight");
                no_binding += open;
                for k in ["pending", "in_flight"] {
                    let left = n(&counts, k).saturating_sub(n(c, k));
                    counts[k] = json!(left);
                }
            }
            if let Some(m) = c["rejected_by_code"].as_object() {
                for (k, x) in m {
                    *by_code.entry(k.clone()).or_default() += x.as_u64().unwrap_or(0);
                }
            }
        }
        let mut node = json!({
            "node": p.node,
            "job": p.job,
            "status": match &p.status {
                PartStatus::Settled => p.last["status"].clone(),
                s => json!(s.name()),
            },
            "devices": n(c, "devices"),
        });
        if let PartStatus::Failed(why) = &p.status {
            node["error"] = json!(why);
        }
        nodes.push(node);
    }
    let unmatched: Vec<&str> = (0..job.spec.targets.len() as u32)
        .filter(|i| !matched.contains(i))
        .filter_map(|i| job.spec.targets.get(i as usize).map(String::as_str))
        .collect();
    counts["no_binding"] = json!(no_binding + unmatched.len() as u64);
    counts["rejected_by_code"] = json!(by_code);
    let all_settled = st.done && st.parts.iter().all(|p| p.status.settled());
    if !all_settled && v["status"] != "running" && v["status"] != "cancelling" {
        v["status"] = json!(if job.is_cancelled() {
            "cancelling"
        } else {
            "running"
        });
        v["finished_unix_ms"] = Value::Null;
    }
    v["counts"] = counts;
    v["unmatched_targets"] = json!(unmatched);
    v["nodes"] = json!(nodes);
    if let Some(note) = &st.note {
        v["cluster_note"] = json!(note);
    }
    if let Some((offset, limit)) = page {
        // This node's devices first (the local page), then the parts'.
        let local_n = job.devices.len();
        let mut items: Vec<Value> = v["devices"]["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for it in &mut items {
            it["node"] = json!(me);
        }
        let mut skip = offset.saturating_sub(local_n);
        let mut total = local_n;
        for p in &st.parts {
            total += p.items.len();
            for it in &p.items {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                // A peer's item that is not an object is skipped: indexing
                // a non-object JSON value would panic this thread.
                if items.len() < limit {
                    let mut it = it.clone();
                    if let Some(o) = it.as_object_mut() {
                        o.insert("node".into(), json!(p.node));
                        items.push(it);
                    }
                }
            }
        }
        v["devices"] = json!({
            "offset": offset,
            "limit": limit,
            "total": total,
            "items": items,
        });
    }
    v
}

/// Coordinator threads running now (bounded by [`MAX_COORDINATORS`]).
pub(super) type Running = Arc<AtomicUsize>;

/// Reports the merged job at the end (its `callback_url`).
pub(super) type Webhook = Box<dyn FnOnce(&Job, &State) + Send>;

/// Everything the coordinator of one job needs.
pub(super) struct Coordinator {
    pub cfg: Arc<FanoutCfg>,
    pub job: Arc<Job>,
    pub body: Value,
    pub fanout: Arc<Fanout>,
    pub running: Running,
    pub stats: Arc<super::ApiStats>,
    /// Reports the merged job to its `callback_url` at the end.
    pub webhook: Webhook,
}

impl Coordinator {
    /// Starts the coordinator thread (counted in `running` until it ends).
    pub fn spawn(self) -> std::io::Result<()> {
        self.running.fetch_add(1, Ordering::AcqRel);
        let running = self.running.clone();
        let r = std::thread::Builder::new()
            .name("tether-fanout".into())
            .spawn(move || self.run());
        if r.is_err() {
            running.fetch_sub(1, Ordering::AcqRel);
        }
        r.map(|_| ())
    }

    fn run(self) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(1)))
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        self.hand_out(&agent);
        self.follow(&agent);
        let mut st = self.fanout.state.lock();
        st.done = true;
        let webhook = self.webhook;
        webhook(&self.job, &st);
        drop(st);
        self.running.fetch_sub(1, Ordering::AcqRel);
    }

    /// Resolves the owners and posts the parts.
    fn hand_out(&self, agent: &ureq::Agent) {
        let me = self.cfg.cluster.node;
        let targets = &self.job.spec.targets;
        let resolved = crate::cluster::connect(&self.cfg.cluster).and_then(|mut conn| {
            let live = crate::cluster::peers::live_nodes(&mut conn)?;
            let explicit: Vec<(usize, &str)> = targets
                .iter()
                .enumerate()
                .filter(|(_, t)| *t != resolve::ALL)
                .map(|(i, t)| (i, aor_of(t)))
                .collect();
            let aors: Vec<&str> = explicit.iter().map(|(_, a)| *a).collect();
            let found = crate::cluster::peers::owner_nodes(
                &mut conn,
                self.cfg.cluster.buckets,
                &aors,
                crate::cluster::unix_now(),
            )?;
            let mut owners: Vec<Option<BTreeSet<u32>>> = vec![None; targets.len()];
            for ((i, _), o) in explicit.iter().zip(found) {
                owners[*i] = Some(o);
            }
            Ok((live, owners))
        });
        let (live, owners) = match resolved {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(job = self.job.id, error = %e, "cluster job: Redis unreachable; this node's devices only");
                self.fanout.state.lock().note =
                    Some(format!("Redis unreachable ({e}): this node's devices only"));
                return;
            }
        };
        let unmatched: BTreeSet<u32> = self.job.unmatched.iter().copied().collect();
        let live_ids: Vec<u32> = live.keys().copied().collect();
        let split = split(targets, &owners, &unmatched, &live_ids, me);
        {
            let mut st = self.fanout.state.lock();
            st.parts = split
                .iter()
                .map(|(node, t)| Part {
                    node: *node,
                    api: live.get(node).and_then(|p| p.api.clone()),
                    targets: t.clone(),
                    job: None,
                    status: PartStatus::Posting,
                    last: Value::Null,
                    items: Vec::new(),
                    failures: 0,
                })
                .collect();
        }
        for (k, (node, t)) in split.iter().enumerate() {
            let names: Vec<&str> = t
                .iter()
                .filter_map(|&i| targets.get(i as usize).map(String::as_str))
                .collect();
            let body = part_body(&self.body, &names, me, self.job.id);
            let api = live.get(node).and_then(|p| p.api.clone());
            let status = match api {
                None => PartStatus::Failed("the node published no API address".into()),
                Some(api) => match self.post(agent, &api, &body) {
                    Ok(id) => {
                        self.fanout.state.lock().parts[k].job = Some(id);
                        PartStatus::Running
                    }
                    Err(e) => {
                        tracing::info!(job = self.job.id, node, error = %e, "cluster job: part not handed over; its targets are no_binding");
                        PartStatus::Failed(e)
                    }
                },
            };
            let counter = match status {
                PartStatus::Running => &self.stats.cluster_parts,
                _ => &self.stats.cluster_parts_failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            self.fanout.state.lock().parts[k].status = status;
        }
    }

    fn post(&self, agent: &ureq::Agent, api: &str, body: &Value) -> Result<String, String> {
        let mut resp = agent
            .post(format!("http://{api}/v1/notify"))
            .header("Authorization", format!("Bearer {}", self.cfg.token))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .map_err(|e| format!("POST http://{api}/v1/notify: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if status != 202 {
            return Err(format!("POST http://{api}/v1/notify: {status} {text}"));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        v["job"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no job id in {text}"))
    }

    fn get(&self, agent: &ureq::Agent, api: &str, path: &str) -> Result<Value, String> {
        let mut resp = agent
            .get(format!("http://{api}{path}"))
            .header("Authorization", format!("Bearer {}", self.cfg.token))
            .call()
            .map_err(|e| e.to_string())?;
        if resp.status().as_u16() != 200 {
            return Err(format!("GET {path}: {}", resp.status()));
        }
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    /// Reads the running parts until every one is settled and this node's
    /// own part is finished; passes a cancellation on.
    fn follow(&self, agent: &ureq::Agent) {
        let started = Instant::now();
        // Bounded like everything else: a part older than this is lost.
        let limit = Duration::from_secs(3600);
        loop {
            let running: Vec<(usize, String, String)> = {
                let st = self.fanout.state.lock();
                st.parts
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.status == PartStatus::Running)
                    .filter_map(|(k, p)| Some((k, p.api.clone()?, p.job.clone()?)))
                    .collect()
            };
            if running.is_empty() && self.job.is_finished() {
                return;
            }
            if self.job.is_cancelled() && !self.fanout.state.lock().cancel_sent {
                self.fanout.state.lock().cancel_sent = true;
                for (_, api, id) in &running {
                    let _ = agent
                        .delete(format!("http://{api}/v1/notify/{id}"))
                        .header("Authorization", format!("Bearer {}", self.cfg.token))
                        .call();
                }
            }
            for (k, api, id) in running {
                let got = self.get(agent, &api, &format!("/v1/notify/{id}?limit=1"));
                let over = started.elapsed() > limit;
                let mut settled = None;
                {
                    let mut st = self.fanout.state.lock();
                    let p = &mut st.parts[k];
                    match got {
                        Ok(v) => {
                            p.failures = 0;
                            let done = v["status"] == "finished" || v["status"] == "cancelled";
                            p.last = v;
                            if done {
                                settled = Some(n(&p.last["counts"], "devices") as usize);
                            } else if over {
                                p.status = PartStatus::Lost;
                            }
                        }
                        Err(e) => {
                            p.failures += 1;
                            if p.failures >= LOST_AFTER || over {
                                tracing::info!(job = self.job.id, node = p.node, error = %e, "cluster job: node stopped answering; its part is lost");
                                p.status = PartStatus::Lost;
                                self.stats
                                    .cluster_parts_lost
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                if let Some(devices) = settled {
                    let items = self.items(agent, &api, &id, devices);
                    let mut st = self.fanout.state.lock();
                    st.parts[k].items = items;
                    st.parts[k].status = PartStatus::Settled;
                }
            }
            std::thread::sleep(POLL);
        }
    }

    /// A settled part's per-device outcomes, for explicit targets and up
    /// to [`MAX_ITEMS`] (a broadcast part reports its counts only).
    fn items(&self, agent: &ureq::Agent, api: &str, id: &str, devices: usize) -> Vec<Value> {
        if self.job.spec.targets.iter().any(|t| t == resolve::ALL) || devices > MAX_ITEMS {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(devices);
        while out.len() < devices {
            let path = format!("/v1/notify/{id}?offset={}&limit=10000", out.len());
            let Ok(v) = self.get(agent, api, &path) else {
                break;
            };
            let Some(items) = v["devices"]["items"].as_array().filter(|a| !a.is_empty()) else {
                break;
            };
            out.extend(items.iter().cloned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u32]) -> Option<BTreeSet<u32>> {
        Some(v.iter().copied().collect())
    }

    #[test]
    fn targets_go_to_their_live_owners_and_broadcasts_to_every_node_but_this_one() {
        let targets: Vec<String> = ["a@x", "b@x", "*", "urn:uuid:1", "c@x", "d@x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // a on 2, b on 1 (here) and 3, c's owner 4 is gone, d nowhere,
        // the device id matched nothing here.
        let owners = vec![set(&[2]), set(&[1, 3]), None, set(&[]), set(&[4]), set(&[])];
        let unmatched_here: BTreeSet<u32> = [0, 3, 4, 5].into_iter().collect();
        let parts = split(&targets, &owners, &unmatched_here, &[1, 2, 3], 1);
        assert_eq!(parts.get(&2), Some(&vec![0, 2, 3]));
        assert_eq!(parts.get(&3), Some(&vec![1, 2, 3]));
        assert_eq!(parts.get(&1), None, "never a part to itself");
        assert_eq!(parts.len(), 2);
    }

    #[test]
    fn a_part_body_names_its_origin_and_drops_the_callback() {
        let orig =
            json!({"targets": {"all": true}, "kind": "contact-me", "callback_url": "http://x/"});
        let b = part_body(&orig, &["a@x", "*"], 3, 77);
        assert_eq!(b["targets"], json!(["a@x", {"all": true}]));
        assert_eq!(b["cluster_part"], json!({"origin": 3, "job": "77"}));
        assert!(b.get("callback_url").is_none());
        assert_eq!(b["kind"], "contact-me");
    }

    #[test]
    fn merged_counts_sum_the_nodes_and_no_binding_is_what_no_node_matched() {
        let (mut spec, dev) = crate::notify::sample();
        spec.targets = vec!["a@x".into(), "b@x".into(), "c@x".into()];
        let created = crate::notify::Created { unix_ms: 0, at: 0 };
        // Here: a matched (one device), b and c did not.
        let job = Job::new(7, spec, Box::default(), vec![dev], vec![1, 2], 1, created);
        job.set_outcome(0, crate::notify::Outcome::Delivered(200));
        job.part_done(1);
        let local = super::super::job_json(&job, None);
        let part = |node, targets: Vec<u32>, last: Value, status| Part {
            node,
            api: None,
            targets,
            job: Some("9".into()),
            status,
            last,
            items: Vec::new(),
            failures: 0,
        };
        let st = State {
            done: true,
            note: None,
            parts: vec![
                // Node 2 had b: delivered to its two devices.
                part(
                    2,
                    vec![1],
                    json!({"status": "finished", "counts": {"devices": 2, "delivered": 2, "no_binding": 0}, "unmatched_targets": []}),
                    PartStatus::Settled,
                ),
                // Node 3 (c's owner) died mid-part: one device open.
                part(
                    3,
                    vec![2],
                    json!({"status": "running", "counts": {"devices": 2, "delivered": 1, "in_flight": 1, "no_binding": 0}, "unmatched_targets": []}),
                    PartStatus::Lost,
                ),
            ],
            cancel_sent: false,
        };
        let v = merged(&job, local, &st, 1, None);
        let c = &v["counts"];
        assert_eq!(c["devices"], 5);
        assert_eq!(c["delivered"], 4);
        assert_eq!(c["in_flight"], 0);
        assert_eq!(c["no_binding"], 1, "{v}");
        assert_eq!(v["unmatched_targets"], json!([]));
        assert_eq!(v["status"], "finished");
        assert_eq!(v["nodes"].as_array().map(Vec::len), Some(3));
        // A node that could not be reached: its target is no_binding.
        let st = State {
            done: true,
            parts: vec![part(
                2,
                vec![1],
                Value::Null,
                PartStatus::Failed("refused".into()),
            )],
            ..State::default()
        };
        let v = merged(&job, super::super::job_json(&job, None), &st, 1, None);
        assert_eq!(v["counts"]["no_binding"], 2);
        assert_eq!(v["unmatched_targets"], json!(["b@x", "c@x"]));
        // Not done yet: running, whatever the local part says.
        let st = State::default();
        let v = merged(&job, super::super::job_json(&job, None), &st, 1, None);
        assert_eq!(v["status"], "running");
    }
}
