//! Request methods. Methods are case-sensitive (RFC 3261 §7.1); unknown ones are extensions.

use super::scan::is_token_str;

/// A SIP request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    Invite,
    Ack,
    Options,
    Bye,
    Cancel,
    Register,
    Subscribe,
    Notify,
    Refer,
    Message,
    Info,
    Prack,
    Update,
    Publish,
    /// An extension method token, as written.
    Extension(&'a str),
}

impl<'a> Method<'a> {
    /// Parses a method token; `None` when it is not a token.
    pub fn parse(s: &'a str) -> Option<Method<'a>> {
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "OPTIONS" => Method::Options,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "PUBLISH" => Method::Publish,
            other if is_token_str(other) => Method::Extension(other),
            _ => return None,
        })
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &'a str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Options => "OPTIONS",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl std::fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_extension_and_invalid() {
        assert_eq!(Method::parse("REGISTER"), Some(Method::Register));
        assert_eq!(
            Method::parse("register"),
            Some(Method::Extension("register"))
        );
        assert_eq!(
            Method::parse("NEWMETHOD"),
            Some(Method::Extension("NEWMETHOD"))
        );
        assert_eq!(Method::parse("BAD METHOD"), None);
        assert_eq!(Method::parse(""), None);
        assert_eq!(Method::Notify.as_str(), "NOTIFY");
    }
}
