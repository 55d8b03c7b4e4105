//! The datagram parser: one pass over the lines splits the start line and
//! header fields; each field is stored as 8 bytes of offsets into the
//! receive buffer. Typed header values are parsed on demand by the accessors
//! in [`super::typed`]; nothing here allocates unless a message has more
//! header fields than fit inline.
//!
//! Over 800 lines on purpose: the one-pass line splitter, the header index
//! and the accessors share private layout (offsets, the kind bitmask) that
//! splitting would have to make crate-visible.

use memchr::memchr;
use smallvec::SmallVec;

use super::error::ParseError;
use super::header::HeaderName;
use super::method::Method;
use super::scan::is_token;

/// Limits applied while parsing; both come from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest datagram accepted, in bytes (at most 65535).
    pub max_datagram: usize,
    /// Most header fields accepted in one message.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_datagram: 8192,
            max_headers: 64,
        }
    }
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: Method<'a>, uri: &'a str },
    Response { code: u16, reason: &'a str },
}

/// One header field line (after unfolding, a continuation belongs to the line above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: HeaderName,
    /// The name as written (compact or long, any case).
    pub raw_name: &'a str,
    /// The value with surrounding LWS removed; a folded value keeps its inner CRLFs.
    pub value: &'a str,
}

/// A header field as offsets into the message's header text: 8 bytes, so
/// that 32 of them fit inline in one cache-friendly array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawHeader {
    kind: HeaderName,
    name_len: u8,
    name_start: u16,
    value_start: u16,
    value_len: u16,
}

type RawHeaders = SmallVec<[RawHeader; 32]>;

/// Which header kinds a message has, one bit per [`HeaderName`]: lookups of
/// an absent header (most of the ones `validate` asks about) and the
/// duplicate check of a singleton cost no scan of the header array; and
/// where each kind's first line is, so that a present one costs none either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kinds {
    present: u64,
    /// Kinds seen on more than one line.
    repeated: u64,
    /// Index in the header array of each present kind's first line.
    first: [u16; KIND_COUNT],
}

const KIND_COUNT: usize = HeaderName::Other as usize + 1;

impl Default for Kinds {
    fn default() -> Self {
        Kinds {
            present: 0,
            repeated: 0,
            first: [0; KIND_COUNT],
        }
    }
}

// One bit per variant must fit.
const _: () = assert!((HeaderName::Other as u32) < 64);

impl Kinds {
    #[inline]
    fn bit(name: HeaderName) -> u64 {
        1 << (name as u32)
    }

    /// Records a line of kind `name` at index `at` of the header array.
    #[inline]
    fn add(&mut self, name: HeaderName, at: u16) {
        if !self.has(name) {
            self.first[name as usize] = at;
        }
        self.repeated |= self.present & Kinds::bit(name);
        self.present |= Kinds::bit(name);
    }

    /// Index of the first line of a present kind (0 for an absent one).
    #[inline]
    fn first(&self, name: HeaderName) -> usize {
        usize::from(self.first[name as usize])
    }

    #[inline]
    fn has(self, name: HeaderName) -> bool {
        self.present & Kinds::bit(name) != 0
    }

    #[inline]
    fn repeats(self, name: HeaderName) -> bool {
        self.repeated & Kinds::bit(name) != 0
    }
}

/// A SIP message borrowed from its datagram.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub start: StartLine<'a>,
    /// The start line and header fields, UTF-8 checked.
    text: &'a str,
    raw: RawHeaders,
    kinds: Kinds,
    /// The body: exactly Content-Length bytes, or the rest of the datagram without one.
    pub body: &'a [u8],
    /// Bytes after the body that Content-Length excluded (RFC 3261 §18.3: discarded).
    pub trailing: usize,
}

/// Parses a datagram with the default [`Limits`].
pub fn parse(buf: &[u8]) -> Result<Message<'_>, ParseError> {
    parse_with(buf, &Limits::default())
}

/// Parses a datagram. Never panics; every rejection says why.
pub fn parse_with<'a>(buf: &'a [u8], limits: &Limits) -> Result<Message<'a>, ParseError> {
    let max = limits.max_datagram.min(usize::from(u16::MAX));
    if buf.len() > max {
        return Err(ParseError::TooLarge {
            len: buf.len(),
            max,
        });
    }
    // RFC 3261 §7.5: ignore CRLFs before the start line (they are also RFC 5626 pings).
    let start = buf
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .ok_or(ParseError::Empty)?;
    let region = &buf[start..];
    let mut raw = RawHeaders::new();
    let mut kinds = Kinds::default();
    let split = split_lines(region, limits, &mut raw, &mut kinds)?;
    let head = &region[..split.head_end];
    let ascii = check_controls(head, split.crlf_lines)?;
    let text = if ascii {
        // SAFETY: every byte of `head` is below 0x80 (the control scan's
        // high-bit OR), and ASCII is valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(head) }
    } else {
        std::str::from_utf8(head).map_err(|_| ParseError::BadUtf8)?
    };
    let start_line = parse_start_line(&text[..split.first_line_end])?;

    let body_start = start + split.body_start;
    let avail = buf.len() - body_start;
    let content_length = if kinds.has(HeaderName::ContentLength) {
        content_length(
            text,
            raw.get(kinds.first(HeaderName::ContentLength)..)
                .unwrap_or(&[]),
        )?
    } else {
        None
    };
    let (body_len, trailing) = match content_length {
        Some(cl) if cl > avail => {
            return Err(ParseError::BodyTooShort {
                declared: cl,
                actual: avail,
            })
        }
        Some(cl) => (cl, avail - cl),
        None => (avail, 0),
    };
    Ok(Message {
        start: start_line,
        text,
        raw,
        kinds,
        body: &buf[body_start..body_start + body_len],
        trailing,
    })
}

/// Where the pieces of the header section are, relative to its start.
struct Split {
    first_line_end: usize,
    /// Lines inside the header section that ended in CRLF (not bare LF).
    crlf_lines: usize,
    head_end: usize,
    body_start: usize,
}

/// One pass over the line ends: finds the start line, every header field
/// (unfolding continuation lines) and the empty line that ends the section.
/// Works on bytes; the caller checks UTF-8 once for the whole section.
fn split_lines(
    region: &[u8],
    limits: &Limits,
    out: &mut RawHeaders,
    kinds: &mut Kinds,
) -> Result<Split, ParseError> {
    let mut lines = Newlines::new(region);
    let first_nl = lines.next().ok_or(ParseError::Truncated)?;
    let first_line_end = strip_cr_end(region, 0, first_nl);
    let mut crlf_lines = usize::from(first_line_end != first_nl);
    let mut line_start = first_nl + 1;
    let mut line_no: u16 = 1;
    // The field being built: (kind, name start, name len, value start); its value ends at `value_end`.
    let mut current: Option<(HeaderName, usize, usize, usize)> = None;
    let mut value_end = 0;
    for nl in lines {
        line_no = line_no.saturating_add(1);
        let content_end = strip_cr_end(region, line_start, nl);
        if content_end == line_start {
            if let Some(c) = current {
                push_header(out, kinds, limits, region, c, value_end)?;
            }
            return Ok(Split {
                first_line_end,
                crlf_lines,
                head_end: line_start,
                body_start: nl + 1,
            });
        }
        crlf_lines += usize::from(content_end != nl);
        let first = region[line_start];
        if first == b' ' || first == b'\t' {
            // A continuation line extends the value above it.
            if current.is_none() {
                return Err(ParseError::BadFolding { line: line_no });
            }
            value_end = content_end;
        } else {
            if let Some(c) = current.take() {
                push_header(out, kinds, limits, region, c, value_end)?;
            }
            // field-name HCOLON: a token, optional SP/HT, a colon.
            let line = &region[line_start..content_end];
            let name_len = line
                .iter()
                .position(|&c| !is_token(c))
                .unwrap_or(line.len());
            let mut i = name_len;
            while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
                i += 1;
            }
            if name_len == 0 || name_len > 255 || line.get(i) != Some(&b':') {
                return Err(ParseError::BadHeaderLine { line: line_no });
            }
            let kind = HeaderName::from_token(&line[..name_len]);
            current = Some((kind, line_start, name_len, line_start + i + 1));
            value_end = content_end;
        }
        line_start = nl + 1;
    }
    Err(ParseError::Truncated)
}

/// Positions of `\n` in a buffer, eight bytes at a time (SWAR). Header
/// lines are short, where a SIMD memchr call costs more in setup than it saves.
struct Newlines<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Newlines<'a> {
    fn new(b: &'a [u8]) -> Self {
        Newlines { b, pos: 0 }
    }
}

impl Iterator for Newlines<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        const LF: u64 = 0x0a0a_0a0a_0a0a_0a0a;
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        while self.pos + 8 <= self.b.len() {
            let chunk: [u8; 8] = self.b[self.pos..self.pos + 8].try_into().ok()?;
            let x = u64::from_le_bytes(chunk) ^ LF;
            // Classic has-zero-byte test; the lowest set flag is the first '\n'.
            let found = x.wrapping_sub(LO) & !x & HI;
            if found != 0 {
                let at = self.pos + (found.trailing_zeros() / 8) as usize;
                self.pos = at + 1;
                return Some(at);
            }
            self.pos += 8;
        }
        while self.pos < self.b.len() {
            let at = self.pos;
            self.pos += 1;
            if self.b[at] == b'\n' {
                return Some(at);
            }
        }
        None
    }
}

#[inline]
fn strip_cr_end(b: &[u8], line_start: usize, nl: usize) -> usize {
    if nl > line_start && b[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    }
}

// Once per header line from the splitter's loop: inlined, the field being
// built stays in registers instead of going through a call.
#[inline(always)]
fn push_header(
    out: &mut RawHeaders,
    kinds: &mut Kinds,
    limits: &Limits,
    region: &[u8],
    (kind, name_start, name_len, mut vs): (HeaderName, usize, usize, usize),
    mut ve: usize,
) -> Result<(), ParseError> {
    if out.len() >= limits.max_headers {
        return Err(ParseError::TooManyHeaders {
            max: limits.max_headers,
        });
    }
    while vs < ve && super::scan::is_lws(region[vs]) {
        vs += 1;
    }
    while ve > vs && super::scan::is_lws(region[ve - 1]) {
        ve -= 1;
    }
    // At most 65535 bytes hold fewer than 2^16 lines.
    kinds.add(kind, out.len() as u16);
    // Offsets fit in u16: the datagram limit is at most 65535 bytes.
    out.push(RawHeader {
        kind,
        name_len: name_len as u8,
        name_start: name_start as u16,
        value_start: vs as u16,
        value_len: (ve - vs) as u16,
    });
    Ok(())
}

/// Rejects control characters in the header section and a CR that does not
/// start a line end. HT is whitespace; other controls may only appear
/// escaped as a `quoted-pair` (RFC 3261 §25.1), which the slow path checks.
/// `crlf_lines` is how many lines the splitter saw end in CRLF: any other CR
/// is a stray one. Returns whether the section is all ASCII (then it
/// needs no UTF-8 check: the same pass saw every byte's high bit).
fn check_controls(head: &[u8], crlf_lines: usize) -> Result<bool, ParseError> {
    // Branch-free so that it vectorises; the rare hit is examined byte by byte.
    let (suspicious, crs, ascii) = scan_controls(head);
    if suspicious {
        for (i, &c) in head.iter().enumerate() {
            let control = (c < 0x20 && !matches!(c, b'\t' | b'\r' | b'\n')) || c == 0x7f;
            if control && (i == 0 || head[i - 1] != b'\\') {
                return Err(ParseError::BadHeaderLine {
                    line: line_of(head, i),
                });
            }
        }
    }
    if crs != crlf_lines {
        let mut from = 0;
        while let Some(i) = memchr(b'\r', &head[from..]) {
            let at = from + i;
            if head.get(at + 1) != Some(&b'\n') {
                return Err(ParseError::BadHeaderLine {
                    line: line_of(head, at),
                });
            }
            from = at + 1;
        }
    }
    Ok(ascii)
}

/// Whether any byte is a control other than HT/CR/LF (or DEL), how many
/// CRs there are, and whether every byte is ASCII. Per-lane accumulators
/// over fixed-size chunks, so that it vectorises and reduces across lanes
/// once per 255 chunks (a lane's CR count fits a byte) instead of per chunk.
fn scan_controls(head: &[u8]) -> (bool, usize, bool) {
    let mut bad = [0u8; 32];
    let mut high = [0u8; 32];
    let mut crs = 0usize;
    let (chunks, rest) = head.as_chunks::<32>();
    // The tail, padded with spaces (neither control nor CR nor high), takes
    // the same vector path instead of a byte loop.
    let mut last = [b' '; 32];
    last[..rest.len()].copy_from_slice(rest);
    for block in chunks.chunks(254) {
        let mut cr = [0u8; 32];
        for chunk in block {
            scan_chunk(chunk, &mut bad, &mut cr, &mut high);
        }
        crs += cr.iter().map(|&c| usize::from(c)).sum::<usize>();
    }
    let mut cr = [0u8; 32];
    scan_chunk(&last, &mut bad, &mut cr, &mut high);
    crs += cr.iter().map(|&c| usize::from(c)).sum::<usize>();
    let bad = bad.iter().fold(0, |a, &b| a | b);
    let high = high.iter().fold(0, |a, &h| a | h);
    (bad != 0, crs, high < 0x80)
}

/// [`scan_controls`] of one 32-byte chunk into the per-lane accumulators.
#[inline(always)]
fn scan_chunk(chunk: &[u8; 32], bad: &mut [u8; 32], cr: &mut [u8; 32], high: &mut [u8; 32]) {
    for i in 0..32 {
        let x = chunk[i];
        bad[i] |=
            u8::from(x < 0x20) & u8::from(x != b'\t') & u8::from(x != b'\r') & u8::from(x != b'\n')
                | u8::from(x == 0x7f);
        cr[i] += u8::from(x == b'\r');
        high[i] |= x;
    }
}

fn line_of(head: &[u8], at: usize) -> u16 {
    let n = head[..at.min(head.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1;
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, ParseError> {
    if line.len() >= 4 && line.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (version, rest) = line.split_once(' ').ok_or(ParseError::BadStartLine)?;
        check_version(version)?;
        let (code_s, reason) = match rest.split_once(' ') {
            Some((c, r)) => (c, r),
            None => (rest, ""),
        };
        let cb = code_s.as_bytes();
        if cb.len() != 3 || !cb.iter().all(u8::is_ascii_digit) || !(b'1'..=b'6').contains(&cb[0]) {
            return Err(ParseError::BadStatusCode);
        }
        let code =
            u16::from(cb[0] - b'0') * 100 + u16::from(cb[1] - b'0') * 10 + u16::from(cb[2] - b'0');
        return Ok(StartLine::Response { code, reason });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, single spaces only.
    let (method_s, rest) = line.split_once(' ').ok_or(ParseError::BadStartLine)?;
    let (uri, version) = rest.rsplit_once(' ').ok_or(ParseError::BadStartLine)?;
    let method = Method::parse(method_s).ok_or(ParseError::BadMethod)?;
    if uri.is_empty() || version.is_empty() || uri.starts_with(' ') || uri.ends_with(' ') {
        return Err(ParseError::BadStartLine);
    }
    if uri.bytes().any(|c| c == b' ' || c == b'\t') {
        return Err(ParseError::BadRequestUri);
    }
    check_version(version)?;
    Ok(StartLine::Request { method, uri })
}

fn check_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        Ok(())
    } else if v.len() > 4 && v.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
        Err(ParseError::BadVersion)
    } else {
        Err(ParseError::BadStartLine)
    }
}

/// The Content-Length, if any; repeated values must agree.
fn content_length(text: &str, headers: &[RawHeader]) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    for h in headers
        .iter()
        .filter(|h| h.kind == HeaderName::ContentLength)
    {
        let v = super::scan::parse_u64(value_of(text, h))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or(ParseError::BadHeader("Content-Length"))?;
        match found {
            Some(prev) if prev != v => return Err(ParseError::ConflictingContentLength),
            _ => found = Some(v),
        }
    }
    Ok(found)
}

#[inline]
fn value_of<'a>(text: &'a str, h: &RawHeader) -> &'a str {
    let s = usize::from(h.value_start);
    text.get(s..s + usize::from(h.value_len)).unwrap_or("")
}

#[inline]
fn name_of<'a>(text: &'a str, h: &RawHeader) -> &'a str {
    let s = usize::from(h.name_start);
    text.get(s..s + usize::from(h.name_len)).unwrap_or("")
}

impl<'a> Message<'a> {
    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, or `None` for a response.
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, or `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI as written, or `None` for a response.
    pub fn request_uri_raw(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// All header fields in wire order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = Header<'a>> + '_ {
        let text = self.text;
        self.raw.iter().map(move |h| Header {
            name: h.kind,
            raw_name: name_of(text, h),
            value: value_of(text, h),
        })
    }

    /// Number of header fields.
    pub fn header_count(&self) -> usize {
        self.raw.len()
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: HeaderName) -> Option<&'a str> {
        if !self.kinds.has(name) {
            return None;
        }
        self.raw
            .get(self.kinds.first(name))
            .map(|h| value_of(self.text, h))
    }

    /// The value of the first header with this exact name (case-insensitive),
    /// for headers tether has no variant for.
    pub fn header_by_name(&self, name: &str) -> Option<&'a str> {
        let kind = HeaderName::from_wire(name);
        self.raw
            .iter()
            .find(|h| {
                h.kind == kind
                    && (kind != HeaderName::Other
                        || name_of(self.text, h).eq_ignore_ascii_case(name))
            })
            .map(|h| value_of(self.text, h))
    }

    /// The values of every header line called `name`, in order.
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &'a str> + '_ {
        let text = self.text;
        self.lines_of(name)
            .iter()
            .filter(move |h| h.kind == name)
            .map(move |h| value_of(text, h))
    }

    /// The single value of a header that may appear at most once.
    pub(crate) fn singleton(&self, name: HeaderName) -> Result<Option<&'a str>, ParseError> {
        if self.kinds.repeats(name) {
            return Err(ParseError::DuplicateHeader(name.as_str()));
        }
        Ok(self.header(name))
    }

    /// The header array to search for `name`, from its first line on:
    /// empty when it is absent.
    #[inline]
    fn lines_of(&self, name: HeaderName) -> &[RawHeader] {
        if self.kinds.has(name) {
            self.raw.get(self.kinds.first(name)..).unwrap_or(&[])
        } else {
            &[]
        }
    }

    /// Every element of a list-valued header, across repeated lines and commas.
    pub fn list(&self, name: HeaderName) -> ListValues<'a, '_> {
        ListValues {
            text: self.text,
            headers: self.lines_of(name).iter(),
            name,
            one_line: !self.kinds.repeats(name),
            inner: None,
        }
    }
}

/// Iterator over the comma-separated elements of every line of one header.
pub struct ListValues<'a, 'm> {
    text: &'a str,
    headers: std::slice::Iter<'m, RawHeader>,
    name: HeaderName,
    /// At most one line has this name: once it is found, stop looking.
    one_line: bool,
    inner: Option<super::scan::CommaList<'a>>,
}

impl<'a> Iterator for ListValues<'a, '_> {
    /// `Err` for an element with an unterminated quoted string.
    type Item = Result<&'a str, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(inner) = &mut self.inner {
                if let Some(item) = inner.next() {
                    return Some(item.map_err(|_| ParseError::BadHeader(self.name.as_str())));
                }
            }
            let name = self.name;
            let h = self.headers.find(|h| h.kind == name)?;
            if self.one_line {
                self.headers = [].iter();
            }
            self.inner = Some(super::scan::CommaList::new(value_of(self.text, h)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776\r\n\
v: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.1\r\n\
From: <sip:alice@example.com>;tag=456\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: abc@192.0.2.1\r\n\
CSeq: 1 REGISTER\r\n\
Subject: folded\r\n line\r\n\
X-Unknown :  kept  verbatim \r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn splits_start_line_headers_and_body() {
        let m = parse(REGISTER).unwrap();
        assert_eq!(m.method(), Some(Method::Register));
        assert_eq!(m.request_uri_raw(), Some("sip:example.com"));
        assert_eq!(m.header_count(), 9);
        assert_eq!(m.headers().nth(8).unwrap().raw_name, "Content-Length");
        assert_eq!(m.header(HeaderName::CallId), Some("abc@192.0.2.1"));
        assert_eq!(m.header(HeaderName::Subject), Some("folded\r\n line"));
        assert_eq!(m.header_by_name("x-unknown"), Some("kept  verbatim"));
        assert_eq!(m.list(HeaderName::Via).count(), 3);
        // Lookups start at each kind's first line.
        assert_eq!(
            m.header(HeaderName::Via),
            Some("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776")
        );
        assert_eq!(m.header_values(HeaderName::Via).count(), 2);
        assert_eq!(m.content_length(), Some(0));
        assert!(m.body.is_empty());
    }

    #[test]
    fn status_line_with_and_without_reason() {
        let m = parse(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n").unwrap();
        assert_eq!(m.status(), Some(200));
        let m = parse(b"SIP/2.0 100\r\nCall-ID: x\r\n\r\n").unwrap();
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 100,
                reason: ""
            }
        );
        assert_eq!(
            parse(b"SIP/2.0 99 x\r\n\r\n").unwrap_err(),
            ParseError::BadStatusCode
        );
        assert_eq!(
            parse(b"SIP/2.0 700 x\r\n\r\n").unwrap_err(),
            ParseError::BadStatusCode
        );
    }

    #[test]
    fn content_length_bounds_the_body() {
        let m = parse(b"MESSAGE sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabcdef").unwrap();
        assert_eq!(m.body, b"abc");
        assert_eq!(m.trailing, 3);
        assert_eq!(
            parse(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 9\r\n\r\nabc").unwrap_err(),
            ParseError::BodyTooShort {
                declared: 9,
                actual: 3
            }
        );
        assert_eq!(
            parse(b"MESSAGE sip:a@b SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nabc").unwrap_err(),
            ParseError::ConflictingContentLength
        );
        assert_eq!(
            parse(b"MESSAGE sip:a@b SIP/2.0\r\nl: -1\r\n\r\n").unwrap_err(),
            ParseError::BadHeader("Content-Length")
        );
    }

    #[test]
    fn limits_and_garbage() {
        let limits = Limits {
            max_datagram: 10,
            max_headers: 1,
        };
        assert_eq!(
            parse_with(REGISTER, &limits).unwrap_err(),
            ParseError::TooLarge {
                len: REGISTER.len(),
                max: 10
            }
        );
        let limits = Limits {
            max_datagram: 9000,
            max_headers: 2,
        };
        assert_eq!(
            parse_with(REGISTER, &limits).unwrap_err(),
            ParseError::TooManyHeaders { max: 2 }
        );
        assert_eq!(parse(b"\r\n\r\n").unwrap_err(), ParseError::Empty);
        assert_eq!(parse(b"").unwrap_err(), ParseError::Empty);
        assert_eq!(
            parse(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n").unwrap_err(),
            ParseError::Truncated
        );
        assert_eq!(
            parse(b"OPTIONS sip:a SIP/3.0\r\n\r\n").unwrap_err(),
            ParseError::BadVersion
        );
        assert_eq!(
            parse(b"OPTIONS  sip:a SIP/2.0\r\n\r\n").unwrap_err(),
            ParseError::BadStartLine
        );
        assert_eq!(
            parse(b"OPTIONS sip:a SIP/2.0 \r\n\r\n").unwrap_err(),
            ParseError::BadStartLine
        );
        assert_eq!(
            parse(b"OPTIONS sip:a b SIP/2.0\r\n\r\n").unwrap_err(),
            ParseError::BadRequestUri
        );
        assert_eq!(
            parse(b"OPT(ONS sip:a SIP/2.0\r\n\r\n").unwrap_err(),
            ParseError::BadMethod
        );
        assert_eq!(
            parse(b"OPTIONS sip:a b SIP/2.0\r\n\r\n").unwrap_err(),
            ParseError::BadRequestUri
        );
        assert_eq!(
            parse(b"OPTIONS sip:a SIP/2.0\r\n folded\r\n\r\n").unwrap_err(),
            ParseError::BadFolding { line: 2 }
        );
        assert_eq!(
            parse(b"OPTIONS sip:a SIP/2.0\r\nNoColon\r\n\r\n").unwrap_err(),
            ParseError::BadHeaderLine { line: 2 }
        );
        assert_eq!(
            parse(b"OPTIONS sip:a SIP/2.0\r\nA: \x01\r\n\r\n").unwrap_err(),
            ParseError::BadHeaderLine { line: 2 }
        );
        assert_eq!(
            parse(b"OPTIONS sip:a SIP/2.0\r\nA: b\rc\r\n\r\n").unwrap_err(),
            ParseError::BadHeaderLine { line: 2 }
        );
        assert_eq!(
            parse(b"OPTIONS sip:a SIP/2.0\r\nA: \xff\r\n\r\n").unwrap_err(),
            ParseError::BadUtf8
        );
    }

    #[test]
    fn bare_lf_and_leading_crlf_are_tolerated() {
        let m = parse(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\nCall-ID: 1\n\nbody").unwrap();
        assert_eq!(m.header(HeaderName::CallId), Some("1"));
        assert_eq!(m.body, b"body");
    }

    #[test]
    fn binary_body_is_not_utf8_checked() {
        let m = parse(b"MESSAGE sip:a@b SIP/2.0\r\nl: 2\r\n\r\n\xff\x00").unwrap();
        assert_eq!(m.body, b"\xff\x00");
    }
}
