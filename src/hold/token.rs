//! The bridge token: what a woken device hands back to find its held call.
//!
//! tether seals the held call's place (node, core, slot and the slot's
//! nonce) and an expiry into the token it sends with the wake-up; the
//! device calls `sip:<prefix><token>@<host>`. The token is encrypted, not
//! only signed, so that the push gateway and whoever reads the push learn
//! nothing about tether's tables, and it carries all the state a call-back
//! needs, so any core (or, with shared keys, any node) can tell where the
//! call is held without a shared lookup.
//!
//! Bytes: version (1), key id (1), AEAD nonce (12), then ChaCha20-Poly1305
//! ciphertext of node (u32 BE), core (u16 BE), slot (u32 BE), slot nonce
//! (u32 BE), expiry in unix seconds (u64 BE), then its 16-byte tag. The
//! version and key id stay in clear (the opener needs them before it can
//! decrypt) and are bound as associated data, so changing either breaks
//! the tag. Text: base64url without padding (70 characters), whose
//! alphabet is legal unescaped in a SIP URI user part.
//!
//! Sans-IO: the caller draws the AEAD nonce from its RNG and passes the
//! time; nothing here reads a clock or the system's randomness.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};

use crate::config::ConfigError;

use super::config::PushSection;

const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 1 + 12;
const PLAIN_LEN: usize = 4 + 2 + 4 + 4 + 8;
const TAG_LEN: usize = 16;
const TOKEN_BYTES: usize = HEADER_LEN + PLAIN_LEN + TAG_LEN;

/// The key id of the key drawn at start when none is configured.
pub const RANDOM_KEY_ID: u8 = 0;

/// A held call's place on this node, as sealed into a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The core holding the call.
    pub core: u16,
    /// Its slot in that core's table of held calls.
    pub slot: u32,
    /// The slot's nonce when the call was held: a token for a call that
    /// ended and whose slot was reused no longer matches.
    pub nonce: u32,
    /// The token opens until this time (unix seconds), inclusive.
    pub expires: u64,
}

/// Why a token did not open. Each is answered the same way on the wire
/// (the caller learns nothing); they differ for logs, metrics and routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token: wrong length, not base64url, or an unknown version.
    Malformed,
    /// Sealed with a key this node does not hold (rotated out, or another
    /// cluster's).
    UnknownKey(u8),
    /// The tag does not match: forged, tampered with, or truncated.
    BadTag,
    /// Genuine but past its expiry.
    Expired,
    /// Genuine and fresh, but the call is held on another node.
    WrongNode(u32),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed => f.write_str("malformed bridge token"),
            TokenError::UnknownKey(id) => write!(f, "bridge token sealed with unknown key {id}"),
            TokenError::BadTag => f.write_str("bridge token failed authentication"),
            TokenError::Expired => f.write_str("bridge token expired"),
            TokenError::WrongNode(n) => write!(f, "bridge token names node {n}"),
        }
    }
}

impl std::error::Error for TokenError {}

/// The keys that seal and open bridge tokens on one node.
pub struct BridgeKeys {
    node: u32,
    /// The first seals; every one opens.
    keys: Vec<(u8, ChaCha20Poly1305)>,
}

impl std::fmt::Debug for BridgeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        let ids: Vec<u8> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("BridgeKeys")
            .field("node", &self.node)
            .field("key_ids", &ids)
            .finish()
    }
}

impl BridgeKeys {
    /// The length of every token, in characters.
    pub const TOKEN_LEN: usize = (TOKEN_BYTES * 4).div_ceil(3);

    /// Keys for `node`; the first of `keys` seals. `keys` must not be empty.
    pub fn new(node: u32, keys: &[(u8, [u8; 32])]) -> BridgeKeys {
        assert!(!keys.is_empty(), "BridgeKeys needs at least one key");
        BridgeKeys {
            node,
            keys: keys
                .iter()
                .map(|(id, k)| (*id, ChaCha20Poly1305::new(Key::from_slice(k))))
                .collect(),
        }
    }

    /// The keys `[push]` lists, or, when it lists none, `random` (drawn by
    /// the caller at start) under id [`RANDOM_KEY_ID`].
    pub fn from_config(push: &PushSection, random: [u8; 32]) -> Result<BridgeKeys, ConfigError> {
        let keys = push.keys()?;
        if keys.is_empty() {
            return Ok(BridgeKeys::new(push.node, &[(RANDOM_KEY_ID, random)]));
        }
        Ok(BridgeKeys::new(push.node, &keys))
    }

    /// This node's id.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// The token for `held` on this node, sealed with the current key.
    /// `nonce` must be fresh for that key: draw it from a CSPRNG (random
    /// 96-bit nonces are safe for about 2^32 tokens per key).
    pub fn seal(&self, held: &Held, nonce: [u8; 12]) -> String {
        let (id, cipher) = &self.keys[0];
        let mut buf = [0u8; TOKEN_BYTES];
        buf[0] = VERSION;
        buf[1] = *id;
        buf[2..HEADER_LEN].copy_from_slice(&nonce);
        let (header, rest) = buf.split_at_mut(HEADER_LEN);
        let (plain, tag_out) = rest.split_at_mut(PLAIN_LEN);
        plain[0..4].copy_from_slice(&self.node.to_be_bytes());
        plain[4..6].copy_from_slice(&held.core.to_be_bytes());
        plain[6..10].copy_from_slice(&held.slot.to_be_bytes());
        plain[10..14].copy_from_slice(&held.nonce.to_be_bytes());
        plain[14..22].copy_from_slice(&held.expires.to_be_bytes());
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &header[..2], plain)
            .expect("a 22-byte message is far below ChaCha20-Poly1305's limit");
        tag_out.copy_from_slice(&tag);
        let mut out = String::with_capacity(Self::TOKEN_LEN);
        URL_SAFE_NO_PAD.encode_string(buf, &mut out);
        out
    }

    /// Opens `text` (the token alone, without prefix) at `now_unix`
    /// (seconds). Checks, in order: form, key, tag, expiry, node.
    pub fn open(&self, text: &str, now_unix: u64) -> Result<Held, TokenError> {
        // The length check first: a long string never reaches the decoder.
        if text.len() != Self::TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut buf = [0u8; TOKEN_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut buf) {
            Ok(TOKEN_BYTES) => {}
            _ => return Err(TokenError::Malformed),
        }
        if buf[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let id = buf[1];
        let cipher = self
            .keys
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, c)| c)
            .ok_or(TokenError::UnknownKey(id))?;
        let (header, rest) = buf.split_at_mut(HEADER_LEN);
        let (sealed, tag) = rest.split_at_mut(PLAIN_LEN);
        cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&header[2..]),
                &header[..2],
                sealed,
                Tag::from_slice(tag),
            )
            .map_err(|_| TokenError::BadTag)?;
        let node = u32::from_be_bytes(field(sealed, 0));
        let held = Held {
            core: u16::from_be_bytes(field(sealed, 4)),
            slot: u32::from_be_bytes(field(sealed, 6)),
            nonce: u32::from_be_bytes(field(sealed, 10)),
            expires: u64::from_be_bytes(field(sealed, 14)),
        };
        if now_unix > held.expires {
            return Err(TokenError::Expired);
        }
        if node != self.node {
            return Err(TokenError::WrongNode(node));
        }
        Ok(held)
    }
}

/// `N` bytes of the authenticated plaintext from `at` (a fixed layout
/// within a fixed-size buffer).
fn field<const N: usize>(plain: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&plain[at..at + N]);
    out
}

/// The bridge URI a woken device calls: `sip:<prefix><token>@<host>`;
/// `host` may carry a port (`198.51.100.7:5060`).
pub fn bridge_uri(prefix: &str, token: &str, host: &str) -> String {
    format!("sip:{prefix}{token}@{host}")
}

/// The token in a Request-URI user part (as written, still escaped) that
/// starts with `prefix`: the rest, when it has a token's length and
/// alphabet. `None` for any other user, so ordinary AORs pass by cheaply.
/// An escaped user (`%2D` for `-`) does not match: the token's alphabet
/// never needs escaping, and a device sends the URI it was given.
pub fn token_in_user<'a>(user: &'a str, prefix: &str) -> Option<&'a str> {
    let token = user.strip_prefix(prefix)?;
    let ok = token.len() == BridgeKeys::TOKEN_LEN
        && token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    ok.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;

    fn held() -> Held {
        Held {
            core: 3,
            slot: 0x0102_0304,
            nonce: 0xdead_beef,
            expires: NOW + 30,
        }
    }

    fn keys(node: u32) -> BridgeKeys {
        BridgeKeys::new(node, &[(7, [7u8; 32]), (6, [6u8; 32])])
    }

    fn nonce(n: u8) -> [u8; 12] {
        [n; 12]
    }

    #[test]
    fn round_trip_and_fits_a_uri_user_part() {
        let k = keys(1);
        let t = k.seal(&held(), nonce(1));
        assert_eq!(t.len(), BridgeKeys::TOKEN_LEN);
        assert_eq!(BridgeKeys::TOKEN_LEN, 70);
        assert_eq!(k.open(&t, NOW), Ok(held()));
        // Valid until the expiry second inclusive.
        assert_eq!(k.open(&t, NOW + 30), Ok(held()));
        let uri = bridge_uri("bridge-", &t, "127.0.0.1:5060");
        let parsed = crate::sip::Uri::parse(&uri).unwrap();
        let user = parsed.user.unwrap();
        assert_eq!(token_in_user(user, "bridge-"), Some(t.as_str()));
        assert_eq!(
            k.open(token_in_user(user, "bridge-").unwrap(), NOW),
            Ok(held())
        );
    }

    #[test]
    fn fresh_nonces_make_different_tokens() {
        let k = keys(1);
        assert_ne!(k.seal(&held(), nonce(1)), k.seal(&held(), nonce(2)));
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let k = keys(1);
        let t = k.seal(&held(), nonce(1));
        assert_eq!(k.open(&t, NOW + 31), Err(TokenError::Expired));
        // The holder's node is sealed in; another node with the same keys
        // learns where the call is.
        assert_eq!(keys(2).open(&t, NOW), Err(TokenError::WrongNode(1)));
        // Expired wins over the node: there is nothing to route to.
        assert_eq!(keys(2).open(&t, NOW + 31), Err(TokenError::Expired));
        let stranger = BridgeKeys::new(1, &[(9, [9u8; 32])]);
        assert_eq!(stranger.open(&t, NOW), Err(TokenError::UnknownKey(7)));
        // Same id, other key material: a forgery.
        let forger = BridgeKeys::new(1, &[(7, [8u8; 32])]);
        assert_eq!(forger.open(&t, NOW), Err(TokenError::BadTag));
        assert_eq!(k.open("", NOW), Err(TokenError::Malformed));
        assert_eq!(k.open(&t[1..], NOW), Err(TokenError::Malformed));
        assert_eq!(k.open(&format!("{t}A"), NOW), Err(TokenError::Malformed));
        let mut plus = t.clone();
        plus.replace_range(10..11, "+");
        assert_eq!(k.open(&plus, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let k = keys(1);
        let t = k.seal(&held(), nonce(3));
        let bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let text = URL_SAFE_NO_PAD.encode(&b);
                let r = k.open(&text, NOW);
                let want = match i {
                    0 => TokenError::Malformed,
                    1 if b[1] != 7 && b[1] != 6 => TokenError::UnknownKey(b[1]),
                    _ => TokenError::BadTag,
                };
                assert_eq!(r, Err(want), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn rotation_opens_old_tokens_and_seals_with_the_first_key() {
        let old = BridgeKeys::new(1, &[(1, [1u8; 32])]);
        let t_old = old.seal(&held(), nonce(1));
        // New key first, old key still listed: both open.
        let rotating = BridgeKeys::new(1, &[(2, [2u8; 32]), (1, [1u8; 32])]);
        let t_new = rotating.seal(&held(), nonce(2));
        assert_eq!(rotating.open(&t_old, NOW), Ok(held()));
        assert_eq!(rotating.open(&t_new, NOW), Ok(held()));
        assert_eq!(old.open(&t_new, NOW), Err(TokenError::UnknownKey(2)));
        // Old key dropped: its tokens no longer open.
        let rotated = BridgeKeys::new(1, &[(2, [2u8; 32])]);
        assert_eq!(rotated.open(&t_old, NOW), Err(TokenError::UnknownKey(1)));
        assert_eq!(rotated.open(&t_new, NOW), Ok(held()));
    }

    #[test]
    fn from_config_uses_listed_keys_or_the_random_one() {
        let mut push = PushSection {
            node: 9,
            ..PushSection::default()
        };
        let random = BridgeKeys::from_config(&push, [5u8; 32]).unwrap();
        assert_eq!(random.node(), 9);
        let t = random.seal(&held(), nonce(1));
        assert_eq!(
            BridgeKeys::new(9, &[(RANDOM_KEY_ID, [5u8; 32])]).open(&t, NOW),
            Ok(held())
        );
        push.bridge_keys = vec![
            super::super::config::BridgeKey {
                id: 4,
                key: "44".repeat(32),
            },
            super::super::config::BridgeKey {
                id: 3,
                key: "33".repeat(32),
            },
        ];
        let listed = BridgeKeys::from_config(&push, [5u8; 32]).unwrap();
        let t = listed.seal(&held(), nonce(1));
        assert_eq!(
            BridgeKeys::new(9, &[(4, [0x44; 32])]).open(&t, NOW),
            Ok(held())
        );
        assert_eq!(random.open(&t, NOW), Err(TokenError::UnknownKey(4)));
        assert!(!format!("{listed:?}").contains("44"));
        push.bridge_keys[0].key = "zz".into();
        assert!(BridgeKeys::from_config(&push, [5u8; 32]).is_err());
    }

    #[test]
    fn prefix_extraction_passes_other_users_by() {
        let t = keys(1).seal(&held(), nonce(1));
        assert_eq!(token_in_user(&format!("bridge-{t}"), "bridge-"), Some(&*t));
        assert_eq!(token_in_user(&format!("bridge-{t}"), "wake-"), None);
        assert_eq!(token_in_user("alice", "bridge-"), None);
        assert_eq!(token_in_user("bridge-", "bridge-"), None);
        assert_eq!(token_in_user(&format!("bridge-{t}x"), "bridge-"), None);
        let escaped = format!("bridge-{}%41", &t[..t.len() - 1]);
        assert_eq!(token_in_user(&escaped, "bridge-"), None);
        let mut wide = format!("bridge-{}", &t[..t.len() - 2]);
        wide.push('é');
        assert_eq!(token_in_user(&wide, "bridge-"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn garbage_never_panics(s in ".{0,200}", now in any::<u64>()) {
            let k = keys(1);
            prop_assert!(k.open(&s, now).is_err());
            let _ = token_in_user(&s, "bridge-");
        }

        #[test]
        fn token_alphabet_garbage_is_refused(
            s in "[A-Za-z0-9_-]{70}",
            now in any::<u64>(),
        ) {
            // Right length and alphabet: gets past the form check to the
            // key or the tag, never opens.
            let r = keys(1).open(&s, now);
            prop_assert!(r.is_err());
            prop_assert!(matches!(
                r,
                Err(TokenError::Malformed | TokenError::UnknownKey(_) | TokenError::BadTag)
            ));
        }

        #[test]
        fn any_held_round_trips(
            core in any::<u16>(),
            slot in any::<u32>(),
            n in any::<u32>(),
            expires in any::<u64>(),
            aead_nonce in any::<[u8; 12]>(),
        ) {
            let k = keys(1);
            let h = Held { core, slot, nonce: n, expires };
            let t = k.seal(&h, aead_nonce);
            prop_assert_eq!(t.len(), BridgeKeys::TOKEN_LEN);
            prop_assert_eq!(k.open(&t, expires), Ok(h));
            let user = format!("bridge-{t}");
            prop_assert_eq!(token_in_user(&user, "bridge-"), Some(t.as_str()));
        }
    }
}
