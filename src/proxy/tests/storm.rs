//! A storm of calls, answers, CANCELs and mutated messages through one
//! core: nothing may panic, and once every timer has run no transaction,
//! dialog or dialog path may be left.

use super::*;

/// A small deterministic generator, so a failure replays exactly.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn a_storm_of_calls_answers_mutations_and_cancels_leaves_nothing_behind() {
    let s = ProxySection {
        timer_c_s: 20,
        max_call_s: 60,
        ..Default::default()
    };
    let mut n = Net::with(s);
    let callees = ["10.0.0.2:5062", "10.0.0.3:5062", "10.0.0.4:5062"];
    for c in callees {
        n.register("bob", c, c);
    }
    let callers = ["10.0.1.1:5061", "10.0.1.2:5061", "10.0.1.3:5061"];
    let mut rng = Lcg(42);
    // What tether sent, and what callers sent, to draw answers and mutations from.
    let mut sent: Vec<Sent> = Vec::new();
    let mut invites: Vec<(Vec<u8>, &str)> = Vec::new();
    for step in 0..6_000u32 {
        let out = match rng.below(10) {
            0..=2 => {
                let from = callers[rng.below(callers.len())];
                let inv = String::from_utf8(invite("bob", &format!("s{step}"), ""))
                    .unwrap()
                    .replace("10.0.0.1:5061", from);
                invites.push((inv.clone().into_bytes(), from));
                n.send(from, inv.as_bytes())
            }
            3..=5 if !sent.is_empty() => {
                // A party answers something tether sent it.
                let (bytes, to) = sent[rng.below(sent.len())].clone();
                let Ok(m) = sip::parse(&bytes) else { continue };
                if !m.is_request() || m.method() == Some(Method::Ack) {
                    continue;
                }
                let code = [100, 180, 200, 200, 486, 487, 503, 481][rng.below(8)];
                let reply = answer(
                    &bytes,
                    code,
                    &format!("t{}", rng.below(4)),
                    "sip:x@10.0.0.9",
                );
                n.send(&to.to_string(), &reply)
            }
            6 if !invites.is_empty() => {
                let (inv, from) = invites[rng.below(invites.len())].clone();
                let cancel = String::from_utf8(inv)
                    .unwrap()
                    .replace("INVITE sip", "CANCEL sip")
                    .replace("1 INVITE", "1 CANCEL");
                n.send(from, cancel.as_bytes())
            }
            7 if !sent.is_empty() => {
                // Garbage: a message of ours with bytes flipped, from anyone.
                let (mut bytes, _) = sent[rng.below(sent.len())].clone();
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next() as u8;
                }
                let from = callees[rng.below(callees.len())];
                n.send(from, &bytes)
            }
            8 if !sent.is_empty() => {
                // A response of ours played back as if it were a request path.
                let (bytes, _) = sent[rng.below(sent.len())].clone();
                n.send(callers[rng.below(callers.len())], &bytes)
            }
            _ => {
                let to = n.now + rng.below(3_000) as u64;
                n.advance(to)
            }
        };
        sent.extend(out);
        if sent.len() > 2_000 {
            sent.drain(..1_000);
        }
    }
    // Everything ends: Timer C, the transactions' linger, max_call_s, the
    // paths' linger after their last dialog.
    let end = n.now + 300_000;
    n.advance(end);
    use crate::metrics::CoreMetric as M;
    let stuck = n.ep.proxy().describe_calls();
    assert!(
        stuck.is_empty(),
        "{} stuck: {:#?}",
        stuck.len(),
        &stuck[..stuck.len().min(6)]
    );
    assert_eq!(n.ep.metric(M::Dialogs), 0);
    assert_eq!(n.ep.metric(M::PathsDialogAndRegistration), 0);
    assert_eq!(n.ep.metric(M::PathsDialogOnly), 0);
    assert!(n.ep.metric(M::CallsAttempted) > 1_000);
    assert!(n.ep.metric(M::CallsAnswered) > 0);
}
