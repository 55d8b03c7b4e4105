//! A real softphone: baresip (Debian `baresip-core`), headless, registers
//! to tether, stays registered across its own refresh, and unregisters on
//! exit; and takes a wake-up INVITE.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_udp_port, start, wait_for, TempDir};

/// Starts headless baresip with one account `user@127.0.0.1` registering
/// to `tether_port` every `regint` seconds and answering calls by itself.
fn start_baresip(
    dir: &TempDir,
    user: &str,
    tether_port: u16,
    regint: u32,
) -> (std::process::Child, u16) {
    let sip_port = free_udp_port();
    dir.file(
        "config",
        &format!(
            "module_path /usr/lib/baresip/modules\nsip_listen 127.0.0.1:{sip_port}\nsip_transports udp\n\
net_interface 127.0.0.1\ndns_server 127.0.0.1:53\naudio_player aufile,/dev/null\naudio_source aufile,/dev/null\n\
module g711.so\nmodule aufile.so\nmodule_app account.so\n"
        ),
    );
    dir.file(
        "accounts",
        &format!(
            "<sip:{user}@127.0.0.1:{tether_port};transport=udp>;regint={regint};answermode=auto;audio_codecs=PCMU\n"
        ),
    );
    let child = Command::new("baresip")
        .arg("-f")
        .arg(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("baresip is installed by .ci/run (apt-get install baresip-core)");
    (child, sip_port)
}

#[test]
fn baresip_registers_refreshes_and_unregisters() {
    let (rt, addr) = start("[registrar]\nmin_expires = 5\n");
    let dir = TempDir::new("baresip");
    // A 6 s registration interval: baresip refreshes at about 90% of it.
    let (mut baresip, sip_port) = start_baresip(&dir, "alice", addr.port(), 6);
    let d = rt.directory().clone();
    let current = move || d.lookup("alice@127.0.0.1", 0).first().cloned();

    let registered = wait_for(Duration::from_secs(5), || current().is_some());
    let first = current();
    let refreshed = registered
        && wait_for(
            Duration::from_secs(12),
            || matches!((current(), &first), (Some(now), Some(f)) if now.cseq > f.cseq),
        );
    let second = current();
    // SIGTERM makes baresip stop its user agents, which unregisters them.
    // SAFETY: kill(2) on the PID of a child we spawned and still own.
    unsafe { libc::kill(baresip.id() as libc::pid_t, libc::SIGTERM) };
    let unregistered = wait_for(Duration::from_secs(5), || current().is_none());
    let _ = baresip.kill();
    let _ = baresip.wait();

    assert!(registered, "baresip did not register within 5 s");
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(refreshed, "no refresh within 12 s");
    assert_eq!(
        first.binding, second.binding,
        "the refresh kept the same binding"
    );
    assert!(second.expires_at >= first.expires_at);
    // baresip's Contact user is `alice-0x…`; the host:port is its SIP socket.
    assert!(first.contact.starts_with("sip:alice"), "{}", first.contact);
    assert!(
        first.contact.contains(&format!("@127.0.0.1:{sip_port}")),
        "{}",
        first.contact
    );
    assert!(
        unregistered,
        "baresip's unregister on exit did not remove the binding"
    );
    rt.shutdown().unwrap();
}

/// A wake-up INVITE to a real softphone: baresip cannot take the
/// bootstrap body (it is not SDP) and answers with a final error, which
/// seed 001 counts as delivered; tether's ACK must then end baresip's
/// transaction, so baresip does not retransmit its answer.
#[test]
fn baresip_answers_a_wake_up_invite_and_the_ack_ends_its_transaction() {
    let (rt, addr, api, base) = common::start_with_api("[registrar]\nmin_expires = 5\n");
    let dir = TempDir::new("baresip-wake");
    let (mut baresip, _) = start_baresip(&dir, "bob", addr.port(), 60);
    let d = rt.directory().clone();
    let registered = wait_for(Duration::from_secs(5), || {
        !d.lookup("bob@127.0.0.1", 0).is_empty()
    });
    let metric = |name: &str| -> Option<u64> {
        common::http("GET", &format!("{base}/metrics"), None, None)
            .1
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    };
    let outcome = registered.then(|| {
        let id = common::post_job(
            &base,
            r#"{"targets": "bob@127.0.0.1", "kind": "wake-invite", "request_id": "7",
            "application_server_addr": "127.0.0.1", "application_server_port": 8443}"#,
        );
        common::wait_job(&base, &id, 15)
    });
    // Responses counted once the metrics are published, and again after
    // baresip's first two retransmission times (0.5 s, 1.5 s) have passed.
    std::thread::sleep(Duration::from_millis(1200));
    let responses_after_job = metric("tether_responses_received_total");
    std::thread::sleep(Duration::from_millis(2500));
    let responses_later = metric("tether_responses_received_total");
    // SAFETY: kill(2) on the PID of a child we spawned and still own.
    unsafe { libc::kill(baresip.id() as libc::pid_t, libc::SIGTERM) };
    let _ = wait_for(Duration::from_secs(3), || {
        matches!(baresip.try_wait(), Ok(Some(_)))
    });
    let _ = baresip.kill();
    let _ = baresip.wait();

    assert!(registered, "baresip did not register within 5 s");
    let job = outcome.unwrap();
    assert_eq!(job["counts"]["delivered"], 1, "{job}");
    let code = job["devices"]["items"][0]["code"].as_u64().unwrap();
    assert!(code >= 200, "a final answer: {job}");
    assert_eq!(
        responses_after_job, responses_later,
        "baresip retransmitted its answer: the ACK did not end its transaction"
    );
    api.shutdown();
    rt.shutdown().unwrap();
}
