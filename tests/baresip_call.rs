//! Calls between two real softphones through tether's proxy: two headless
//! baresip instances (Debian `baresip-core`) register as alice and bob,
//! alice calls bob, bob answers by himself (`answermode=auto`), alice hangs
//! up. The tests drive alice and watch both through baresip's `ctrl_tcp`
//! module (netstring-framed JSON commands and events).
//!
//! The first checks signalling only: tether's dialog gauge rises to 1 and
//! falls back to 0. No audio module is loaded: baresip then runs the call
//! with no source and no player. The second anchors the media
//! (`media.mode = "always"`) and checks audio crosses tether's RTP relay
//! both ways: the SDPs the phones received, tether's per-leg counters, the
//! audio each phone decoded and baresip's own RTCP statistics.

mod common;

use std::time::{Duration, Instant};

use common::baresip::{have_baresip, Ctrl, Phone};
use common::{start, wait_for, TempDir};
use tether::metrics::CoreMetric;
use tether::runtime::Runtime;

/// Sum of one metric over tether's cores (published about once a second).
fn metric(rt: &Runtime, m: CoreMetric) -> u64 {
    rt.control().metrics.iter().map(|c| c.get(m as usize)).sum()
}

/// `what`, then both phones' log tails, for failure messages.
fn both_logs(alice: &Phone, bob: &Phone, what: &str) -> String {
    format!(
        "{what}\n===== alice\n{}\n===== bob\n{}",
        alice.log(),
        bob.log()
    )
}

/// Waits (at most 10 s) until alice and bob are both registered at `rt`,
/// then connects to each one's control socket.
fn registered(rt: &Runtime, alice: (&Phone, u16), bob: (&Phone, u16)) -> (Ctrl, Ctrl) {
    let d = rt.directory().clone();
    let registered = wait_for(Duration::from_secs(10), || {
        !d.lookup("alice@127.0.0.1", 0).is_empty() && !d.lookup("bob@127.0.0.1", 0).is_empty()
    });
    assert!(
        registered,
        "{}",
        both_logs(alice.0, bob.0, "both phones registered within 10 s")
    );
    (Ctrl::connect(alice.1), Ctrl::connect(bob.1))
}

#[test]
fn alice_calls_bob_through_tether_and_hangs_up() {
    if !have_baresip("alice_calls_bob_through_tether_and_hangs_up") {
        return;
    }
    let (rt, addr) = start("[registrar]\ndomains = [\"127.0.0.1\"]\nmin_expires = 5\n");
    let (alice_dir, bob_dir) = (TempDir::new("bs-alice"), TempDir::new("bs-bob"));
    let (bob, bob_ctrl) = Phone::start(&bob_dir, "bob", addr, "");
    let (alice, alice_ctrl) = Phone::start(&alice_dir, "alice", addr, "");
    let logs = |what: &str| both_logs(&alice, &bob, what);
    let (mut a, mut b) = registered(&rt, (&alice, alice_ctrl), (&bob, bob_ctrl));
    // To bob's AOR at tether's address: the INVITE goes to tether, whose
    // location service finds bob's binding.
    a.command("dial", &format!("sip:bob@127.0.0.1:{}", addr.port()));
    let alice_up = a.event("CALL_ESTABLISHED", 15);
    let bob_up = alice_up && b.event("CALL_ESTABLISHED", 5);
    assert!(
        alice_up && bob_up,
        "{}",
        logs(&format!(
            "call established on both sides (alice saw {:?}, bob saw {:?})",
            a.seen, b.seen
        ))
    );
    let gauge_up = wait_for(Duration::from_secs(5), || {
        metric(&rt, CoreMetric::Dialogs) == 1
    });
    assert!(
        gauge_up,
        "{}",
        logs("tether's dialog gauge at 1 during the call")
    );
    assert_eq!(metric(&rt, CoreMetric::CallsAnswered), 1);

    a.command("hangup", "");
    let alice_down = a.event("CALL_CLOSED", 10);
    let bob_down = b.event("CALL_CLOSED", 10);
    assert!(
        alice_down && bob_down,
        "{}",
        logs(&format!(
            "the BYE closed both sides (alice saw {:?}, bob saw {:?})",
            a.seen, b.seen
        ))
    );
    let gauge_down = wait_for(Duration::from_secs(5), || {
        metric(&rt, CoreMetric::Dialogs) == 0
    });
    assert!(gauge_down, "{}", logs("tether's dialog gauge back to 0"));
    assert_eq!(metric(&rt, CoreMetric::ProxyUnmatched), 0, "no 481s");
    drop((alice, bob));
    rt.shutdown().unwrap();
}

/// A 16-bit mono 8 kHz WAV file of a `hz` sine, `secs` long, at `amp`.
fn write_tone(path: &std::path::Path, hz: f64, secs: u32, amp: f64) {
    let n = 8000 * secs;
    let mut data = Vec::with_capacity(n as usize * 2);
    for i in 0..n {
        let v = (amp * (2.0 * std::f64::consts::PI * hz * f64::from(i) / 8000.0).sin()) as i16;
        data.extend_from_slice(&v.to_le_bytes());
    }
    let mut wav = Vec::with_capacity(44 + data.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    // PCM, 1 channel, 8000 Hz, 16000 bytes/s, 2-byte frames, 16 bits.
    for (v, w) in [
        (16u32, 4),
        (1, 2),
        (1, 2),
        (8000, 4),
        (16000, 4),
        (2, 2),
        (16, 2),
    ] {
        wav.extend_from_slice(&v.to_le_bytes()[..w]);
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).unwrap();
}

/// The samples of a 16-bit PCM WAV file (its `data` chunk).
fn wav_samples(path: &std::path::Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = at + 8;
        if &bytes[at..at + 4] == b"data" {
            let end = (body + len).min(bytes.len());
            return bytes[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
        }
        at = body + len + (len & 1);
    }
    Vec::new()
}

/// (RMS, frequency from zero crossings in Hz) of the audible part of
/// `samples` (from the first to the last sample above the noise floor).
fn energy_and_pitch(samples: &[i16]) -> (f64, f64) {
    let loud = |s: &&i16| s.unsigned_abs() > 500;
    let (Some(first), Some(last)) = (
        samples.iter().position(|s| loud(&s)),
        samples.iter().rposition(|s| loud(&s)),
    ) else {
        return (0.0, 0.0);
    };
    let part = &samples[first..=last];
    let rms = (part.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / part.len() as f64).sqrt();
    let crossings = part.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    (rms, crossings as f64 / 2.0 / (part.len() as f64 / 8000.0))
}

/// The dump of what baresip's `sndfile` filter decoded (the received audio).
fn decoded_dump(dir: &TempDir) -> Option<std::path::PathBuf> {
    std::fs::read_dir(&dir.0)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
}

/// tether's relay ports for this test (below the ephemeral range, apart
/// from every other test's block).
const RELAY_PORTS: (u16, u16) = (14000, 14099);

/// Audio between two real softphones through tether's RTP relay: alice
/// plays a 440 Hz tone, bob a 700 Hz one (aufile sources, 20 s, longer than
/// the call: baresip ends a call when its file source ends). baresip
/// 1.0.0's aufile has no player, so what each phone decoded comes from the
/// `sndfile` filter's dump (`snd_path`), with `aubridge` as a player that
/// plays nowhere. The SDP each phone received (its SIP trace) names
/// tether's relay, tether counts packets on both legs, and each phone's
/// decoded audio is the other's tone at the other's loudness.
#[test]
fn alice_and_bob_talk_through_tethers_relay() {
    if !have_baresip("alice_and_bob_talk_through_tethers_relay") {
        return;
    }
    let (lo, hi) = RELAY_PORTS;
    let (rt, addr, _api, base) = common::start_with_api(&format!(
        "[registrar]\ndomains = [\"127.0.0.1\"]\nmin_expires = 5\n\
[media]\nmode = \"always\"\nports = \"{lo}-{hi}\"\naddress = \"127.0.0.1\"\n"
    ));
    let (alice_dir, bob_dir) = (TempDir::new("bsm-alice"), TempDir::new("bsm-bob"));
    let tones = [(&alice_dir, "alice", 440.0), (&bob_dir, "bob", 700.0)];
    let amp = 8000.0;
    let mut phones = Vec::new();
    for (dir, user, hz) in tones {
        let tone = dir.0.join("tone.wav");
        write_tone(&tone, hz, 20, amp);
        // baresip's own RTP ports stay clear of tether's block.
        let audio = format!(
            "rtp_ports 12000-13999\naudio_source aufile,{}\naudio_player aubridge,sink-{user}\n\
snd_path {}\nmodule aufile.so\nmodule aubridge.so\nmodule sndfile.so\n",
            tone.display(),
            dir.0.display()
        );
        phones.push(Phone::start(dir, user, addr, &audio));
    }
    let (bob, bob_ctrl) = phones.pop().unwrap();
    let (alice, alice_ctrl) = phones.pop().unwrap();
    let logs = |what: &str| both_logs(&alice, &bob, what);
    let (mut a, mut b) = registered(&rt, (&alice, alice_ctrl), (&bob, bob_ctrl));
    a.command("dial", &format!("sip:bob@127.0.0.1:{}", addr.port()));
    let up = a.event("CALL_ESTABLISHED", 15) && b.event("CALL_ESTABLISHED", 5);
    assert!(
        up,
        "{}",
        logs(&format!(
            "call up (alice saw {:?}, bob saw {:?})",
            a.seen, b.seen
        ))
    );

    // A few seconds of audio: until tether has relayed 150 packets (3 s at
    // 20 ms) each way, then one more second.
    let calls = || common::get_json(&format!("{base}/v1/calls"));
    let legs = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["calls"][0]["media"][0]["legs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let flowing = wait_for(Duration::from_secs(15), || {
        let l = legs(&calls());
        l.len() == 2
            && l.iter()
                .all(|leg| leg["packets"].as_u64().unwrap_or(0) > 150)
    });
    std::thread::sleep(Duration::from_secs(1));
    let during = calls();
    assert!(
        flowing,
        "{}",
        logs(&format!("150 packets each way through tether: {during:#}"))
    );
    // baresip's own statistics: its RTCP event (every few seconds) counts
    // packets received, from the other phone's reports relayed by tether.
    let rtcp_rx = |c: &mut Ctrl| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = c
                .events
                .iter()
                .filter(|e| e["type"] == "CALL_RTCP")
                .filter_map(|e| e["rtcp_stats"]["rx"]["sent"].as_u64())
                .max();
            if got.is_some_and(|n| n > 0) {
                return got;
            }
            match c.next(deadline) {
                Some(v) if v["event"] == true => c.events.push(v),
                Some(_) => {}
                None => return got,
            }
        }
    };
    let (a_rx, b_rx) = (rtcp_rx(&mut a), rtcp_rx(&mut b));
    a.command("hangup", "");
    let down = a.event("CALL_CLOSED", 10) && b.event("CALL_CLOSED", 10);
    assert!(
        down,
        "{}",
        logs(&format!(
            "the BYE closed both sides (alice saw {:?}, bob saw {:?})",
            a.seen, b.seen
        ))
    );

    // Each phone got exactly one SDP (bob the INVITE's, alice the 200's),
    // naming tether's relay, never the other phone's own RTP port.
    let got = |p: &Phone| p.sdps(true);
    let own = |p: &Phone| p.sdps(false);
    let (a_got, b_got, a_own, b_own) = (got(&alice), got(&bob), own(&alice), own(&bob));
    let report = format!(
        "alice got {a_got:?} sent {a_own:?}; bob got {b_got:?} sent {b_own:?}; tether: {during:#}"
    );
    assert!(
        a_got.len() == 1 && b_got.len() == 1 && a_own.len() == 1 && b_own.len() == 1,
        "{}",
        logs(&report)
    );
    let relay = |sdp: &(String, String, u16)| sdp.1 == "127.0.0.1" && (lo..=hi).contains(&sdp.2);
    assert!(relay(&a_got[0]) && relay(&b_got[0]), "{report}");
    assert!(
        b_got[0].0.starts_with("INVITE") && a_got[0].0.starts_with("SIP/2.0 200"),
        "{report}"
    );
    assert!(
        a_got[0].2 != b_own[0].2 && b_got[0].2 != a_own[0].2,
        "{report}"
    );

    // tether's legs: each party's leg was signalled at its own SDP port,
    // latched there (baresip sends from where it receives), fed through the
    // relay port its received SDP named, with > 150 packets.
    let l = legs(&during);
    for (own, got, who) in [
        (&a_own[0], &a_got[0], "alice"),
        (&b_own[0], &b_got[0], "bob"),
    ] {
        let me = format!("127.0.0.1:{}", own.2);
        let leg = l
            .iter()
            .find(|leg| leg["signalled"] == me.as_str())
            .unwrap_or_else(|| panic!("{who}'s leg ({me}) in {during:#}"));
        assert_eq!(leg["latched"], me.as_str(), "{who}: {report}");
        assert_eq!(
            leg["local_port"], got.2,
            "{who} sends to the port its SDP named: {report}"
        );
        assert!(leg["packets"].as_u64().unwrap() > 150, "{who}: {report}");
        // Each phone saw its RTP arrive from tether's port, not the other phone's.
        let phone = if who == "alice" { &alice } else { &bob };
        let from = format!("receiving from 127.0.0.1:{}", got.2);
        assert!(
            phone.full_log().contains(&from),
            "{}",
            logs(&format!("{who}: '{from}'"))
        );
    }

    // The audio each phone decoded is the other's tone, about as loud.
    let input_rms = amp / std::f64::consts::SQRT_2;
    for (dir, who, hz) in [(&alice_dir, "alice", 700.0), (&bob_dir, "bob", 440.0)] {
        let dump = decoded_dump(dir)
            .unwrap_or_else(|| panic!("{}", logs(&format!("{who}'s sndfile dump"))));
        let samples = wav_samples(&dump);
        let (rms, pitch) = energy_and_pitch(&samples);
        eprintln!("{who} decoded {} samples: rms {rms:.0} (sent {input_rms:.0}), {pitch:.0} Hz (sent {hz} Hz)", samples.len());
        assert!(samples.len() > 8000 * 2, "{who}: {} samples", samples.len());
        assert!(
            rms > input_rms * 0.7 && rms < input_rms * 1.3,
            "{who}: rms {rms}"
        );
        assert!(
            (pitch - hz).abs() < hz * 0.05,
            "{who}: {pitch} Hz, not the other's {hz} Hz"
        );
    }
    eprintln!("baresip's RTCP rx counts: alice {a_rx:?}, bob {b_rx:?}");
    assert!(
        a_rx.is_some_and(|n| n > 100) && b_rx.is_some_and(|n| n > 100),
        "baresip's RTCP stats: alice {a_rx:?}, bob {b_rx:?}"
    );
    eprintln!("tether during the call: {during}");
    drop((alice, bob));
    rt.shutdown().unwrap();
}
