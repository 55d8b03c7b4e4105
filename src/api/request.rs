//! `POST /v1/notify` bodies: parsed strictly (unknown fields are errors
//! naming the field) and validated before anything is resolved, because
//! every string here ends up inside a SIP message.

use serde::Deserialize;

use crate::notify::{resolve, JobSpec, Kind, ServerAddr};

/// Most explicit targets in one job (`{"all": true}` has no such limit).
pub const MAX_TARGETS: usize = 100_000;

/// A client error: the field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub field: String,
    pub error: String,
}

fn bad(field: &str, error: impl Into<String>) -> BadRequest {
    BadRequest {
        field: field.into(),
        error: error.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    targets: serde_json::Value,
    kind: String,
    request_id: serde_json::Value,
    application_server_addr: String,
    application_server_port: u32,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    time_slot: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    credentials_ref: Option<String>,
    #[serde(default)]
    callback_url: Option<String>,
    #[serde(default)]
    rate: Option<u32>,
    /// Set by a node posting another node its part of a cluster job.
    #[serde(default)]
    cluster_part: Option<PartOf>,
}

/// A job that is one node's part of a job posted to another node (fan-out
/// across the cluster): run here, on this node's own devices, never split
/// again, so a part cannot loop between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PartOf {
    /// The node the job was posted to.
    pub origin: u32,
    /// The job's id there.
    pub job: String,
}

/// Parses and checks a job request from `owner` (the API client's name).
pub fn parse(body: &[u8], owner: &str) -> Result<JobSpec, BadRequest> {
    parse_part(body, owner).map(|(spec, _)| spec)
}

/// [`parse`], and whether the job is another node's part of a cluster job.
pub fn parse_part(body: &[u8], owner: &str) -> Result<(JobSpec, Option<PartOf>), BadRequest> {
    let b: Body = serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        // serde names the field in "unknown field `x`" and "missing field `x`".
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .unwrap_or("body")
            .to_owned();
        bad(&field, msg)
    })?;
    let kind = match b.kind.as_str() {
        "contact-me" => Kind::ContactMe,
        "wake-invite" => Kind::WakeInvite,
        other => {
            return Err(bad(
                "kind",
                format!("{other:?}: use \"contact-me\" or \"wake-invite\""),
            ))
        }
    };
    let request_id = match &b.request_id {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_u64() => n.to_string(),
        _ => return Err(bad("request_id", "a string of decimal digits")),
    };
    if request_id.is_empty()
        || request_id.len() > 20
        || !request_id.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(bad(
            "request_id",
            "1 to 20 decimal digits (seed 000: RequestID = 1*DIGIT)",
        ));
    }
    let host = b.application_server_addr.trim().to_owned();
    if !is_host(&host) {
        return Err(bad(
            "application_server_addr",
            format!("{host:?} is not an IPv4 or IPv6 address or a host name"),
        ));
    }
    let port = u16::try_from(b.application_server_port)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| bad("application_server_port", "use 1..=65535"))?;
    for (field, v) in [
        ("path", &b.path),
        ("time_slot", &b.time_slot),
        ("protocol", &b.protocol),
        ("credentials_ref", &b.credentials_ref),
    ] {
        if let Some(v) = v {
            if v.is_empty() || v.len() > 256 || !v.bytes().all(|c| (0x21..0x7f).contains(&c)) {
                return Err(bad(
                    field,
                    "1 to 256 printable ASCII characters without spaces",
                ));
            }
        }
    }
    if let Some(u) = &b.callback_url {
        let ok = (u.starts_with("http://") || u.starts_with("https://"))
            && u.len() <= 2048
            && !u.bytes().any(|c| c.is_ascii_control() || c == b' ');
        if !ok {
            return Err(bad("callback_url", "an http:// or https:// URL"));
        }
    }
    if b.rate == Some(0) {
        return Err(bad("rate", "requests per second, at least 1"));
    }
    let targets = targets(&b.targets)?;
    if let Some(p) = &b.cluster_part {
        if p.origin == 0 || p.job.is_empty() || p.job.len() > 20 {
            return Err(bad(
                "cluster_part",
                "origin: a node number, job: its job id",
            ));
        }
    }
    let spec = JobSpec {
        kind,
        request_id,
        server: ServerAddr { host, port },
        path: b.path,
        time_slot: b.time_slot,
        protocol: b.protocol,
        credentials_ref: b.credentials_ref,
        callback_url: b.callback_url,
        rate: b.rate,
        targets,
        owner: owner.into(),
    };
    Ok((spec, b.cluster_part))
}

/// `"foo"`, `["foo", "bar:mobile"]`, `{"all": true}` or a mix in a list.
fn targets(v: &serde_json::Value) -> Result<Vec<String>, BadRequest> {
    use serde_json::Value;
    let one = |v: &Value| -> Result<String, BadRequest> {
        match v {
            Value::String(s) => {
                let s = s.trim();
                if s.is_empty()
                    || s.len() > 256
                    || s == resolve::ALL
                    || s.bytes().any(|c| c.is_ascii_control())
                {
                    Err(bad(
                        "targets",
                        format!("{s:?}: an AOR, device id or namespace id of 1 to 256 characters"),
                    ))
                } else {
                    Ok(s.to_owned())
                }
            }
            Value::Object(m) if m.len() == 1 && m.get("all") == Some(&Value::Bool(true)) => {
                Ok(resolve::ALL.to_owned())
            }
            _ => Err(bad("targets", "each target is a string or {\"all\": true}")),
        }
    };
    let list = match v {
        Value::Array(items) => {
            if items.len() > MAX_TARGETS {
                return Err(bad(
                    "targets",
                    format!("at most {MAX_TARGETS} targets per job; use {{\"all\": true}} or several jobs"),
                ));
            }
            items.iter().map(one).collect::<Result<Vec<_>, _>>()?
        }
        other => vec![one(other)?],
    };
    if list.is_empty() {
        return Err(bad("targets", "name at least one target"));
    }
    // Each distinct target is resolved once (a repeated broadcast would
    // walk the whole directory again).
    let mut seen = std::collections::HashSet::new();
    Ok(list
        .into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect())
}

/// An IPv4/IPv6 literal or an RFC 1123 host name.
fn is_host(h: &str) -> bool {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"targets": ["foo@example.com", {"all": true}], "kind": "contact-me",
        "request_id": 10210, "application_server_addr": "132.143.12.14", "application_server_port": 18443}"#;

    #[test]
    fn a_good_request_parses() {
        let s = parse(OK.as_bytes(), "as1").unwrap();
        assert_eq!(
            s.targets,
            vec!["foo@example.com".to_owned(), "*".to_owned()]
        );
        assert_eq!(s.request_id, "10210");
        assert_eq!(s.server.port, 18443);
        assert_eq!(s.owner, "as1");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (OK.replace("\"kind\"", "\"kinds\""), "kinds"),
            (OK.replace("10210", "\"12a\""), "request_id"),
            (
                OK.replace("132.143.12.14", "bad host!"),
                "application_server_addr",
            ),
            (OK.replace("18443", "70000"), "application_server_port"),
            (OK.replace("contact-me", "page"), "kind"),
            (OK.replace("{\"all\": true}", "{\"all\": false}"), "targets"),
            (
                OK.replace("[\"foo@example.com\", {\"all\": true}]", "[]"),
                "targets",
            ),
            (OK.replace("}", ", \"path\": \"a\\r\\nEvil: 1\"}"), "path"),
            (
                OK.replace("}", ", \"callback_url\": \"ftp://x\"}"),
                "callback_url",
            ),
            ("{".to_owned(), "body"),
        ];
        for (body, field) in cases {
            let e = parse(body.as_bytes(), "as1").unwrap_err();
            assert_eq!(e.field, field, "{body}: {e:?}");
        }
    }

    #[test]
    fn hosts() {
        for h in ["192.0.2.1", "2001:db8::1", "as.example.net", "localhost"] {
            assert!(is_host(h), "{h}");
        }
        for h in ["", "a..b", "-a.b", "a b", "a\r\n"] {
            assert!(!is_host(h), "{h}");
        }
    }
}
