//! The rtpengine `ng` control protocol served from the same per-core
//! table the proxy uses (`ping`, `offer`, `answer`, `delete`, `query`,
//! `list`), so that a Kamailio or OpenSIPS `rtpengine` module can use
//! tether as its relay and keep its proxies.
//!
//! A call lives on one core, chosen by its Call-ID: a command another
//! core receives is handed to that core (the proxy's handoff), which
//! answers from its own `ng` socket (they share the address).
//!
//! Parties are known by their tags: the first offer's From tag is party
//! 0, the first answer's To tag party 1. An offer carries its sender's
//! SDP; an answer the other party's (its From tag still names the offerer).

use std::net::IpAddr;

use hashbrown::HashMap;

use super::ng::{self, Params, Request};
use super::table::{MediaError, PartySdp, Rewrite, SessionId, Table};

/// Owner tags of `ng` sessions carry this bit (the proxy's are dialog slots).
pub const NG_OWNER_BIT: u64 = 1 << 63;

struct NgCall {
    id: SessionId,
    tags: [Box<[u8]>; 2],
    created_ms: u64,
    last_signal_ms: u64,
}

impl NgCall {
    /// The party a tag names: 1 for the answerer's To tag once known, else 0.
    fn party_of(&self, tag: &[u8]) -> usize {
        usize::from(!tag.is_empty() && *self.tags[1] == *tag)
    }
}

/// What to do with a datagram on the `ng` socket.
#[derive(Debug, PartialEq, Eq)]
pub enum NgOutcome {
    /// Send the reply that was written.
    Reply,
    /// The call belongs to core `n`: hand the datagram over.
    Handoff(u16),
    /// Nothing to answer (no cookie to answer under).
    Drop,
}

/// Counters of the `ng` door.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NgStats {
    pub commands: u64,
    pub errors: u64,
    pub dropped: u64,
}

/// The Call-IDs of every core's `ng` calls, for `list`. A lock, but only
/// on the control path (offer of a new call, delete, list), never per packet.
pub type NgIndex = std::sync::Arc<parking_lot::Mutex<hashbrown::HashSet<Box<[u8]>>>>;

/// One core's `ng` calls.
pub struct NgServer {
    core: u16,
    cores: u16,
    calls: HashMap<Box<[u8]>, NgCall>,
    index: NgIndex,
    /// UNIX seconds at the runtime's clock zero (query replies use UNIX time).
    unix_base_s: u64,
    sdp: Vec<u8>,
    pub stats: NgStats,
}

impl NgServer {
    pub fn new(core: u16, cores: u16, unix_base_s: u64, index: NgIndex) -> NgServer {
        NgServer {
            core,
            cores: cores.max(1),
            calls: HashMap::new(),
            index,
            unix_base_s,
            sdp: Vec::new(),
            stats: NgStats::default(),
        }
    }

    /// The core a Call-ID belongs to (FNV-1a: stable across cores and restarts).
    pub fn core_of(&self, call_id: &[u8]) -> u16 {
        let mut h: u32 = 0x811c_9dc5;
        for &b in call_id {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        (h % u32::from(self.cores)) as u16
    }

    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Handles one `ng` datagram at `now` (ms), writing the reply to `out`.
    /// `handed`: another core already routed it here.
    pub fn handle(
        &mut self,
        now: u64,
        datagram: &[u8],
        table: &mut Table,
        handed: bool,
        out: &mut Vec<u8>,
    ) -> NgOutcome {
        out.clear();
        let (cookie, req) = match ng::parse(datagram) {
            Ok(x) => x,
            Err(e) => {
                return match e.cookie {
                    Some(c) => {
                        self.stats.errors += 1;
                        ng::write_error(c, e.reason, out);
                        NgOutcome::Reply
                    }
                    None => {
                        self.stats.dropped += 1;
                        NgOutcome::Drop
                    }
                };
            }
        };
        self.stats.commands += 1;
        let call_id = match &req {
            Request::Offer(p) | Request::Answer(p) | Request::Delete(p) | Request::Query(p) => {
                Some(p.call_id)
            }
            _ => None,
        };
        if let Some(cid) = call_id {
            let owner = self.core_of(cid);
            if owner != self.core && !handed {
                return NgOutcome::Handoff(owner);
            }
        }
        let r = match req {
            Request::Ping => {
                ng::write_pong(cookie, out);
                Ok(())
            }
            Request::Offer(p) => self.offer(now, cookie, &p, table, out),
            Request::Answer(p) => self.answer(now, cookie, &p, table, out),
            Request::Delete(p) => self.delete(now, cookie, &p, table, out),
            Request::Query(p) => self.query(cookie, &p, table, out),
            Request::List { limit } => {
                let all = self.index.lock();
                let ids = all.iter().take(limit as usize).map(|k| &k[..]);
                ng::write_list(cookie, ids, out);
                Ok(())
            }
            Request::Unknown(_) => Err("Unrecognized command"),
        };
        if let Err(reason) = r {
            self.stats.errors += 1;
            out.clear();
            ng::write_error(cookie, reason, out);
        }
        NgOutcome::Reply
    }

    fn offer(
        &mut self,
        now: u64,
        cookie: &[u8],
        p: &Params<'_>,
        table: &mut Table,
        out: &mut Vec<u8>,
    ) -> Result<(), &'static str> {
        let sdp = p.sdp.ok_or("No SDP body in message")?;
        let from = p.from_tag.ok_or("No from-tag in message")?;
        let (id, party, fresh) = match self.live(p.call_id, table) {
            Some(c) => (c.id, c.party_of(from), false),
            None => {
                self.remove(p.call_id);
                let id = table.create(0);
                table.set_owner(id, NG_OWNER_BIT | u64::from(id.slot));
                (id, 0, true)
            }
        };
        if let Err(e) = self.apply(now, id, party, sdp, p, table) {
            if fresh {
                table.end(now, id);
            }
            return Err(e);
        }
        if fresh {
            self.index.lock().insert(p.call_id.into());
            self.calls.insert(
                p.call_id.into(),
                NgCall {
                    id,
                    tags: [from.into(), Box::default()],
                    created_ms: now,
                    last_signal_ms: now,
                },
            );
        } else if let Some(c) = self.calls.get_mut(p.call_id) {
            c.last_signal_ms = now;
        }
        ng::write_ok(cookie, Some(&self.sdp), None, out);
        Ok(())
    }

    fn answer(
        &mut self,
        now: u64,
        cookie: &[u8],
        p: &Params<'_>,
        table: &mut Table,
        out: &mut Vec<u8>,
    ) -> Result<(), &'static str> {
        let sdp = p.sdp.ok_or("No SDP body in message")?;
        let from = p.from_tag.ok_or("No from-tag in message")?;
        let to = p.to_tag.ok_or("No to-tag in message")?;
        let c = self.live(p.call_id, table).ok_or("Unknown call-id")?;
        // The answer is from whoever the offer (its From tag) was not from.
        let party = 1 - c.party_of(from);
        let id = c.id;
        self.apply(now, id, party, sdp, p, table)?;
        if let Some(c) = self.calls.get_mut(p.call_id) {
            if c.tags[1].is_empty() {
                c.tags[1] = to.into();
            }
            c.last_signal_ms = now;
        }
        table.arm(now, id);
        ng::write_ok(cookie, Some(&self.sdp), None, out);
        Ok(())
    }

    fn apply(
        &mut self,
        now: u64,
        id: SessionId,
        party: usize,
        sdp: &[u8],
        p: &Params<'_>,
        table: &mut Table,
    ) -> Result<(), &'static str> {
        let source: Option<IpAddr> = p.received_from.map(|r| r.addr);
        // rtpengine latches from the first packet whatever the SDP says,
        // unless told `strict-source`; tether does the same.
        let any_source = Some(!p.has_flag("strict-source"));
        let from = PartySdp {
            party,
            body: sdp,
            source,
            any_source,
            rewrite: Rewrite {
                strip_ice: true,
                replace_origin: p.replaces("origin"),
                direction: None,
            },
        };
        table
            .apply_sdp(now, id, &from, &mut self.sdp)
            .map_err(|e| match e {
                MediaError::NoPorts => "Ran out of ports",
                MediaError::Sdp(r) => r,
                MediaError::Gone => "Unknown call-id",
            })
    }

    fn delete(
        &mut self,
        now: u64,
        cookie: &[u8],
        p: &Params<'_>,
        table: &mut Table,
        out: &mut Vec<u8>,
    ) -> Result<(), &'static str> {
        let c = self.calls.get(p.call_id).ok_or("Call-ID not found")?;
        self.write_stats(cookie, c, table, true, out);
        if let Some(c) = self.remove(p.call_id) {
            table.end(now, c.id);
        }
        Ok(())
    }

    fn query(
        &mut self,
        cookie: &[u8],
        p: &Params<'_>,
        table: &mut Table,
        out: &mut Vec<u8>,
    ) -> Result<(), &'static str> {
        let c = self.live(p.call_id, table).ok_or("Unknown call-id")?;
        self.write_stats(cookie, c, table, false, out);
        Ok(())
    }

    fn write_stats(
        &self,
        cookie: &[u8],
        c: &NgCall,
        table: &Table,
        delete: bool,
        out: &mut Vec<u8>,
    ) {
        let streams = table.info(c.id);
        let unix = |ms: u64| self.unix_base_s + ms / 1000;
        let medias: Vec<Vec<ng::MediaInfo<'_>>> = (0..2)
            .map(|party| {
                streams
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let leg = &s.legs[party];
                        ng::MediaInfo {
                            index: i as u32 + 1,
                            media_type: s.media.as_bytes(),
                            protocol: b"RTP/AVP",
                            rtp: ng::StreamInfo {
                                local_port: leg.local_port,
                                endpoint: leg.latched.or(leg.signalled),
                                advertised: leg.signalled,
                                ssrc: None,
                                stats: ng::StreamStats {
                                    packets: leg.packets,
                                    bytes: leg.bytes,
                                    errors: 0,
                                    lost: leg.lost,
                                    jitter_ms: leg.jitter_ms.round() as u32,
                                    last_packet: 0,
                                },
                            },
                            rtcp: None,
                        }
                    })
                    .collect()
            })
            .collect();
        let legs = [
            ng::LegInfo {
                tag: &c.tags[0],
                created: unix(c.created_ms),
                in_dialogue_with: (!c.tags[1].is_empty()).then_some(&c.tags[1][..]),
                medias: &medias[0],
            },
            ng::LegInfo {
                tag: &c.tags[1],
                created: unix(c.created_ms),
                in_dialogue_with: Some(&c.tags[0][..]),
                medias: &medias[1],
            },
        ];
        let info = ng::QueryInfo {
            created: unix(c.created_ms),
            last_signal: unix(c.last_signal_ms),
            legs: &legs,
        };
        if delete {
            ng::write_delete(cookie, Some(&info), None, out);
        } else {
            ng::write_query(cookie, &info, out);
        }
    }

    /// A session of ours timed out (no media): forget its call.
    pub fn forget(&mut self, id: SessionId) {
        let index = &self.index;
        self.calls.retain(|k, c| {
            let keep = c.id != id;
            if !keep {
                index.lock().remove(k);
            }
            keep
        });
    }

    /// The call of `call_id`, when its session still exists.
    fn live(&self, call_id: &[u8], table: &Table) -> Option<&NgCall> {
        self.calls.get(call_id).filter(|c| table.exists(c.id))
    }

    fn remove(&mut self, call_id: &[u8]) -> Option<NgCall> {
        let c = self.calls.remove(call_id)?;
        self.index.lock().remove(call_id);
        Some(c)
    }
}

#[cfg(test)]
mod tests;
