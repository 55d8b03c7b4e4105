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

/// Byte classes for the scanners, one table lookup per byte.
const TOKEN: u8 = 1;
/// Unquoted parameter value characters: token plus `:[]` (`received=[::1]`).
const VALUE: u8 = 2;
/// Bytes that end or split a parameter: `;`, `=`, `"`.
const PARAM_STOP: u8 = 4;
/// No byte has this class: [`ParamList::parse`] uses it to mark a value
/// that is exactly one quoted string.
const QUOTED: u8 = 8;
/// RFC 3261 `word` characters: token plus `()<>:\"/[]?{}`.
const WORD: u8 = 16;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            t[c] = TOKEN;
        }
        if t[c] & TOKEN != 0 || matches!(b, b':' | b'[' | b']') {
            t[c] |= VALUE;
        }
        if matches!(b, b';' | b'=' | b'"') {
            t[c] |= PARAM_STOP;
        }
        if t[c] & TOKEN != 0
            || matches!(
                b,
                b'(' | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            )
        {
            t[c] |= WORD;
        }
        c += 1;
    }
    t
};

/// RFC 3261 `token` characters.
#[inline(always)]
pub fn is_token(b: u8) -> bool {
    CLASS[usize::from(b)] & TOKEN != 0
}

/// Position of `needle` in a short slice. An inline loop beats a call into
/// memchr's SIMD dispatch for header-value-sized inputs.
#[inline]
pub fn find_byte(needle: u8, b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == needle)
}

/// True when `s` is a non-empty RFC 3261 token.
#[inline]
pub fn is_token_str(s: &str) -> bool {
    !s.is_empty() && all_token(s.as_bytes())
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
    debug_assert!(!matches!(sep, b'"' | b'<' | b'>'));
    let b = s.as_bytes();
    let mut i = 0;
    // Outside brackets only `sep`, `"` and `<` matter, inside only `>` (a
    // quote there is part of the URI): jump from one to the next.
    while let Some(j) = memchr::memchr3(sep, b'"', b'<', &b[i..]) {
        let at = i + j;
        match b[at] {
            b'"' => i = skip_quoted(b, at)?,
            b'<' => match memchr::memchr(b'>', &b[at + 1..]) {
                Some(k) => i = at + 1 + k + 1,
                None => return Ok(None),
            },
            _ => return Ok(Some(at)),
        }
    }
    Ok(None)
}

/// True when `s` is a non-empty RFC 3261 `word` (what a Call-ID is made of).
#[inline]
pub fn is_word(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .fold(true, |a, &c| a & (CLASS[usize::from(c)] & WORD != 0))
}

/// True when every byte of `s` is a token character (branch-free; no early exit).
#[inline]
fn all_token(s: &[u8]) -> bool {
    s.iter()
        .fold(true, |a, &c| a & (CLASS[usize::from(c)] & TOKEN != 0))
}

#[inline]
fn all_value(s: &[u8]) -> bool {
    s.iter()
        .fold(true, |a, &c| a & (CLASS[usize::from(c)] & VALUE != 0))
}

/// Parameters parsed once: `name[=value]` pairs, validated, kept as 8-byte
/// offsets into the text. Lookups scan a handful of entries instead of
/// re-splitting the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamList<'a> {
    base: &'a str,
    items: smallvec::SmallVec<[PackedParam; 8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackedParam {
    name_start: u16,
    name_len: u16,
    value_start: u16,
    /// `NO_VALUE` for a flag parameter such as `;lr`.
    value_len: u16,
}

const NO_VALUE: u16 = u16::MAX;

impl<'a> ParamList<'a> {
    /// Parses the text after a header value's first `;` (empty for none).
    /// Names are tokens; values are tokens (plus `:[]`) or quoted strings;
    /// an empty element (`;;`, trailing `;`) is an error.
    pub fn parse(s: &'a str) -> Result<ParamList<'a>, Malformed> {
        let mut items = smallvec::SmallVec::new();
        let b = s.as_bytes();
        if b.is_empty() {
            return Ok(ParamList { base: s, items });
        }
        // Offsets are u16: header values never exceed a datagram (at most 64 KiB).
        if b.len() >= usize::from(NO_VALUE) {
            return Err(Malformed);
        }
        let mut i = 0;
        loop {
            let seg_start = i;
            let mut eq = None;
            // The AND of the byte classes of the name, and of the part being
            // scanned (name, then value): the common `name=token` segment is
            // checked on the way and needs no second pass.
            let mut name_class = 0;
            let mut class = u8::MAX;
            while i < b.len() {
                let c = b[i];
                let k = CLASS[usize::from(c)];
                if k & PARAM_STOP != 0 {
                    match c {
                        b';' => break,
                        b'=' if eq.is_none() => {
                            eq = Some(i);
                            name_class = class;
                            class = u8::MAX;
                            i += 1;
                            continue;
                        }
                        b'"' => {
                            // A quote right after `=` opens a quoted value;
                            // any other byte after it clears the mark.
                            let opens_value = eq.is_some_and(|e| e + 1 == i);
                            i = skip_quoted(b, i)?;
                            class = if opens_value { QUOTED } else { 0 };
                            continue;
                        }
                        _ => {}
                    }
                }
                class &= k;
                i += 1;
            }
            let (name, value) = match eq {
                Some(e) => ((seg_start, e), Some((e + 1, i))),
                None => ((seg_start, i), None),
            };
            // No LWS is token or value class, so on the fast path there is
            // nothing to trim and the classes seen are those of name and value.
            let fast = match eq {
                Some(e) => {
                    name_class & TOKEN != 0
                        && class & (VALUE | QUOTED) != 0
                        && e > seg_start
                        && i > e + 1
                }
                None => class & TOKEN != 0 && i > seg_start,
            };
            let (name, value) = if fast {
                (name, value)
            } else {
                let name = trim_range(b, name.0, name.1);
                let value = value.map(|(vs, ve)| trim_range(b, vs, ve));
                check_param(b, name, value)?;
                (name, value)
            };
            items.push(PackedParam {
                name_start: name.0 as u16,
                name_len: (name.1 - name.0) as u16,
                value_start: value.map_or(0, |v| v.0 as u16),
                value_len: value.map_or(NO_VALUE, |v| (v.1 - v.0) as u16),
            });
            if i >= b.len() {
                return Ok(ParamList { base: s, items });
            }
            i += 1;
        }
    }

    #[inline]
    fn unpack(&self, p: &PackedParam) -> Param<'a> {
        let ns = usize::from(p.name_start);
        let name = self
            .base
            .get(ns..ns + usize::from(p.name_len))
            .unwrap_or("");
        let value = (p.value_len != NO_VALUE).then(|| {
            let vs = usize::from(p.value_start);
            self.base
                .get(vs..vs + usize::from(p.value_len))
                .unwrap_or("")
        });
        Param { name, value }
    }

    /// The first parameter called `name` (case-insensitive). `Some(None)`
    /// means present without a value (e.g. `;rport`, `;lr`).
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.items
            .iter()
            .filter(|p| usize::from(p.name_len) == name.len())
            .map(|p| self.unpack(p))
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value)
    }

    pub fn iter(&self) -> impl Iterator<Item = Param<'a>> + '_ {
        self.items.iter().map(|p| self.unpack(p))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The full check of one parameter's trimmed name and value ranges.
fn check_param(
    b: &[u8],
    name: (usize, usize),
    value: Option<(usize, usize)>,
) -> Result<(), Malformed> {
    if name.0 == name.1 || !all_token(&b[name.0..name.1]) {
        return Err(Malformed);
    }
    if let Some((vs, ve)) = value {
        let vb = &b[vs..ve];
        let ok = if vb.first() == Some(&b'"') {
            skip_quoted(vb, 0) == Ok(vb.len())
        } else {
            !vb.is_empty() && all_value(vb)
        };
        if !ok {
            return Err(Malformed);
        }
    }
    Ok(())
}

/// `[start, end)` with LWS trimmed from both ends.
#[inline]
fn trim_range(b: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && is_lws(b[start]) {
        start += 1;
    }
    while end > start && is_lws(b[end - 1]) {
        end -= 1;
    }
    (start, end)
}

/// Given `b[open] == b'"'`, returns the index just past the closing quote,
/// honouring `\`-escapes (RFC 3261 `quoted-pair`).
pub fn skip_quoted(b: &[u8], open: usize) -> Result<usize, Malformed> {
    let mut i = open + 1;
    while i < b.len() {
        match memchr::memchr2(b'"', b'\\', &b[i..]) {
            Some(j) if b[i + j] == b'"' => return Ok(i + j + 1),
            // A backslash escapes the byte after it.
            Some(j) => i += j + 2,
            None => break,
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
            // Most list headers carry one element: no comma, no scan. The
            // search usually runs to the end, where memchr's SIMD pays off.
            let found = if memchr::memchr(b',', s.as_bytes()).is_none() {
                Ok(None)
            } else {
                find_top_level(s, b',')
            };
            let (item, rest) = match found {
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

/// Iterates `;`-separated parameters lazily, without validating them; for
/// text checked elsewhere (URI parameters). Header parameters use [`ParamList`].
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

/// Validates a parameter section (see [`ParamList::parse`]).
pub fn check_params(s: &str) -> Result<(), Malformed> {
    ParamList::parse(s).map(|_| ())
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
    let Some(mut i) = find_byte(b'%', b) else {
        return true;
    };
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
        assert_eq!(CommaList::new(r#""open, x"#).next(), Some(Err(Malformed)));
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
        assert!(check_params("received=[2001:db8::1];rport=5060").is_ok());
        let p =
            ParamList::parse(r#"branch=z9hG4bK1 ; rport ;+sip.instance="<urn:uuid:1;x>";q=0.5"#)
                .unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p.get("RPORT"), Some(None));
        assert_eq!(p.get("+sip.instance"), Some(Some(r#""<urn:uuid:1;x>""#)));
    }

    #[test]
    fn word_class_is_token_plus_its_extras() {
        for c in 0..=255u8 {
            let expected = c.is_ascii_alphanumeric() || b"-.!%*_+`'~()<>:\\\"/[]?{}".contains(&c);
            assert_eq!(is_word(&[c]), expected, "{c:#x}");
        }
        assert!(!is_word(b""));
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
