//! RFC 3261 §17.2 server transactions over UDP, with RFC 6026's Accepted
//! state for an INVITE's 2xx, as plain state machines: a retransmitted
//! request, an ACK, a response from the transaction user or `now` in; what to
//! do out (send the last response again, pass an ACK on, give up) plus the
//! next deadline. No sockets, no clocks, no buffers: the owner keeps the last
//! response it sent and arms its own timer with [`Output::next_deadline`].
//!
//! Proceeding has no timer: the transaction user (the proxy core) owes every
//! transaction a final response, if only a 408 when its own client
//! transactions time out.

use crate::transaction::{Kind, Timers};

/// Where a server transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE "Proceeding", or non-INVITE "Trying"/"Proceeding" folded into
    /// one (whether a provisional went out is tracked apart).
    Proceeding,
    /// A final response went out (INVITE: a non-2xx, retransmitted on Timer
    /// G until the ACK or Timer H; non-INVITE: any, until Timer J).
    Completed,
    /// INVITE only: the ACK for the non-2xx arrived; retransmitted ACKs are
    /// absorbed until Timer I.
    Confirmed,
    /// INVITE only (RFC 6026): a 2xx went out. More 2xx may follow (forked
    /// branches); ACKs go to the transaction user, until Timer L.
    Accepted,
    Terminated,
}

/// What the owner must do after an event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Send the last response again, byte for byte.
    pub resend: bool,
    /// An ACK for a 2xx arrived in Accepted: hand it to the transaction user
    /// (the proxy forwards it).
    pub pass_ack: bool,
    /// Timer H: no ACK came for the non-2xx final.
    pub timed_out: bool,
    /// The transaction is over: free it (set by every call once it is).
    pub terminated: bool,
    /// When to call [`ServerTransaction::on_timer`] next, if ever.
    pub next_deadline: Option<u64>,
}

/// No timer armed.
const NEVER: u64 = u64::MAX;

/// One server transaction (32 bytes: the owner keeps many).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTransaction {
    kind: Kind,
    state: State,
    /// Some response went out, so a retransmitted request has something to
    /// be answered with (tells non-INVITE Trying from Proceeding).
    responded: bool,
    /// Current Timer G interval.
    interval: u64,
    /// Timer G, or [`NEVER`].
    resend_at: u64,
    /// Timer H/I/J/L, or [`NEVER`] while proceeding.
    end_at: u64,
}

impl ServerTransaction {
    /// A transaction for a request received at `now`. Nothing is due until
    /// the transaction user responds.
    pub fn start(kind: Kind, _now: u64, t: &Timers) -> ServerTransaction {
        ServerTransaction {
            kind,
            state: State::Proceeding,
            responded: false,
            interval: t.t1_ms,
            resend_at: NEVER,
            end_at: NEVER,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// When [`ServerTransaction::on_timer`] is next due, if ever.
    pub fn deadline(&self) -> Option<u64> {
        if self.state == State::Terminated {
            return None;
        }
        Some(self.resend_at.min(self.end_at)).filter(|&d| d != NEVER)
    }

    fn output(&self) -> Output {
        Output {
            terminated: self.state == State::Terminated,
            next_deadline: self.deadline(),
            ..Output::default()
        }
    }

    /// Whether [`ServerTransaction::on_response`] would take a response with
    /// status `code`: anything while proceeding, then only further 2xx for an
    /// accepted INVITE. The transaction user checks before sending.
    pub fn accepts(&self, code: u16) -> bool {
        if !(100..=699).contains(&code) {
            return false;
        }
        match self.state {
            State::Proceeding => true,
            State::Accepted => (200..300).contains(&code),
            State::Completed | State::Confirmed | State::Terminated => false,
        }
    }

    /// The request arrived again at `now`: answer it with the last response
    /// if that is the transaction's job.
    pub fn on_retransmission(&mut self, _now: u64) -> Output {
        let mut out = self.output();
        out.resend = match self.state {
            // Nothing to resend before the first response.
            State::Proceeding => self.responded,
            State::Completed => true,
            // RFC 6026 §7.1: 2xx retransmission is the UAS's, end to end;
            // the proxy forwards those as they come.
            State::Confirmed | State::Accepted | State::Terminated => false,
        };
        out
    }

    /// An ACK matched this transaction at `now`.
    pub fn on_ack(&mut self, now: u64, t: &Timers) -> Output {
        let mut pass_ack = false;
        match (self.kind, self.state) {
            (Kind::Invite, State::Completed) => {
                // Timer G and H stop; Timer I absorbs ACK retransmissions.
                self.state = State::Confirmed;
                self.resend_at = NEVER;
                self.end_at = now + t.t4_ms;
            }
            (Kind::Invite, State::Accepted) => pass_ack = true,
            // An ACK before any final, a retransmitted ACK, or an ACK
            // matching a non-INVITE: nothing to do.
            _ => {}
        }
        let mut out = self.output();
        out.pass_ack = pass_ack;
        out
    }

    /// The transaction user sends a response with status `code` at `now`.
    /// If [`ServerTransaction::accepts`] it, the owner sends it and keeps it
    /// as the last response; otherwise nothing changes (the owner must not
    /// send it through this transaction).
    pub fn on_response(&mut self, code: u16, now: u64, t: &Timers) -> Output {
        if !self.accepts(code) {
            return self.output();
        }
        self.responded = true;
        match (self.kind, self.state) {
            (_, State::Proceeding) if code < 200 => {}
            (Kind::Invite, State::Proceeding) if code < 300 => {
                self.state = State::Accepted;
                self.end_at = now + t.timeout_ms; // Timer L = 64·T1
            }
            (Kind::Invite, State::Proceeding) => {
                self.state = State::Completed;
                self.interval = t.t1_ms;
                self.resend_at = now + t.t1_ms; // Timer G
                self.end_at = now + t.timeout_ms; // Timer H = 64·T1
            }
            (Kind::NonInvite, State::Proceeding) => {
                self.state = State::Completed;
                self.end_at = now + t.timeout_ms; // Timer J = 64·T1
            }
            // Another 2xx (a forked branch) in Accepted: Timer L runs on
            // from the first, so a late 2xx cannot keep the state alive.
            _ => {}
        }
        self.output()
    }

    /// A deadline passed (`now` ≥ it); early calls change nothing.
    pub fn on_timer(&mut self, now: u64, t: &Timers) -> Output {
        let mut resend = false;
        let mut timed_out = false;
        if self.state == State::Terminated {
            return self.output();
        }
        if now >= self.end_at {
            // Timer H in Completed (an INVITE's non-2xx never ACKed); I, J
            // and L end a transaction that did its job.
            timed_out = self.kind == Kind::Invite && self.state == State::Completed;
            self.state = State::Terminated;
            self.resend_at = NEVER;
        } else if now >= self.resend_at {
            // Timer G: T1, 2·T1, 4·T1, … capped at T2.
            resend = true;
            self.interval = (self.interval * 2).min(t.t2_ms);
            self.resend_at = now + self.interval;
        }
        let mut out = self.output();
        out.resend = resend;
        out.timed_out = timed_out;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Timers {
        Timers::default()
    }

    fn quiet(next_deadline: Option<u64>) -> Output {
        Output {
            next_deadline,
            ..Output::default()
        }
    }

    /// Runs timers from `next` until the transaction ends or `until`;
    /// returns the resend times and the last output.
    fn run(tx: &mut ServerTransaction, mut next: Option<u64>, until: u64) -> (Vec<u64>, Output) {
        let mut sent = Vec::new();
        let mut last = Output::default();
        while let Some(at) = next.filter(|&a| a <= until) {
            last = tx.on_timer(at, &t());
            if last.resend {
                sent.push(at);
            }
            next = last.next_deadline;
        }
        (sent, last)
    }

    #[test]
    fn server_transactions_are_small() {
        assert!(std::mem::size_of::<ServerTransaction>() <= 40);
    }

    #[test]
    fn a_new_transaction_proceeds_with_no_timer_and_absorbs_retransmissions() {
        for kind in [Kind::Invite, Kind::NonInvite] {
            let mut tx = ServerTransaction::start(kind, 0, &t());
            assert_eq!(
                (tx.state(), tx.kind(), tx.deadline()),
                (State::Proceeding, kind, None)
            );
            assert_eq!(tx.on_retransmission(10), quiet(None), "nothing sent yet");
            assert_eq!(tx.on_ack(20, &t()), quiet(None), "ACK before a final");
            assert_eq!(tx.on_timer(30, &t()), quiet(None));
            assert_eq!(tx.state(), State::Proceeding);
        }
    }

    #[test]
    fn a_provisional_is_resent_on_retransmission_while_proceeding() {
        for kind in [Kind::Invite, Kind::NonInvite] {
            let mut tx = ServerTransaction::start(kind, 0, &t());
            assert!(tx.accepts(100));
            assert_eq!(tx.on_response(100, 5, &t()), quiet(None));
            assert_eq!(tx.state(), State::Proceeding);
            let o = tx.on_retransmission(500);
            assert!(o.resend && !o.terminated);
            // A later provisional replaces it; still proceeding.
            assert_eq!(tx.on_response(180, 600, &t()), quiet(None));
            assert!(tx.on_retransmission(700).resend);
            assert_eq!(tx.state(), State::Proceeding);
        }
    }

    #[test]
    fn invite_timer_g_doubles_to_t2_and_timer_h_times_out() {
        let mut tx = ServerTransaction::start(Kind::Invite, 0, &t());
        tx.on_response(100, 0, &t());
        let o = tx.on_response(486, 100, &t());
        assert_eq!(tx.state(), State::Completed);
        assert_eq!(o, quiet(Some(600)), "Timer G = T1");
        let (sent, last) = run(&mut tx, o.next_deadline, 100_000);
        assert_eq!(
            &sent[..6],
            &[600, 1600, 3600, 7600, 11_600, 15_600],
            "G: 500, 1000, 2000, 4000, then 4000 (T2)"
        );
        assert!(sent.iter().all(|&s| s < 32_100), "no resend at or after H");
        assert_eq!(sent.len(), 10);
        assert!(last.timed_out && last.terminated, "Timer H at 64·T1");
        assert_eq!(last.next_deadline, None);
        assert_eq!(tx.state(), State::Terminated);
    }

    #[test]
    fn invite_timer_h_fires_at_64_t1_from_the_final() {
        let mut tx = ServerTransaction::start(Kind::Invite, 0, &t());
        tx.on_response(500, 1000, &t());
        let next = tx.deadline();
        let (_, last) = run(&mut tx, next, 33_000 - 1);
        assert_eq!(tx.state(), State::Completed, "not yet at 32 999");
        assert!(!last.terminated);
        let o = tx.on_timer(33_000, &t());
        assert!(o.timed_out && o.terminated && !o.resend);
    }

    #[test]
    fn invite_completed_resends_on_retransmission_and_confirms_on_ack() {
        let mut tx = ServerTransaction::start(Kind::Invite, 0, &t());
        tx.on_response(404, 0, &t());
        let o = tx.on_retransmission(200);
        assert!(o.resend);
        assert_eq!(
            o.next_deadline,
            Some(500),
            "a retransmission leaves G as it was"
        );
        assert!(!tx.accepts(200) && !tx.accepts(404) && !tx.accepts(180));
        let o = tx.on_ack(300, &t());
        assert_eq!(tx.state(), State::Confirmed);
        assert_eq!(o, quiet(Some(5300)), "Timer I = T4; G and H stop");
        // Confirmed absorbs everything.
        assert_eq!(tx.on_retransmission(400), quiet(Some(5300)));
        assert_eq!(tx.on_ack(500, &t()), quiet(Some(5300)));
        assert_eq!(tx.on_response(200, 600, &t()), quiet(Some(5300)));
        assert_eq!(tx.on_timer(700, &t()), quiet(Some(5300)), "early call");
        let o = tx.on_timer(5300, &t());
        assert!(o.terminated && !o.timed_out && !o.resend);
        assert_eq!(o.next_deadline, None);
    }

    #[test]
    fn invite_2xx_is_accepted_passes_acks_and_never_resends() {
        let mut tx = ServerTransaction::start(Kind::Invite, 0, &t());
        tx.on_response(180, 10, &t());
        let o = tx.on_response(200, 100, &t());
        assert_eq!(tx.state(), State::Accepted);
        assert_eq!(o, quiet(Some(32_100)), "Timer L = 64·T1");
        let o = tx.on_retransmission(600);
        assert!(!o.resend, "2xx retransmission is the UAS's");
        assert_eq!(o.next_deadline, Some(32_100));
        let o = tx.on_ack(700, &t());
        assert!(o.pass_ack && !o.terminated);
        assert_eq!(tx.state(), State::Accepted, "ACKs keep passing");
        assert!(tx.on_ack(800, &t()).pass_ack);
        // A forked branch's 2xx is taken; L is not restarted.
        assert!(tx.accepts(200) && tx.accepts(202));
        assert!(!tx.accepts(180) && !tx.accepts(486));
        assert_eq!(tx.on_response(200, 5000, &t()), quiet(Some(32_100)));
        // A refused response changes nothing.
        let before = tx;
        assert_eq!(tx.on_response(486, 5100, &t()), quiet(Some(32_100)));
        assert_eq!(tx, before);
        assert_eq!(tx.on_timer(32_099, &t()), quiet(Some(32_100)));
        let o = tx.on_timer(32_100, &t());
        assert!(o.terminated && !o.timed_out && !o.pass_ack);
    }

    #[test]
    fn invite_2xx_without_provisional() {
        let mut tx = ServerTransaction::start(Kind::Invite, 0, &t());
        tx.on_response(200, 0, &t());
        assert_eq!(tx.state(), State::Accepted);
    }

    #[test]
    fn non_invite_final_completes_resends_and_timer_j_terminates() {
        for code in [200, 404] {
            let mut tx = ServerTransaction::start(Kind::NonInvite, 0, &t());
            assert_eq!(tx.on_retransmission(100), quiet(None), "Trying absorbs");
            let o = tx.on_response(code, 200, &t());
            assert_eq!(tx.state(), State::Completed);
            assert_eq!(o, quiet(Some(32_200)), "Timer J = 64·T1");
            let o = tx.on_retransmission(300);
            assert!(o.resend);
            assert_eq!(o.next_deadline, Some(32_200));
            // Non-INVITE transactions neither take ACKs nor more responses.
            assert_eq!(tx.on_ack(400, &t()), quiet(Some(32_200)));
            assert!(!tx.accepts(200) && !tx.accepts(100));
            let before = tx;
            tx.on_response(200, 500, &t());
            assert_eq!(tx, before);
            // No Timer G for non-INVITE.
            assert_eq!(tx.on_timer(10_000, &t()), quiet(Some(32_200)));
            let o = tx.on_timer(32_200, &t());
            assert!(o.terminated && !o.timed_out && !o.resend);
        }
    }

    #[test]
    fn non_invite_2xx_does_not_enter_accepted() {
        let mut tx = ServerTransaction::start(Kind::NonInvite, 0, &t());
        tx.on_response(100, 0, &t());
        tx.on_response(202, 10, &t());
        assert_eq!(tx.state(), State::Completed);
        assert!(tx.on_retransmission(20).resend);
    }

    #[test]
    fn terminated_absorbs_everything() {
        let mut tx = ServerTransaction::start(Kind::Invite, 0, &t());
        tx.on_response(603, 0, &t());
        tx.on_ack(10, &t());
        assert!(tx.on_timer(5010, &t()).terminated);
        assert_eq!(tx.deadline(), None);
        assert!(!tx.accepts(200) && !tx.accepts(100));
        let before = tx;
        assert_eq!(
            tx.on_retransmission(6000),
            Output {
                terminated: true,
                ..Output::default()
            }
        );
        assert_eq!(
            tx.on_ack(6000, &t()),
            Output {
                terminated: true,
                ..Output::default()
            }
        );
        assert_eq!(
            tx.on_response(200, 6000, &t()),
            Output {
                terminated: true,
                ..Output::default()
            }
        );
        assert_eq!(
            tx.on_timer(99_999, &t()),
            Output {
                terminated: true,
                ..Output::default()
            }
        );
        assert_eq!(tx, before);
    }

    #[test]
    fn out_of_range_codes_are_refused() {
        let tx = ServerTransaction::start(Kind::Invite, 0, &t());
        for code in [0, 99, 700, u16::MAX] {
            assert!(!tx.accepts(code));
        }
        let mut tx2 = tx;
        tx2.on_response(99, 0, &t());
        assert_eq!(tx2, tx);
    }

    /// A small deterministic PRNG (splitmix64) for the random-order test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Many random event orders: the owner's timer fires at each deadline
    /// before a later event, spurious timer calls come in between, a final
    /// response is sent at some point; afterwards the transaction always
    /// ends by 64·T1 + T4 after the last event, and the outputs stay
    /// consistent with the state throughout.
    #[test]
    fn random_event_orders_never_panic_and_always_terminate() {
        const CODES: [u16; 10] = [100, 180, 183, 200, 202, 302, 404, 486, 503, 603];
        let t = t();
        let mut rng = Rng(0x7e7e_7e7e);
        for round in 0..3000 {
            let kind = if round % 2 == 0 {
                Kind::Invite
            } else {
                Kind::NonInvite
            };
            let mut now = rng.below(1000);
            let mut tx = ServerTransaction::start(kind, now, &t);
            let mut timer: Option<u64> = None;
            let mut finished = false;
            let mut final_sent = false;
            let mut responded = false;
            let events = 1 + rng.below(30);
            let mut last_event = now;
            for i in 0..events {
                now += rng.below(8000);
                // The owner's timer fires first if it is due.
                while let Some(at) = timer.filter(|&a| a <= now) {
                    let o = tx.on_timer(at, &t);
                    assert_eq!(o.next_deadline, tx.deadline());
                    finished |= o.terminated;
                    timer = o.next_deadline;
                }
                let state = tx.state();
                // The last TU event is a final if none was sent yet.
                let pick = if i + 1 == events && !final_sent {
                    3
                } else {
                    rng.below(5)
                };
                let o = match pick {
                    0 => {
                        let o = tx.on_retransmission(now);
                        assert_eq!(
                            o.resend,
                            state == State::Completed || (state == State::Proceeding && responded),
                        );
                        o
                    }
                    1 => {
                        let o = tx.on_ack(now, &t);
                        assert_eq!(o.pass_ack, state == State::Accepted);
                        o
                    }
                    2 => tx.on_timer(now, &t), // spurious or due
                    _ => {
                        let code = if pick == 3 {
                            CODES[3 + rng.below(7) as usize]
                        } else {
                            CODES[rng.below(CODES.len() as u64) as usize]
                        };
                        let accepted = tx.accepts(code);
                        let before = tx;
                        let o = tx.on_response(code, now, &t);
                        if accepted {
                            responded = true;
                            final_sent |= code >= 200 && state == State::Proceeding;
                        } else {
                            assert_eq!(tx, before, "a refused response changes nothing");
                        }
                        assert!(!o.resend && !o.pass_ack && !o.timed_out);
                        o
                    }
                };
                assert_eq!(o.next_deadline, tx.deadline());
                assert_eq!(o.terminated, tx.state() == State::Terminated);
                if finished {
                    assert_eq!(tx.state(), State::Terminated, "no way back");
                }
                finished |= o.terminated;
                timer = o.next_deadline;
                if kind == Kind::NonInvite {
                    assert!(!matches!(tx.state(), State::Confirmed | State::Accepted));
                }
                last_event = now;
            }
            assert!(final_sent || finished);
            let bound = last_event + t.timeout_ms + t.t4_ms;
            while let Some(at) = timer {
                assert!(at <= bound, "round {round}: deadline {at} past {bound}");
                let o = tx.on_timer(at, &t);
                timer = o.next_deadline;
            }
            assert_eq!(tx.state(), State::Terminated, "round {round}");
        }
    }
}
