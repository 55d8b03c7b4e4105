//! Parse errors: each says what is wrong, in words fit for a `400` reason phrase.

use std::fmt;

/// Why a datagram is not an acceptable SIP message.
///
/// [`ParseError::reason`] is a short phrase a server puts in `400 <reason>`;
/// `Display` adds the detail (line number, limit) for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The datagram is larger than the configured maximum.
    TooLarge { len: usize, max: usize },
    /// Nothing but CRLF (an RFC 5626 keepalive ping) or nothing at all.
    Empty,
    /// The start line is neither a request line nor a status line.
    BadStartLine,
    /// The SIP version is not `SIP/2.0`.
    BadVersion,
    /// The method is not a token.
    BadMethod,
    /// The status code is not three digits in 100..=699.
    BadStatusCode,
    /// The header section never ends with an empty line.
    Truncated,
    /// A header line has no name, a name that is not a token, or no colon.
    BadHeaderLine { line: u16 },
    /// A header line starts with whitespace but there is no header to continue.
    BadFolding { line: u16 },
    /// More header fields than the configured maximum.
    TooManyHeaders { max: usize },
    /// Bytes that are not UTF-8 where SIP requires text.
    BadUtf8,
    /// The body is shorter than Content-Length says.
    BodyTooShort { declared: usize, actual: usize },
    /// Two Content-Length values that disagree.
    ConflictingContentLength,
    /// A required header is missing.
    MissingHeader(&'static str),
    /// A header appears more than once where only one is allowed.
    DuplicateHeader(&'static str),
    /// A header's value does not follow its grammar.
    BadHeader(&'static str),
    /// The Request-URI does not follow the URI grammar.
    BadRequestUri,
    /// CSeq method differs from the request method.
    CSeqMethodMismatch,
}

impl ParseError {
    /// A short reason phrase for a `400` response (no user input echoed back).
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::TooLarge { .. } => "Message Too Large",
            ParseError::Empty => "Empty Message",
            ParseError::BadStartLine => "Bad Start Line",
            ParseError::BadVersion => "Bad SIP Version",
            ParseError::BadMethod => "Bad Method",
            ParseError::BadStatusCode => "Bad Status Code",
            ParseError::Truncated => "Truncated Header Section",
            ParseError::BadHeaderLine { .. } => "Bad Header Line",
            ParseError::BadFolding { .. } => "Bad Header Folding",
            ParseError::TooManyHeaders { .. } => "Too Many Headers",
            ParseError::BadUtf8 => "Invalid UTF-8",
            ParseError::BodyTooShort { .. } => "Content-Length Exceeds Body",
            ParseError::ConflictingContentLength => "Conflicting Content-Length",
            ParseError::MissingHeader(h) => missing_reason(h),
            ParseError::DuplicateHeader(h) => duplicate_reason(h),
            ParseError::BadHeader(h) => bad_reason(h),
            ParseError::BadRequestUri => "Bad Request-URI",
            ParseError::CSeqMethodMismatch => "CSeq Method Mismatch",
        }
    }
}

/// Maps a header name to a static phrase without allocating.
macro_rules! header_phrases {
    ($fn_name:ident, $prefix:literal, $suffix:literal) => {
        fn $fn_name(h: &str) -> &'static str {
            match h {
                "Via" => concat!($prefix, "Via", $suffix),
                "From" => concat!($prefix, "From", $suffix),
                "To" => concat!($prefix, "To", $suffix),
                "Call-ID" => concat!($prefix, "Call-ID", $suffix),
                "CSeq" => concat!($prefix, "CSeq", $suffix),
                "Max-Forwards" => concat!($prefix, "Max-Forwards", $suffix),
                "Contact" => concat!($prefix, "Contact", $suffix),
                "Expires" => concat!($prefix, "Expires", $suffix),
                "Content-Length" => concat!($prefix, "Content-Length", $suffix),
                "Content-Type" => concat!($prefix, "Content-Type", $suffix),
                "Route" => concat!($prefix, "Route", $suffix),
                "Record-Route" => concat!($prefix, "Record-Route", $suffix),
                "Path" => concat!($prefix, "Path", $suffix),
                "Event" => concat!($prefix, "Event", $suffix),
                "Date" => concat!($prefix, "Date", $suffix),
                "Authorization" => concat!($prefix, "Authorization", $suffix),
                "Proxy-Authorization" => concat!($prefix, "Proxy-Authorization", $suffix),
                "WWW-Authenticate" => concat!($prefix, "WWW-Authenticate", $suffix),
                "Proxy-Authenticate" => concat!($prefix, "Proxy-Authenticate", $suffix),
                _ => concat!($prefix, "Header", $suffix),
            }
        }
    };
}
header_phrases!(missing_reason, "Missing ", " Header");
header_phrases!(duplicate_reason, "Duplicate ", " Header");
header_phrases!(bad_reason, "Bad ", " Header");

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooLarge { len, max } => {
                write!(f, "datagram of {len} bytes exceeds the {max}-byte limit")
            }
            ParseError::BadHeaderLine { line } => write!(f, "malformed header on line {line}"),
            ParseError::BadFolding { line } => {
                write!(f, "continuation line {line} has no header to continue")
            }
            ParseError::TooManyHeaders { max } => write!(f, "more than {max} header fields"),
            ParseError::BodyTooShort { declared, actual } => write!(
                f,
                "Content-Length is {declared} but only {actual} body bytes arrived"
            ),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for ParseError {}
