//! Bencode, the encoding of rtpengine's `ng` control protocol.
//!
//! Decoding borrows from the datagram: strings and dictionary keys are
//! slices of the input, so a parsed request costs a few small vectors and no
//! copies. The decoder is strict (canonical integers and lengths only, no
//! trailing bytes) and bounded: nesting stops at [`MAX_DEPTH`], every length
//! is checked against what is left of the input before it is used, and no
//! input makes it panic.
//!
//! The encoder appends to a `Vec<u8>`. Dictionary keys are written in the
//! order the caller gives them: bencode's rule that keys be sorted is not
//! honoured by rtpengine nor by the Kamailio and OpenSIPS modules (rtpengine's
//! documentation says so), and keeping the caller's order lets replies be
//! written in one pass without collecting and sorting keys.

use std::fmt;
use std::io::Write as _;

/// How deep lists and dictionaries may nest. rtpengine's deepest reply
/// (`query`: tags → tag → medias → media → streams → stream → stats) is 7
/// levels; 32 leaves room while keeping recursion shallow on hostile input.
pub const MAX_DEPTH: usize = 32;

/// A decoded bencode value, borrowing its strings from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Pairs in the order they were received (duplicates kept; [`Value::get`]
    /// finds the first).
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The value of `key` if this is a dictionary holding it.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        match self {
            Value::Dict(pairs) => pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The integer if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The pairs if this is a dictionary.
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Value<'a>)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Appends this value's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => put_int(out, *i),
            Value::Bytes(b) => put_bytes(out, b),
            Value::List(l) => {
                list_begin(out);
                for v in l {
                    v.encode(out);
                }
                end(out);
            }
            Value::Dict(d) => {
                dict_begin(out);
                for (k, v) in d {
                    put_bytes(out, k);
                    v.encode(out);
                }
                end(out);
            }
        }
    }
}

/// Why a datagram is not valid bencode; `at` is the byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The input ended inside a value (or was empty).
    Truncated,
    /// A byte that cannot start a value.
    UnexpectedByte { at: usize },
    /// An integer that is empty, not decimal, `-0`, has leading zeros or
    /// does not fit an i64.
    BadInt { at: usize },
    /// A string length that is not canonical decimal, or longer than the rest
    /// of the input.
    BadLength { at: usize },
    /// A dictionary key that is not a string.
    KeyNotString { at: usize },
    /// Lists and dictionaries nested deeper than [`MAX_DEPTH`].
    TooDeep { at: usize },
    /// Bytes after the value.
    Trailing { at: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "bencode: input ends inside a value"),
            Error::UnexpectedByte { at } => write!(f, "bencode: unexpected byte at {at}"),
            Error::BadInt { at } => write!(f, "bencode: invalid integer at {at}"),
            Error::BadLength { at } => write!(f, "bencode: invalid string length at {at}"),
            Error::KeyNotString { at } => {
                write!(f, "bencode: dictionary key at {at} is not a string")
            }
            Error::TooDeep { at } => write!(f, "bencode: nesting deeper than {MAX_DEPTH} at {at}"),
            Error::Trailing { at } => write!(f, "bencode: trailing bytes at {at}"),
        }
    }
}

impl std::error::Error for Error {}

/// Decodes exactly one value filling all of `input`.
pub fn decode(input: &[u8]) -> Result<Value<'_>, Error> {
    let mut d = Decoder { input, pos: 0 };
    let v = d.value(0)?;
    if d.pos != input.len() {
        return Err(Error::Trailing { at: d.pos });
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn peek(&self) -> Result<u8, Error> {
        self.input.get(self.pos).copied().ok_or(Error::Truncated)
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        let at = self.pos;
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let i = self.int_until(b'e')?;
                Ok(Value::Int(i))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                if depth >= MAX_DEPTH {
                    return Err(Error::TooDeep { at });
                }
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                if depth >= MAX_DEPTH {
                    return Err(Error::TooDeep { at });
                }
                self.pos += 1;
                let mut pairs = Vec::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(Error::KeyNotString { at: self.pos });
                    }
                    let k = self.bytes()?;
                    let v = self.value(depth + 1)?;
                    pairs.push((k, v));
                }
                self.pos += 1;
                Ok(Value::Dict(pairs))
            }
            _ => Err(Error::UnexpectedByte { at }),
        }
    }

    /// A canonical decimal integer ending at `term` (consumed).
    fn int_until(&mut self, term: u8) -> Result<i64, Error> {
        let at = self.pos;
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == term) else {
            return Err(Error::Truncated);
        };
        let digits = &rest[..len];
        let i = parse_canonical_int(digits).ok_or(Error::BadInt { at })?;
        self.pos += len + 1;
        Ok(i)
    }

    /// `<len>:<bytes>`.
    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let at = self.pos;
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let Some(colon) = rest.iter().position(|&b| b == b':') else {
            // A run of digits with no colon: truncated if only digits follow.
            return if rest.iter().all(u8::is_ascii_digit) {
                Err(Error::Truncated)
            } else {
                Err(Error::BadLength { at })
            };
        };
        let digits = &rest[..colon];
        let len = match parse_canonical_int(digits) {
            Some(n) if n >= 0 && digits.first() != Some(&b'-') => n as u64,
            _ => return Err(Error::BadLength { at }),
        };
        let body = &rest[colon + 1..];
        // Checked against what is left before any use: a huge prefix cannot
        // make us allocate or index out of bounds.
        if len > body.len() as u64 {
            return Err(Error::BadLength { at });
        }
        let len = len as usize;
        self.pos += colon + 1 + len;
        Ok(&body[..len])
    }
}

/// Decimal with an optional minus; no `-0`, no leading zeros, no overflow.
fn parse_canonical_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if neg => return None,
        [b'0', _, ..] => return None,
        _ => {}
    }
    // Accumulate negatively so i64::MIN parses.
    let mut acc: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_sub(i64::from(b - b'0'))?;
    }
    if neg {
        Some(acc)
    } else {
        acc.checked_neg()
    }
}

/// Appends `i<n>e`.
pub fn put_int(out: &mut Vec<u8>, n: i64) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "i{n}e");
}

/// Appends `<len>:<bytes>`.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let _ = write!(out, "{}:", b.len());
    out.extend_from_slice(b);
}

/// Opens a dictionary; write key/value pairs, then [`end`].
pub fn dict_begin(out: &mut Vec<u8>) {
    out.push(b'd');
}

/// Opens a list; write values, then [`end`].
pub fn list_begin(out: &mut Vec<u8>) {
    out.push(b'l');
}

/// Closes the innermost open list or dictionary.
pub fn end(out: &mut Vec<u8>) {
    out.push(b'e');
}

/// Appends a dictionary entry whose value is a string.
pub fn put_pair_bytes(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    put_bytes(out, key);
    put_bytes(out, value);
}

/// Appends a dictionary entry whose value is an integer.
pub fn put_pair_int(out: &mut Vec<u8>, key: &[u8], value: i64) {
    put_bytes(out, key);
    put_int(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out);
        out
    }

    #[test]
    fn decodes_each_kind() {
        assert_eq!(decode(b"i42e"), Ok(Value::Int(42)));
        assert_eq!(decode(b"i-7e"), Ok(Value::Int(-7)));
        assert_eq!(decode(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(decode(b"4:spam"), Ok(Value::Bytes(b"spam")));
        assert_eq!(decode(b"0:"), Ok(Value::Bytes(b"")));
        assert_eq!(decode(b"le"), Ok(Value::List(vec![])));
        assert_eq!(decode(b"de"), Ok(Value::Dict(vec![])));
        let v = decode(b"d7:command4:ping4:listli1e1:xee").unwrap();
        assert_eq!(
            v.get(b"command").and_then(Value::as_bytes),
            Some(&b"ping"[..])
        );
        let l = v.get(b"list").and_then(Value::as_list).unwrap();
        assert_eq!(l, &[Value::Int(1), Value::Bytes(b"x")]);
        assert_eq!(v.get(b"absent"), None);
    }

    #[test]
    fn integer_limits() {
        assert_eq!(decode(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(decode(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
        assert!(matches!(
            decode(b"i9223372036854775808e"),
            Err(Error::BadInt { .. })
        ));
        assert!(matches!(
            decode(b"i-9223372036854775809e"),
            Err(Error::BadInt { .. })
        ));
    }

    #[test]
    fn round_trips() {
        let v = Value::Dict(vec![
            (b"z", Value::Int(-3)),
            (b"a", Value::Bytes(b"with\0nul and spaces")),
            (
                b"l",
                Value::List(vec![
                    Value::Dict(vec![]),
                    Value::List(vec![]),
                    Value::Int(i64::MIN),
                ]),
            ),
            (b"", Value::Bytes(b"")),
        ]);
        let bytes = enc(&v);
        // Keys stay in the given order (not sorted).
        assert!(bytes.starts_with(b"d1:zi-3e1:a"));
        assert_eq!(decode(&bytes).unwrap(), v);
        assert_eq!(enc(&decode(&bytes).unwrap()), bytes);
    }

    #[test]
    fn builder_helpers_match_value_encoding() {
        let mut out = Vec::new();
        dict_begin(&mut out);
        put_pair_bytes(&mut out, b"result", b"ok");
        put_pair_int(&mut out, b"n", 5);
        put_bytes(&mut out, b"l");
        list_begin(&mut out);
        put_bytes(&mut out, b"a");
        end(&mut out);
        end(&mut out);
        assert_eq!(out, b"d6:result2:ok1:ni5e1:ll1:aee");
    }

    #[test]
    fn rejects_malformed() {
        type Check = fn(&Error) -> bool;
        let cases: &[(&[u8], Check)] = &[
            (b"", |e| *e == Error::Truncated),
            (b"i", |e| *e == Error::Truncated),
            (b"i12", |e| *e == Error::Truncated),
            (b"ie", |e| matches!(e, Error::BadInt { .. })),
            (b"i-e", |e| matches!(e, Error::BadInt { .. })),
            (b"i-0e", |e| matches!(e, Error::BadInt { .. })),
            (b"i03e", |e| matches!(e, Error::BadInt { .. })),
            (b"i-03e", |e| matches!(e, Error::BadInt { .. })),
            (b"i00e", |e| matches!(e, Error::BadInt { .. })),
            (b"i+3e", |e| matches!(e, Error::BadInt { .. })),
            (b"i 3e", |e| matches!(e, Error::BadInt { .. })),
            (b"i3.0e", |e| matches!(e, Error::BadInt { .. })),
            (b"i--3e", |e| matches!(e, Error::BadInt { .. })),
            (b"5:abc", |e| matches!(e, Error::BadLength { .. })),
            (b"03:abc", |e| matches!(e, Error::BadLength { .. })),
            (b"00:", |e| matches!(e, Error::BadLength { .. })),
            (b"3", |e| *e == Error::Truncated),
            (b"3x:abc", |e| matches!(e, Error::BadLength { .. })),
            (b"l", |e| *e == Error::Truncated),
            (b"li1e", |e| *e == Error::Truncated),
            (b"d", |e| *e == Error::Truncated),
            (b"d3:key", |e| *e == Error::Truncated),
            (b"di1ei2ee", |e| matches!(e, Error::KeyNotString { at: 1 })),
            (b"dle3:valee", |e| matches!(e, Error::KeyNotString { .. })),
            (b"e", |e| matches!(e, Error::UnexpectedByte { at: 0 })),
            (b"x", |e| matches!(e, Error::UnexpectedByte { at: 0 })),
            (b"-1:a", |e| matches!(e, Error::UnexpectedByte { at: 0 })),
            (b"i1ei2e", |e| matches!(e, Error::Trailing { at: 3 })),
            (b"dee", |e| matches!(e, Error::Trailing { at: 2 })),
            (b"4:spam ", |e| matches!(e, Error::Trailing { at: 6 })),
        ];
        for (input, ok) in cases {
            let err = decode(input).expect_err(&String::from_utf8_lossy(input));
            assert!(
                ok(&err),
                "{:?} gave {err:?}",
                String::from_utf8_lossy(input)
            );
            // Display never panics either.
            let _ = err.to_string();
        }
    }

    #[test]
    fn huge_length_prefixes_are_rejected_without_allocating() {
        for input in [
            &b"18446744073709551615:x"[..],
            b"18446744073709551616:x",
            b"99999999999999999999999999999999:x",
            b"9223372036854775807:",
            b"d3:key4294967296:ve",
            b"l2147483648:e",
        ] {
            assert!(
                matches!(decode(input), Err(Error::BadLength { .. })),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn depth_bomb_stops_at_the_limit() {
        let ok = [b"l".repeat(MAX_DEPTH), b"e".repeat(MAX_DEPTH)].concat();
        assert!(decode(&ok).is_ok());
        let deep = [b"l".repeat(MAX_DEPTH + 1), b"e".repeat(MAX_DEPTH + 1)].concat();
        assert_eq!(decode(&deep), Err(Error::TooDeep { at: MAX_DEPTH }));
        // A megabyte of openers: no stack overflow, a clean error.
        let bomb = b"l".repeat(1 << 20);
        assert!(matches!(decode(&bomb), Err(Error::TooDeep { .. })));
        let dbomb = b"d1:a".repeat(1 << 16);
        assert!(matches!(decode(&dbomb), Err(Error::TooDeep { .. })));
    }

    #[test]
    fn accessors_on_wrong_kinds() {
        let v = Value::Int(1);
        assert_eq!(v.get(b"x"), None);
        assert_eq!(v.as_bytes(), None);
        assert_eq!(v.as_list(), None);
        assert_eq!(v.as_dict(), None);
        assert_eq!(Value::Bytes(b"1").as_int(), None);
    }
}
