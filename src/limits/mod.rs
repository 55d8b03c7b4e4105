//! Floods and abuse, per core and sans-IO: per-source token buckets for
//! REGISTER, INVITE and other requests, blocks after repeated
//! authentication failures, and a cap on the bindings one source address
//! holds.
//!
//! Each core keeps its own [`Guard`] for the sources whose datagrams it
//! receives (SO_REUSEPORT hashes a source address and port to one socket,
//! so one device's traffic always meets the same buckets): no lock and no
//! atomic on the per-packet path. A source is an IPv4 address or an IPv6
//! /64 ([`table::key_of`]); the limits are per core, so a source whose
//! ports the kernel spreads over several cores gets up to that many times
//! the configured rate.
//!
//! [`Guard::admit`] runs before a datagram is parsed: it reads only the
//! method token. Responses, CRLF and STUN keepalives, ACK, BYE and CANCEL
//! are never rate-limited (they finish work already admitted; limiting them
//! would leave calls up and answers unmatched), only dropped while their
//! source is blocked.

pub mod blocks;
pub mod bucket;
pub mod config;
pub mod table;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::metrics::CoreMetric;
pub use blocks::{Block, Blocks};
pub use config::{LimitsSection, Settings};
pub use table::{key_of, Kind, SourceKey, SourceTable};

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go on as usual.
    Pass,
    /// Over a limit or blocked: drop it (counted).
    Drop,
    /// Over a limit: answer `503` with this `Retry-After` (s).
    Reject { retry_after: u32 },
}

/// Counters (plain integers: one core writes them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Requests over their source's limit, by [`Kind`].
    pub limited: [u64; 3],
    /// Of those, answered `503`.
    pub answered: u64,
    /// Of those, dropped.
    pub dropped: u64,
    /// Datagrams dropped because their source was blocked.
    pub blocked_dropped: u64,
    /// Authentication failures counted against a source.
    pub auth_failures: u64,
}

/// One block as the API lists it.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct BlockInfo {
    /// The address that failed (an IPv6 block covers its /64).
    pub source: String,
    pub core: u16,
    pub failures: u32,
    /// Seconds since it started, and until it ends.
    pub age_s: u64,
    pub remaining_s: u64,
    /// Datagrams dropped since it started.
    pub dropped: u64,
}

/// One core's limits.
pub struct Guard {
    cfg: Arc<Settings>,
    table: SourceTable,
    blocks: Blocks,
    /// Bindings this core holds per source (only while a cap is set).
    bindings: hashbrown::HashMap<SourceKey, u32, foldhash::fast::FixedState>,
    /// The latest `now` seen (for gauges read without a clock).
    last_now: u64,
    pub stats: Stats,
}

impl Guard {
    /// A core's guard; `seed` keys its tables' hashes (a secret per core,
    /// so nobody can aim sources at one set or bucket of the maps).
    pub fn new(cfg: Arc<Settings>, seed: u64) -> Guard {
        let hasher = |s: u64| foldhash::fast::FixedState::with_seed(s);
        Guard {
            table: SourceTable::new(cfg.sources, seed),
            blocks: Blocks::new(cfg.max_blocks, seed.rotate_left(21)),
            bindings: hashbrown::HashMap::with_hasher(hasher(seed.rotate_left(42))),
            cfg,
            last_now: 0,
            stats: Stats::default(),
        }
    }

    /// New settings (a configuration reload): rates, action, thresholds
    /// and `exempt` apply at once; the tables are rebuilt only when their
    /// sizes change (buckets start full again then). A bindings cap
    /// switched on here counts the bindings made from now on.
    pub fn reconfigure(&mut self, cfg: Arc<Settings>, seed: u64) {
        if cfg.sources != self.cfg.sources {
            self.table = SourceTable::new(cfg.sources, seed);
        }
        if cfg.max_blocks != self.cfg.max_blocks {
            let mut blocks = Blocks::new(cfg.max_blocks, seed.rotate_left(21));
            blocks.started = self.blocks.started;
            self.blocks = blocks;
        }
        if cfg.max_bindings == 0 {
            self.bindings.clear();
        }
        self.cfg = cfg;
    }

    /// Nothing limited (endpoints made without a configuration).
    pub fn off() -> Guard {
        Guard::new(Arc::new(Settings::off()), 0)
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        !self.cfg.exempt.is_empty() && self.cfg.exempt.iter().any(|c| c.contains(ip))
    }

    /// The front door: whether a datagram from `src` at `now` goes on.
    /// Reads nothing but the leading method token.
    pub fn admit(&mut self, datagram: &[u8], src: SocketAddr, now: u64) -> Admit {
        self.last_now = now;
        let any_rate = self.cfg.any_rate();
        if !any_rate && self.blocks.is_empty() {
            return Admit::Pass;
        }
        let ip = src.ip();
        if self.exempt(ip) {
            return Admit::Pass;
        }
        let key = key_of(ip);
        if self.blocks.check(key, now) {
            self.stats.blocked_dropped += 1;
            return Admit::Drop;
        }
        let Some(kind) = classify(datagram) else {
            return Admit::Pass;
        };
        let rate = self.cfg.rates[kind as usize];
        if rate.per_s == 0 {
            return Admit::Pass;
        }
        let e = self.table.entry(key, &self.cfg.rates, now);
        let bucket = &mut e.buckets[kind as usize];
        if bucket.take(rate, now) {
            return Admit::Pass;
        }
        self.stats.limited[kind as usize] += 1;
        // One 503 a second per source at most: a spoofed flood must not
        // turn tether into a reflector, and one answer tells a real client.
        if self.cfg.reject && (e.answered_ms == 0 || now >= e.answered_ms + 1000) {
            e.answered_ms = now.max(1);
            self.stats.answered += 1;
            return Admit::Reject {
                retry_after: bucket.retry_after_s(rate),
            };
        }
        self.stats.dropped += 1;
        Admit::Drop
    }

    /// `src` failed to authenticate at `now` (a digest with the wrong
    /// password, a refused capability token, an authorization service's
    /// no). Enough of them within `auth_window_s` block the source for
    /// `block_s`: the block is logged here, once.
    pub fn auth_failed(&mut self, src: IpAddr, now: u64) -> Option<Block> {
        if self.cfg.block_ms == 0 || self.exempt(src) {
            return None;
        }
        self.stats.auth_failures += 1;
        let key = key_of(src);
        let cfg = &self.cfg;
        let e = self.table.entry(key, &cfg.rates, now);
        if now >= e.failures_since_ms.saturating_add(cfg.auth_window_ms) {
            e.failures = 0;
            e.failures_since_ms = now;
        }
        e.failures += 1;
        if e.failures < cfg.auth_failures {
            return None;
        }
        let block = Block {
            addr: src,
            since_ms: now,
            until_ms: now + cfg.block_ms,
            failures: e.failures,
            dropped: 0,
        };
        e.failures = 0;
        if !self.blocks.insert(key, block) {
            return None;
        }
        tracing::warn!(
            source = %src,
            failures = block.failures,
            window_s = cfg.auth_window_ms / 1000,
            block_s = cfg.block_ms / 1000,
            "source blocked: repeated authentication failures (limits.block_s; lift with DELETE /v1/blocks/<address>)"
        );
        Some(block)
    }

    /// Lifts the block of `ip`; `true` when this core had one.
    pub fn unblock(&mut self, ip: IpAddr) -> bool {
        self.blocks.remove(key_of(ip))
    }

    /// The API's question: the blocks in force at `now`, or with `lift`,
    /// the block of that address (now lifted) if this core had one.
    pub fn answer(&mut self, now: u64, core: u16, lift: Option<IpAddr>) -> Vec<BlockInfo> {
        let mut list = self.blocks(now, core);
        if let Some(ip) = lift {
            let key = key_of(ip);
            list.retain(|b| b.source.parse().is_ok_and(|a: IpAddr| key_of(a) == key));
            if self.unblock(ip) {
                tracing::info!(source = %ip, "block lifted through the API");
            }
        }
        list
    }

    /// The blocks in force at `now`, as the API lists them.
    pub fn blocks(&mut self, now: u64, core: u16) -> Vec<BlockInfo> {
        self.blocks.sweep(now);
        self.blocks
            .active(now)
            .map(|b| BlockInfo {
                source: b.addr.to_string(),
                core,
                failures: b.failures,
                age_s: now.saturating_sub(b.since_ms) / 1000,
                remaining_s: b.until_ms.saturating_sub(now).div_ceil(1000),
                dropped: b.dropped,
            })
            .collect()
    }

    /// How many more bindings `src` may add on this core (`u32::MAX`: no cap).
    pub fn binding_room(&self, src: IpAddr) -> u32 {
        if self.cfg.max_bindings == 0 || self.exempt(src) {
            return u32::MAX;
        }
        let held = self.bindings.get(&key_of(src)).copied().unwrap_or(0);
        self.cfg.max_bindings.saturating_sub(held)
    }

    /// A binding from `src` started (`added`) or stopped on this core.
    pub fn binding_changed(&mut self, src: IpAddr, added: bool) {
        if self.cfg.max_bindings == 0 {
            return;
        }
        let key = key_of(src);
        if added {
            *self.bindings.entry(key).or_insert(0) += 1;
        } else if let hashbrown::hash_map::Entry::Occupied(mut o) = self.bindings.entry(key) {
            *o.get_mut() -= 1;
            if *o.get() == 0 {
                o.remove();
            }
        }
    }

    /// This guard's value of metric `m` (0 for metrics it does not own).
    pub fn metric(&self, m: CoreMetric) -> u64 {
        use CoreMetric as M;
        let s = &self.stats;
        match m {
            M::LimitedRegister => s.limited[Kind::Register as usize],
            M::LimitedInvite => s.limited[Kind::Invite as usize],
            M::LimitedOther => s.limited[Kind::Other as usize],
            M::LimitAnswered => s.answered,
            M::LimitDropped => s.dropped,
            M::LimitSources => self.table.len() as u64,
            M::LimitEvictions => self.table.evictions,
            M::BlockedDropped => s.blocked_dropped,
            M::AuthFailures => s.auth_failures,
            M::BlocksStarted => self.blocks.started,
            M::BlockedSources => self.blocks.active(self.last_now).count() as u64,
            _ => 0,
        }
    }
}

/// The kind of request a datagram starts, from its method token alone;
/// `None` for what is never rate-limited (responses, keepalives, ACK,
/// BYE, CANCEL, anything that is not a request line).
pub fn classify(datagram: &[u8]) -> Option<Kind> {
    let start = datagram.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let rest = &datagram[start..];
    let end = rest.iter().take(32).position(|&c| c == b' ')?;
    match &rest[..end] {
        b"REGISTER" => Some(Kind::Register),
        b"INVITE" => Some(Kind::Invite),
        b"ACK" | b"BYE" | b"CANCEL" | b"SIP/2.0" => None,
        m if m.iter().all(|c| c.is_ascii_uppercase() || *c == b'-') => Some(Kind::Other),
        _ => None,
    }
}
