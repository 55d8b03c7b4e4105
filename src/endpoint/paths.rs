//! NAT paths (seed 004): the keepalive's prompts and answers, and the
//! bookkeeping between the registrar's bindings and the paths they use.

use std::net::SocketAddr;

use smallvec::SmallVec;

use super::Endpoint;
use crate::nat::{self, Action, PathKey};
use crate::registrar::PathEvent;
use crate::sip::{self, writer, Method};
use crate::timer::{KeepaliveStep, Timer};

impl Endpoint {
    /// Keepalive timer `step` of path `path` is due.
    pub(super) fn on_keepalive_timer(
        &mut self,
        path: u32,
        step: KeepaliveStep,
        nonce: u32,
        now_ms: u64,
    ) {
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        self.keepalive
            .on_timer(path, step, nonce, now_ms, &mut self.timers, &mut actions);
        self.path_actions(&actions);
        self.actions = actions;
    }

    fn path_actions(&mut self, actions: &[Action]) {
        for a in actions {
            match *a {
                Action::Prompt { path, id, .. } => {
                    self.write_prompt(path, id);
                    self.transmits.push(&self.out, path.remote(), path.local());
                }
                Action::Dead { path } => {
                    let on_path: SmallVec<[(u32, u32); 4]> =
                        self.keepalive.bindings_on(&path).into();
                    let n = self.registrar.mark_bindings(&on_path, false);
                    tracing::info!(path = %path.remote(), bindings = n, "NAT path dead: keepalive prompts unanswered");
                }
                Action::Revived { path } => {
                    let on_path: SmallVec<[(u32, u32); 4]> =
                        self.keepalive.bindings_on(&path).into();
                    self.registrar.mark_bindings(&on_path, true);
                    tracing::info!(path = %path.remote(), "NAT path answering again");
                }
            }
        }
    }

    /// A dead path sent something: its bindings are reachable again.
    pub(super) fn revive_touched_paths(&mut self) {
        let mut revived: SmallVec<[PathKey; 1]> = SmallVec::new();
        revived.extend(self.keepalive.take_revived());
        for path in revived {
            self.path_actions(&[Action::Revived { path }]);
        }
    }

    /// Feeds the registrar's binding changes into the path table, and its
    /// expiry timers onto the core's wheel.
    pub(super) fn sync_paths(&mut self, now_ms: u64) {
        for (at, slot, gen) in self.registrar.expiry_arms.drain(..) {
            // The registrar never cancels one: no handle.
            self.timers.arm_unhandled(at, Timer::Expiry { slot, gen });
        }
        let mut events = std::mem::take(&mut self.registrar.path_events);
        for e in events.drain(..) {
            match e {
                PathEvent::Uses {
                    key,
                    slot,
                    gen,
                    was,
                } => {
                    let t = &mut self.timers;
                    let (i, left) = match was {
                        None => (
                            self.keepalive.binding_added(key, (slot, gen), now_ms, t),
                            None,
                        ),
                        Some(w) => {
                            let (i, left) =
                                self.keepalive
                                    .binding_refreshed(w, key, (slot, gen), now_ms, t);
                            if i == w && left.is_none() {
                                continue;
                            }
                            (i, left)
                        }
                    };
                    if let Some(old) = left {
                        self.guard.binding_changed(old.remote().ip(), false);
                    }
                    self.guard.binding_changed(key.remote().ip(), true);
                    self.registrar.set_path(slot, gen, i);
                }
                PathEvent::Left { path, slot, gen } => {
                    let t = &mut self.timers;
                    if let Some(old) = self.keepalive.binding_left(path, (slot, gen), t) {
                        self.guard.binding_changed(old.remote().ip(), false);
                    }
                }
            }
        }
        self.registrar.path_events = events;
    }

    /// [`Endpoint::restore`] on the worker's own thread when it starts
    /// ([`super::Core::start`]), so the cores restore in parallel.
    pub fn restore_at_start(&mut self, list: Vec<crate::persist::Restored>, spread_ms: u64) {
        self.pending_restore = Some((list, spread_ms));
    }

    /// Takes on this core's bindings restored from disk, before the core
    /// runs: the registrar's slots and expiry timers, and their NAT paths,
    /// each first prompted at a random moment in the next `spread_ms`.
    pub fn restore(&mut self, list: &[crate::persist::Restored], spread_ms: u64, now_ms: u64) {
        let ids = self.registrar.restore(list);
        self.registrar
            .publish_restored(list, &ids, (now_ms / 1000) as u32);
        for (r, id) in list.iter().zip(ids) {
            let Some(id) = id else { continue };
            // Counted per source as a binding learnt in this run is, so
            // that its leaving later does not take the count below zero.
            self.guard.binding_changed(r.path.remote().ip(), true);
            let path = self.keepalive.binding_restored(
                r.path,
                id,
                r.unreachable,
                spread_ms,
                now_ms,
                &mut self.timers,
            );
            self.registrar.set_path(id.0, id.1, path);
        }
        self.sync_paths(now_ms);
    }

    /// An OPTIONS prompt (seed 004): fresh branch, Call-ID and From tag per
    /// prompt id; `Max-Forwards: 0` so that whatever sits at the far end of
    /// the path answers it rather than forwarding it.
    fn write_prompt(&mut self, path: PathKey, id: u64) {
        let local = self
            .local_addrs
            .get(usize::from(path.local()))
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5060)));
        let branch = nat::prompt_branch(id);
        let tag = sip::ids::Id::from_parts("", id);
        // The four strings the prompt needs, written once into `scratch`
        // without `fmt` (a million paths: one prompt each per interval).
        let s = &mut self.scratch;
        s.clear();
        s.push_str("sip:");
        writer::push_socket_addr(s, path.remote());
        let target_end = s.len();
        s.push_str("sip:tether@");
        let local_at = s.len();
        writer::push_socket_addr(s, local);
        let from_end = s.len();
        s.push_str(tag.as_str());
        s.push_str("@tether");
        let (target, from, sent_by, call_id) = (
            &s[..target_end],
            &s[target_end..from_end],
            &s[local_at..from_end],
            &s[from_end..],
        );
        let head = writer::RequestHead {
            method: Method::Options,
            uri: target,
            transport: "UDP",
            sent_by,
            branch: &branch,
            from_uri: from,
            from_tag: &tag,
            to_uri: target,
            to_tag: None,
            call_id,
            cseq: 1,
            max_forwards: 0,
            contact: None,
            routes: &[],
        };
        writer::request(&mut self.out, &head).finish(None);
    }

    /// A response that is not an answer to a fan-out request: only answers
    /// to keepalive prompts mean anything here, and those need just the top
    /// Via's branch, so the rest of the message is not validated. Any status
    /// counts: the path is alive.
    pub(super) fn on_prompt_answer(
        &mut self,
        branch: &str,
        path: PathKey,
        index: Option<u32>,
        now_ms: u64,
    ) {
        let (Some(id), Some(index)) = (nat::prompt_id(branch), index) else {
            return;
        };
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        self.keepalive
            .answered_at(index, id, now_ms, &mut self.timers, &mut actions);
        debug_assert!(actions.iter().all(|a| *a == Action::Revived { path }));
        self.path_actions(&actions);
        self.actions = actions;
    }
}
