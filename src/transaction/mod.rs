//! RFC 3261 §17.1 client transactions over UDP as plain state machines:
//! a response or `now` in, what to do out (retransmit, hand a response to the
//! transaction user, ACK a non-2xx final, give up) plus the next deadline.
//! No sockets, no clocks, no buffers: the owner keeps the request bytes and
//! arms its own timer wheel with [`Output::next_deadline`].

/// RFC 3261 timer values (ms). Timers B and F are `timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate; first retransmission interval (Timers A, E).
    pub t1_ms: u64,
    /// Cap on the non-INVITE retransmission interval.
    pub t2_ms: u64,
    /// How long a completed non-INVITE transaction absorbs retransmitted
    /// finals (Timer K).
    pub t4_ms: u64,
    /// Timers B and F: no final response by then means a timeout (64·T1).
    pub timeout_ms: u64,
    /// Timer D: how long a completed INVITE transaction re-ACKs retransmitted
    /// non-2xx finals (at least 32 s on UDP).
    pub timer_d_ms: u64,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            timeout_ms: 64 * 500,
            timer_d_ms: 32_000,
        }
    }
}

/// INVITE (§17.1.1) or any other method (§17.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Invite,
    NonInvite,
}

/// Where a client transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Request sent, nothing heard (INVITE "Calling", non-INVITE "Trying").
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; retransmitted finals are absorbed (and, for
    /// an INVITE's non-2xx, re-ACKed) until the linger ends.
    Completed,
    /// An INVITE got a 2xx (RFC 6026): retransmitted 2xx go to the
    /// transaction user, which re-sends its ACK.
    Accepted,
    Terminated,
}

/// What the owner must do after an event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Send the request again, byte for byte.
    pub retransmit: bool,
    /// Hand this response code to the transaction user.
    pub deliver: Option<u16>,
    /// The delivered 2xx is a retransmission (re-send the ACK, nothing else).
    pub repeated: bool,
    /// Send an ACK for the non-2xx final just received (same branch).
    pub ack: bool,
    /// No final response within Timer B/F.
    pub timed_out: bool,
    /// The transaction is over: free it.
    pub terminated: bool,
    /// When to call [`ClientTransaction::on_timer`] next, if ever.
    pub next_deadline: Option<u64>,
}

/// One client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTransaction {
    kind: Kind,
    state: State,
    /// Current retransmission interval.
    interval: u64,
    retransmit_at: Option<u64>,
    /// Timer B/F while calling, D/K/M once a final arrived.
    end_at: u64,
}

impl ClientTransaction {
    /// A transaction whose request is sent at `now`.
    pub fn start(kind: Kind, now: u64, t: &Timers) -> (ClientTransaction, Output) {
        let tx = ClientTransaction {
            kind,
            state: State::Calling,
            interval: t.t1_ms,
            retransmit_at: Some(now + t.t1_ms),
            end_at: now + t.timeout_ms,
        };
        let out = Output {
            next_deadline: tx.next_deadline(),
            ..Output::default()
        };
        (tx, out)
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Gives up on the transaction (RFC 3261 §9.1: an INVITE CANCELled
    /// and still without a final response 64·T1 later is over).
    pub fn terminate(&mut self) {
        self.state = State::Terminated;
        self.retransmit_at = None;
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// An INVITE accepted by a 2xx stays to re-ACK retransmitted 2xx
    /// (Timer M, 64·T1) at most until `at`: for a caller that ends the call
    /// at once, the re-ACKs after its BYE has been answered serve nothing.
    pub fn linger_until(&mut self, at: u64) {
        if self.state == State::Accepted {
            self.end_at = self.end_at.min(at);
        }
    }

    /// When [`ClientTransaction::on_timer`] is next due, if ever.
    pub fn deadline(&self) -> Option<u64> {
        self.next_deadline().filter(|&d| d != u64::MAX)
    }

    fn next_deadline(&self) -> Option<u64> {
        if self.state == State::Terminated {
            return None;
        }
        Some(
            self.retransmit_at
                .map_or(self.end_at, |r| r.min(self.end_at)),
        )
    }

    fn finish(&mut self, out: &mut Output) {
        out.next_deadline = self.next_deadline();
        out.terminated = self.state == State::Terminated;
    }

    /// A response with status `code` matched this transaction at `now`.
    pub fn on_response(&mut self, code: u16, now: u64, t: &Timers) -> Output {
        let mut out = Output::default();
        let provisional = code < 200;
        match (self.kind, self.state) {
            (_, State::Terminated) => {}
            (Kind::NonInvite, State::Calling | State::Proceeding) => {
                out.deliver = Some(code);
                if provisional {
                    // §17.1.2.2: retransmissions go on, at T2.
                    if self.state == State::Calling {
                        self.state = State::Proceeding;
                        self.interval = t.t2_ms;
                        self.retransmit_at = Some(now + t.t2_ms);
                    }
                } else {
                    self.state = State::Completed;
                    self.retransmit_at = None;
                    self.end_at = now + t.t4_ms;
                }
            }
            (Kind::NonInvite, State::Completed | State::Accepted) => {}
            (Kind::Invite, State::Calling | State::Proceeding) => {
                out.deliver = Some(code);
                // Any response stops INVITE retransmissions and Timer B.
                self.retransmit_at = None;
                if provisional {
                    self.state = State::Proceeding;
                    // No timer in Proceeding: the transaction user decides
                    // how long to let it ring (and CANCELs).
                    self.end_at = u64::MAX;
                } else if code < 300 {
                    self.state = State::Accepted;
                    self.end_at = now + t.timeout_ms; // Timer M = 64·T1
                } else {
                    self.state = State::Completed;
                    out.ack = true;
                    self.end_at = now + t.timer_d_ms;
                }
            }
            (Kind::Invite, State::Completed) => {
                // A retransmitted non-2xx final: ACK it again, tell no one.
                out.ack = code >= 300;
            }
            (Kind::Invite, State::Accepted) => {
                if (200..300).contains(&code) {
                    out.deliver = Some(code);
                    out.repeated = true;
                }
            }
        }
        self.finish(&mut out);
        if out.next_deadline == Some(u64::MAX) {
            out.next_deadline = None;
        }
        out
    }

    /// The deadline from the last [`Output`] passed (`now` ≥ it).
    pub fn on_timer(&mut self, now: u64, t: &Timers) -> Output {
        let mut out = Output::default();
        if self.state == State::Terminated {
            return out;
        }
        if now >= self.end_at {
            if matches!(self.state, State::Calling | State::Proceeding) {
                out.timed_out = true;
            }
            self.state = State::Terminated;
            self.retransmit_at = None;
        } else if self.retransmit_at.is_some_and(|r| now >= r) {
            out.retransmit = true;
            self.interval = match self.kind {
                Kind::Invite => self.interval * 2,
                Kind::NonInvite if self.state == State::Proceeding => t.t2_ms,
                Kind::NonInvite => (self.interval * 2).min(t.t2_ms),
            };
            self.retransmit_at = Some(now + self.interval);
        }
        self.finish(&mut out);
        if out.next_deadline == Some(u64::MAX) {
            out.next_deadline = None;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs timers until the transaction ends or `until`; returns the
    /// retransmission times and whether it timed out.
    fn run(tx: &mut ClientTransaction, mut next: Option<u64>, until: u64) -> (Vec<u64>, bool) {
        let t = Timers::default();
        let mut sent = Vec::new();
        while let Some(at) = next.filter(|&a| a <= until) {
            let o = tx.on_timer(at, &t);
            if o.retransmit {
                sent.push(at);
            }
            if o.timed_out {
                return (sent, true);
            }
            next = o.next_deadline;
        }
        (sent, false)
    }

    #[test]
    fn non_invite_timer_e_doubles_to_t2_and_timer_f_times_out() {
        let t = Timers::default();
        let (mut tx, o) = ClientTransaction::start(Kind::NonInvite, 0, &t);
        let (sent, timed_out) = run(&mut tx, o.next_deadline, 100_000);
        assert_eq!(
            &sent[..6],
            &[500, 1500, 3500, 7500, 11_500, 15_500],
            "E: 500, 1000, 2000, 4000, then 4000 (T2)"
        );
        assert!(timed_out);
        assert_eq!(sent.len(), 10, "retransmissions before F at 32 s");
        assert_eq!(tx.state(), State::Terminated);
    }

    #[test]
    fn non_invite_provisional_keeps_retransmitting_at_t2_final_completes() {
        let t = Timers::default();
        let (mut tx, _) = ClientTransaction::start(Kind::NonInvite, 0, &t);
        let o = tx.on_response(100, 100, &t);
        assert_eq!(o.deliver, Some(100));
        assert_eq!(o.next_deadline, Some(4100));
        assert!(tx.on_timer(4100, &t).retransmit);
        let o = tx.on_response(200, 5000, &t);
        assert_eq!((o.deliver, o.terminated), (Some(200), false));
        assert_eq!(o.next_deadline, Some(10_000), "Timer K = T4");
        assert_eq!(
            tx.on_response(200, 5100, &t),
            Output {
                next_deadline: Some(10_000),
                ..Output::default()
            },
            "a retransmitted final is absorbed"
        );
        let o = tx.on_timer(10_000, &t);
        assert!(o.terminated && !o.timed_out);
    }

    #[test]
    fn invite_timer_a_doubles_without_cap_and_b_times_out() {
        let t = Timers::default();
        let (mut tx, o) = ClientTransaction::start(Kind::Invite, 0, &t);
        let (sent, timed_out) = run(&mut tx, o.next_deadline, 100_000);
        assert_eq!(sent, vec![500, 1500, 3500, 7500, 15_500, 31_500]);
        assert!(timed_out);
    }

    #[test]
    fn invite_non_2xx_is_acked_and_re_acked_during_timer_d() {
        let t = Timers::default();
        let (mut tx, _) = ClientTransaction::start(Kind::Invite, 0, &t);
        let o = tx.on_response(180, 10, &t);
        assert_eq!((o.deliver, o.next_deadline), (Some(180), None));
        let o = tx.on_response(486, 20, &t);
        assert!(o.ack);
        assert_eq!(o.deliver, Some(486));
        assert_eq!(o.next_deadline, Some(32_020));
        let o = tx.on_response(486, 520, &t);
        assert!(
            o.ack && o.deliver.is_none(),
            "retransmitted final: ACK only"
        );
        assert!(tx.on_timer(32_020, &t).terminated);
    }

    #[test]
    fn invite_2xx_is_accepted_and_repeats_go_to_the_user() {
        let t = Timers::default();
        let (mut tx, _) = ClientTransaction::start(Kind::Invite, 0, &t);
        let o = tx.on_response(200, 30, &t);
        assert_eq!((o.deliver, o.ack, o.repeated), (Some(200), false, false));
        assert_eq!(tx.state(), State::Accepted);
        let o = tx.on_response(200, 530, &t);
        assert_eq!((o.deliver, o.repeated), (Some(200), true));
        assert!(
            !tx.on_timer(500, &t).retransmit,
            "no INVITE retransmission after a response"
        );
        let o = tx.on_timer(32_030, &t);
        assert!(o.terminated && !o.timed_out);
    }
}
