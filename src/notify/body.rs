//! Request bodies in seed 000's label=value form, one `label=value` per
//! line, CRLF-terminated.

use super::{JobSpec, Labels};

fn line(body: &mut String, label: &str, value: &str) {
    body.push_str(label);
    body.push('=');
    body.push_str(value);
    body.push_str("\r\n");
}

/// The contact-me payload (seed 000): `RequestID`, then the server as
/// `application_server_ip_addr` + `application_server_ip_port` when it is an
/// IPv4 literal, or as a bare `hostport` line (the ABNF's `appsrv-hostport`)
/// for IPv6 and names; then the optional path, time slot and protocol.
pub fn contact_me_body(spec: &JobSpec, labels: &Labels) -> String {
    let mut b = String::with_capacity(128);
    line(&mut b, &labels.request_id, &spec.request_id);
    if spec.server.is_ipv4() {
        line(&mut b, &labels.address, &spec.server.host);
        line(&mut b, &labels.port, &spec.server.port.to_string());
    } else {
        b.push_str(&spec.server.hostport());
        b.push_str("\r\n");
    }
    optional_lines(&mut b, spec, labels);
    b
}

/// The wake-up INVITE's bootstrap payload (seed 001), same form: request
/// id, management server address and port (always as two lines), the
/// credentials reference, then the optional lines.
pub fn wake_body(spec: &JobSpec, labels: &Labels) -> String {
    let mut b = String::with_capacity(160);
    line(&mut b, &labels.request_id, &spec.request_id);
    line(&mut b, &labels.address, &spec.server.host);
    line(&mut b, &labels.port, &spec.server.port.to_string());
    if let Some(c) = &spec.credentials_ref {
        line(&mut b, &labels.credentials, c);
    }
    optional_lines(&mut b, spec, labels);
    b
}

fn optional_lines(b: &mut String, spec: &JobSpec, labels: &Labels) {
    for (label, v) in [
        (&labels.path, &spec.path),
        (&labels.time_slot, &spec.time_slot),
        (&labels.protocol, &spec.protocol),
    ] {
        if let Some(v) = v {
            line(b, label, v);
        }
    }
}
