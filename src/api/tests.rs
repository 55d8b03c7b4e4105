//! The control API without sockets: requests in, responses out, jobs
//! handed to (fake) core inboxes.

use std::sync::Arc;

use super::*;
use crate::config::{ApiClient, Config};
use crate::registrar::{flags, AorRecord, BindingRef, ContactView, Decision, Directory};
use crate::runtime::Inbox;

const TOKEN: &str = "0123456789abcdef-as1";

struct Rig {
    service: Service,
    rx: Vec<crossbeam_channel::Receiver<Command>>,
    _poll: mio::Poll,
}

fn rig(allow: &[&str]) -> Rig {
    rig_with(allow, |_| {})
}

fn rig_with(allow: &[&str], tweak: impl FnOnce(&mut Config)) -> Rig {
    let dir = Arc::new(Directory::new());
    for (core, aor, scope, flag) in [
        (0u16, "foo@example.net", Some("mobile"), flags::CONTACT_ME),
        (1, "foo@example.net", Some("web"), flags::CONTACT_ME),
        (1, "bar@example.net", None, 0),
    ] {
        dir.update(aor, |r| {
            let mut n: AorRecord = r.clone();
            let slot = n.contacts.len() as u32 + 1;
            n.contacts.push(ContactView {
                binding: BindingRef { core, slot, gen: 1 },
                contact: format!("sip:{aor}-{slot}@10.0.0.1").into(),
                expires_at: 10_000,
                scope: scope.map(Into::into),
                flags: flag,
                ..ContactView::default()
            });
            Decision::Replace(n, ())
        });
    }
    let poll = mio::Poll::new().unwrap();
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
    let mut inboxes = Vec::new();
    let mut rx = Vec::new();
    for _ in 0..2 {
        let (t, r) = crossbeam_channel::bounded(16);
        inboxes.push(Inbox::new(t, waker.clone()));
        rx.push(r);
    }
    let (http_tx, http_rx) = crossbeam_channel::bounded(16);
    let ctl = Control {
        http_tx,
        http_rx,
        directory: dir,
        inboxes,
        metrics: vec![Arc::new(crate::metrics::CoreSnapshot::default())],
        epoch: Instant::now(),
        hooks: Arc::default(),
        cluster: None,
        persist: None,
    };
    let mut cfg = Config::default();
    cfg.api.clients = vec![
        ApiClient {
            name: "as1".into(),
            token: TOKEN.into(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
        },
        ApiClient {
            name: "as2".into(),
            token: "another-token-of-16+".into(),
            allow: vec![],
        },
    ];
    tweak(&mut cfg);
    Rig {
        service: Service::new(ctl, &cfg.api, &cfg.notify).with_cluster(&cfg),
        rx,
        _poll: poll,
    }
}

fn call(r: &Rig, method: &str, url: &str, token: Option<&str>, body: &str) -> ApiResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    r.service.handle(&ApiRequest {
        method,
        url,
        source: "127.0.0.1".parse().unwrap(),
        authorization: auth.as_deref(),
        body: body.as_bytes(),
    })
}

fn job_body(targets: &str) -> String {
    format!(
        r#"{{"targets": {targets}, "kind": "contact-me", "request_id": "77",
        "application_server_addr": "192.0.2.10", "application_server_port": 8443}}"#
    )
}

fn json(r: &ApiResponse) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn untrusted_callers_are_rejected() {
    let r = rig(&[]);
    let body = job_body(r#"["foo@example.net"]"#);
    let none = call(&r, "POST", "/v1/notify", None, &body);
    assert_eq!(none.status, 401);
    assert!(none.headers.iter().any(|(k, _)| *k == "WWW-Authenticate"));
    assert_eq!(
        call(&r, "POST", "/v1/notify", Some("wrong-token-0000000"), &body).status,
        401
    );
    // A trusted token from an address its client may not use.
    let r = rig(&["10.9.0.0/16"]);
    assert_eq!(
        call(&r, "POST", "/v1/notify", Some(TOKEN), &body).status,
        403
    );
    assert!(
        r.rx.iter().all(|rx| rx.is_empty()),
        "nothing reached a core"
    );
}

#[test]
fn bad_requests_name_the_field() {
    let r = rig(&[]);
    let resp = call(
        &r,
        "POST",
        "/v1/notify",
        Some(TOKEN),
        r#"{"targets": "x", "colour": 1}"#,
    );
    assert_eq!(resp.status, 400);
    assert_eq!(json(&resp)["field"], "colour");
    let resp = call(&r, "GET", "/v1/notify/1?page=2", Some(TOKEN), "");
    assert_eq!(resp.status, 404, "unknown job first");
    assert_eq!(call(&r, "PUT", "/v1/notify", Some(TOKEN), "").status, 405);
    assert_eq!(call(&r, "GET", "/v2/x", Some(TOKEN), "").status, 404);
}

#[test]
fn a_job_is_split_by_owning_core_and_reported() {
    let r = rig(&[]);
    let resp = call(
        &r,
        "POST",
        "/v1/notify",
        Some(TOKEN),
        &job_body(r#"["foo@example.net", "bar@example.net", "nobody@example.net"]"#),
    );
    assert_eq!(resp.status, 202, "{}", resp.body);
    let v = json(&resp);
    assert_eq!(v["devices"], 3);
    assert_eq!(v["unmatched_targets"][0], "nobody@example.net");
    let id = v["job"].as_str().unwrap().to_owned();
    let parts: Vec<_> =
        r.rx.iter()
            .map(|rx| match rx.try_recv().unwrap() {
                Command::Job(p, _) => p,
                other => panic!("{other:?}"),
            })
            .collect();
    assert_eq!((parts[0].devices.len(), parts[1].devices.len()), (1, 2));
    let job = parts[0].job.clone();
    assert_eq!(
        &*job.body,
        b"RequestID=77\r\napplication_server_ip_addr=192.0.2.10\r\napplication_server_ip_port=8443\r\n"
    );
    job.set_outcome(0, crate::notify::Outcome::Delivered(200));
    job.set_outcome(2, crate::notify::Outcome::Rejected(486));
    let got = call(
        &r,
        "GET",
        &format!("/v1/notify/{id}?limit=2"),
        Some(TOKEN),
        "",
    );
    assert_eq!(got.status, 200);
    let g = json(&got);
    assert_eq!(g["status"], "running");
    assert_eq!(g["counts"]["delivered"], 1);
    assert_eq!(g["counts"]["rejected_by_code"]["486"], 1);
    assert_eq!(g["counts"]["no_binding"], 1, "the unmatched target");
    assert_eq!(g["devices"]["items"].as_array().unwrap().len(), 2);
    assert_eq!(g["devices"]["items"][0]["outcome"], "delivered");
    // Another application server cannot see or cancel it.
    assert_eq!(
        call(
            &r,
            "GET",
            &format!("/v1/notify/{id}"),
            Some("another-token-of-16+"),
            ""
        )
        .status,
        404
    );
    let del = call(&r, "DELETE", &format!("/v1/notify/{id}"), Some(TOKEN), "");
    assert_eq!(
        (del.status, json(&del)["status"].clone()),
        (202, "cancelling".into())
    );
    assert!(job.is_cancelled());
}

#[test]
fn namespaces_and_broadcast_resolve_through_the_directory() {
    let r = rig(&[]);
    let devices = |targets: &str| {
        let resp = call(&r, "POST", "/v1/notify", Some(TOKEN), &job_body(targets));
        assert_eq!(resp.status, 202);
        json(&resp)["devices"].as_u64().unwrap()
    };
    assert_eq!(
        devices(r#""foo@example.net""#),
        2,
        "foo reaches every scope"
    );
    assert_eq!(devices(r#""foo@example.net:mobile""#), 1);
    assert_eq!(devices(r#""sip:foo@example.net:web""#), 1);
    assert_eq!(
        devices(r#"{"all": true}"#),
        2,
        "broadcast contact-me reaches the bindings that opted in"
    );
}

#[test]
fn registrations_metrics_and_health() {
    let r = rig(&[]);
    let regs = call(
        &r,
        "GET",
        "/v1/registrations/foo%40example.net:mobile",
        Some(TOKEN),
        "",
    );
    assert_eq!(regs.status, 200);
    assert_eq!(json(&regs)["bindings"].as_array().unwrap().len(), 1);
    let m = call(&r, "GET", "/metrics", None, "");
    assert_eq!(m.status, 200);
    assert!(m
        .body
        .contains("# TYPE tether_notify_requests_sent_total counter"));
    assert!(m
        .body
        .contains("tether_api_latency_microseconds{quantile=\"0.99\"}"));
    assert_eq!(call(&r, "GET", "/healthz", None, "").body, "ok\n");
    assert_eq!(call(&r, "POST", "/metrics", None, "").status, 405);
}

#[test]
fn kept_job_devices_are_bounded() {
    let r = rig_with(&[], |c| c.api.max_job_devices = 3);
    let post = |t: &str| call(&r, "POST", "/v1/notify", Some(TOKEN), &job_body(t)).status;
    assert_eq!(post(r#""foo@example.net""#), 202, "2 devices kept");
    assert_eq!(post(r#""bar@example.net""#), 202, "3 devices kept");
    let refused = call(
        &r,
        "POST",
        "/v1/notify",
        Some(TOKEN),
        &job_body(r#""bar@example.net""#),
    );
    assert_eq!(refused.status, 503);
    assert!(
        refused.body.contains("api.max_job_devices"),
        "{}",
        refused.body
    );
}

#[test]
fn calls_are_gathered_from_every_core_and_paged() {
    let r = rig(&[]);
    // Two fake cores answer the way a worker routes `Event::Calls`.
    let mut threads = Vec::new();
    for (core, rx) in r.rx.iter().cloned().enumerate() {
        threads.push(std::thread::spawn(move || {
            if let Ok(Command::Calls(reply)) = rx.recv_timeout(std::time::Duration::from_secs(5)) {
                let list = (0..3)
                    .map(|i| crate::proxy::CallInfo {
                        call_id: format!("c{core}-{i}"),
                        caller: "sip:a@example.net".into(),
                        callee: "sip:b@example.net".into(),
                        caller_path: "192.0.2.1:5060".parse().unwrap(),
                        callee_path: "192.0.2.2:5060".parse().unwrap(),
                        core: core as u16,
                        duration_ms: (core * 10 + i) as u64,
                        media: Vec::new(),
                    })
                    .collect();
                reply.send(list).unwrap();
            }
        }));
    }
    let resp = call(&r, "GET", "/v1/calls?offset=1&limit=2", Some(TOKEN), "");
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(resp.status, 200);
    let v = json(&resp);
    assert_eq!(v["total"], 6);
    assert_eq!(v["cores_missing"], 0);
    let ids: Vec<_> = v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["c1-1", "c1-0"], "longest first, paged");
    // Without a token: 401, like every /v1 resource.
    assert_eq!(call(&r, "GET", "/v1/calls", None, "").status, 401);
}

#[test]
fn blocks_are_gathered_from_every_core_and_lifted_by_address() {
    let r = rig(&[]);
    // Core 1 holds a block of 192.0.2.9; core 0 none. Each answers twice.
    let mut threads = Vec::new();
    for (core, rx) in r.rx.iter().cloned().enumerate() {
        threads.push(std::thread::spawn(move || {
            let mut lifted = false;
            for _ in 0..2 {
                let wait = std::time::Duration::from_secs(5);
                let Ok(Command::Blocks { lift, reply }) = rx.recv_timeout(wait) else {
                    return;
                };
                let mut list = Vec::new();
                if core == 1 && !lifted {
                    list.push(crate::limits::BlockInfo {
                        source: "192.0.2.9".into(),
                        core: 1,
                        failures: 10,
                        age_s: 5,
                        remaining_s: 595,
                        dropped: 42,
                    });
                }
                lifted |= lift.is_some();
                reply.send(list).unwrap();
            }
        }));
    }
    let resp = call(&r, "GET", "/v1/blocks", Some(TOKEN), "");
    assert_eq!(resp.status, 200);
    let v = json(&resp);
    assert_eq!(
        (v["total"].as_u64(), v["cores_missing"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(v["blocks"][0]["source"], "192.0.2.9");
    assert_eq!(v["blocks"][0]["dropped"], 42);
    let resp = call(&r, "DELETE", "/v1/blocks/192.0.2.9", Some(TOKEN), "");
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(json(&resp)["lifted"][0]["source"], "192.0.2.9");
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        call(&r, "DELETE", "/v1/blocks/nonsense", Some(TOKEN), "").status,
        400
    );
    assert_eq!(call(&r, "POST", "/v1/blocks", Some(TOKEN), "").status, 405);
    assert_eq!(call(&r, "GET", "/v1/blocks", None, "").status, 401);
}

#[test]
fn set_access_swaps_tokens_and_allow_lists() {
    let r = rig(&[]);
    let url = "/v1/registrations/foo@example.net";
    assert_eq!(call(&r, "GET", url, Some(TOKEN), "").status, 200);
    let mut api = crate::config::ApiConfig {
        clients: vec![ApiClient {
            name: "as1".into(),
            token: "a-new-token-0123456".into(),
            allow: vec![],
        }],
        ..Default::default()
    };
    r.service.set_access(&api);
    assert_eq!(call(&r, "GET", url, Some(TOKEN), "").status, 401);
    assert_eq!(
        call(&r, "GET", url, Some("a-new-token-0123456"), "").status,
        200
    );
    api.allow = vec!["10.0.0.0/8".into()];
    r.service.set_access(&api);
    assert_eq!(call(&r, "GET", "/healthz", None, "").status, 403);
}

#[test]
fn a_node_part_comes_only_from_the_cluster_client_and_is_never_split_again() {
    let r = rig_with(&[], |cfg| {
        cfg.cluster.enabled = true;
        cfg.cluster.node = 1;
        // Nothing listens there: the coordinator finds Redis unreachable.
        cfg.cluster.redis = vec!["redis://127.0.0.1:1".into()];
        cfg.cluster.timeout_ms = 100;
        cfg.cluster.advertise = "127.0.0.1:5060".into();
        cfg.cluster.api_client = "as2".into();
    });
    let part = job_body(r#"["foo@example.net"]"#).replace(
        "\"request_id\"",
        "\"cluster_part\": {\"origin\": 2, \"job\": \"5\"}, \"request_id\"",
    );
    // An application server may not pose as a node.
    let resp = call(&r, "POST", "/v1/notify", Some(TOKEN), &part);
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert_eq!(json(&resp)["field"], "cluster_part");
    // The cluster's client may; the part runs here only.
    let resp = call(
        &r,
        "POST",
        "/v1/notify",
        Some("another-token-of-16+"),
        &part,
    );
    assert_eq!(resp.status, 202, "{}", resp.body);
    assert_eq!(json(&resp)["cluster"], false);
    assert_eq!(json(&resp)["devices"], 2);
    // A job from an application server is handed out across the cluster;
    // with Redis unreachable it stays this node's, and says so.
    let resp = call(
        &r,
        "POST",
        "/v1/notify",
        Some(TOKEN),
        &job_body(r#"{"all": true}"#),
    );
    assert_eq!(resp.status, 202, "{}", resp.body);
    let v = json(&resp);
    assert_eq!(v["cluster"], true);
    let url = format!("/v1/notify/{}", v["job"].as_str().unwrap());
    let mut shown = serde_json::Value::Null;
    for _ in 0..500 {
        shown = json(&call(&r, "GET", &url, Some(TOKEN), ""));
        if shown["cluster_note"].is_string() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        shown["cluster_note"]
            .as_str()
            .is_some_and(|n| n.contains("Redis unreachable")),
        "{shown}"
    );
    assert_eq!(shown["nodes"].as_array().map(Vec::len), Some(1), "{shown}");
}
