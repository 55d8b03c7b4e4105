//! Byte-level helpers shared by the header grammars. Everything works on `&str`
//! slices of the already UTF-8-checked header section and only ever splits at
//! ASCII bytes, so slicing can never land inside a multi-byte character.

/// A header value that breaks the grammar (unterminated quote, bad parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Linear white space inside a header value. CR and LF count because a folded
/// value (RFC 3261 §7.3.1) keeps its `CRLF SP` on the wire; the line splitter
/// guarantees a CR/LF inside a value is always followed by SP or HT.
#[inline]
pub fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 `token` characters.
#[inline]
pub fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// True when `s` is a non-empty RFC 3261 token.
#[inline]
pub fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Strips leading and trailing LWS.
#[inline]
pub fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let mut start = 0;
    let mut end = b.len();
    while start < end && is_lws(b[start]) {
        start += 1;
    }
    while end > start && is_lws(b[end - 1]) {
        end -= 1;
    }
    &s[start..end]
}

/// Finds the first `sep` that is outside a quoted string and outside `<...>`.
/// Returns `Err(Malformed)` for an unterminated quoted string.
pub fn find_top_level(s: &str, sep: u8) -> Result<Option<usize>, Malformed> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut in_angle = false;
    while i < b.len() {
        match b[i] {
            b'"' if !in_angle => {
                i = skip_quoted(b, i)?;
                continue;
            }
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            c if c == sep && !in_angle => return Ok(Some(i)),
            _ => {}
        }
        i += 1;
    }
    Ok(None)
}

/// Given `b[open] == b'"'`, returns the index just past the closing quote,
/// honouring `\`-escapes (RFC 3261 `quoted-pair`).
pub fn skip_quoted(b: &[u8], open: usize) -> Result<usize, Malformed> {
    let mut i = open + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(Malformed)
}

/// Splits a list-valued header into its top-level comma-separated elements,
/// trimmed, skipping empty ones. An unterminated quote yields one final `Err`.
#[derive(Clone)]
pub struct CommaList<'a> {
    rest: Option<&'a str>,
}

impl<'a> CommaList<'a> {
    pub fn new(s: &'a str) -> Self {
        CommaList { rest: Some(s) }
    }
}

impl<'a> Iterator for CommaList<'a> {
    type Item = Result<&'a str, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let s = self.rest?;
            let (item, rest) = match find_top_level(s, b',') {
                Ok(Some(i)) => (&s[..i], Some(&s[i + 1..])),
                Ok(None) => (s, None),
                Err(Malformed) => {
                    self.rest = None;
                    return Some(Err(Malformed));
                }
            };
            self.rest = rest;
            let item = trim(item);
            if !item.is_empty() {
                return Some(Ok(item));
            }
        }
    }
}

/// One `;name[=value]` parameter. `value` is as written (a quoted value keeps its quotes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
}

impl<'a> Param<'a> {
    /// The value without surrounding double quotes (escapes left as written).
    pub fn unquoted(&self) -> Option<&'a str> {
        self.value.map(unquote)
    }
}

/// Removes one pair of surrounding double quotes, if present.
pub fn unquote(v: &str) -> &str {
    let b = v.as_bytes();
    if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// Iterates `;`-separated parameters. The input starts right after a `;`
/// (or is empty). Parameter names are not validated here; see [`check_params`].
#[derive(Clone)]
pub struct Params<'a> {
    rest: &'a str,
}

impl<'a> Params<'a> {
    pub fn new(s: &'a str) -> Self {
        Params { rest: s }
    }

    /// The first parameter called `name` (case-insensitive). `Some(None)` means
    /// present without a value (e.g. `;rport`, `;lr`).
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.clone()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value)
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let s = self.rest;
            // Quotes are honoured so that `;+sip.instance="<urn:x;y>"` stays whole.
            let end = find_top_level(s, b';').ok().flatten().unwrap_or(s.len());
            let item = &s[..end];
            self.rest = if end < s.len() { &s[end + 1..] } else { "" };
            let item = trim(item);
            if item.is_empty() {
                continue;
            }
            return Some(match item.find('=') {
                Some(eq) => Param {
                    name: trim(&item[..eq]),
                    value: Some(trim(&item[eq + 1..])),
                },
                None => Param {
                    name: item,
                    value: None,
                },
            });
        }
    }
}

/// Validates a parameter section: names are tokens; values are tokens, quoted
/// strings, or (for `received`/`maddr`-like params) host characters.
pub fn check_params(s: &str) -> Result<(), Malformed> {
    // NUL never occurs as a separator, so this only checks that quotes balance.
    if find_top_level(s, 0).is_err() {
        return Err(Malformed);
    }
    // An empty element (a trailing `;`) is not allowed by the grammar.
    if !s.is_empty() && (trim(s).is_empty() || trim(s).ends_with(';')) {
        return Err(Malformed);
    }
    for p in Params::new(s) {
        if !is_token_str(p.name) {
            return Err(Malformed);
        }
        if let Some(v) = p.value {
            if v.is_empty() {
                return Err(Malformed);
            }
            if v.starts_with('"') {
                let vb = v.as_bytes();
                if skip_quoted(vb, 0) != Ok(vb.len()) {
                    return Err(Malformed);
                }
            } else if !v
                .bytes()
                .all(|c| is_token(c) || matches!(c, b':' | b'[' | b']'))
            {
                return Err(Malformed);
            }
        }
    }
    Ok(())
}

/// Parses a run of ASCII digits into a `u64`, refusing empty input, non-digits
/// and overflow.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s.as_bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    Some(v)
}

/// Decodes `%XX` escapes. Returns `None` for a malformed escape.
/// Borrowed when there is nothing to decode (the common case).
pub fn unescape(s: &str) -> Option<std::borrow::Cow<'_, [u8]>> {
    if !s.as_bytes().contains(&b'%') {
        return Some(std::borrow::Cow::Borrowed(s.as_bytes()));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex_val(*b.get(i + 1)?)?;
            let lo = hex_val(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(std::borrow::Cow::Owned(out))
}

/// True when every `%` in `s` starts a valid `%XX` escape.
pub fn escapes_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(&h), Some(&l)) if hex_val(h).is_some() && hex_val(l).is_some() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

#[inline]
fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_list_respects_quotes_and_angles() {
        let v: Vec<_> = CommaList::new(r#""a, b" <sip:x;p=1,2>, <sip:y> ,, z"#)
            .map(Result::unwrap)
            .collect();
        assert_eq!(v, vec![r#""a, b" <sip:x;p=1,2>"#, "<sip:y>", "z"]);
        assert_eq!(CommaList::new(r#""open"#).next(), Some(Err(Malformed)));
    }

    #[test]
    fn params_with_flags_quotes_and_lws() {
        let p = Params::new(r#"branch=z9hG4bK1 ; rport ;+sip.instance="<urn:uuid:1;x>";q=0.5"#);
        assert_eq!(p.get("BRANCH"), Some(Some("z9hG4bK1")));
        assert_eq!(p.get("rport"), Some(None));
        assert_eq!(p.get("+sip.instance"), Some(Some(r#""<urn:uuid:1;x>""#)));
        assert_eq!(p.get("q"), Some(Some("0.5")));
        assert_eq!(p.get("nope"), None);
    }

    #[test]
    fn check_params_rejects_bad_names_and_empty_values() {
        assert!(check_params("tag=abc;lr;x=\"q\"").is_ok());
        assert!(check_params("").is_ok());
        assert!(check_params("t ag=1").is_err());
        assert!(check_params("tag=").is_err());
        assert!(check_params("a=1;").is_err());
        assert!(check_params("a=\"open").is_err());
    }

    #[test]
    fn numbers_and_escapes() {
        assert_eq!(parse_u64("0042"), Some(42));
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("1a"), None);
        assert_eq!(parse_u64("99999999999999999999"), None);
        assert_eq!(&*unescape("a%20b").unwrap(), b"a b");
        assert!(unescape("%2").is_none());
        assert!(escapes_valid("%41bc"));
        assert!(!escapes_valid("%4g"));
    }
}
