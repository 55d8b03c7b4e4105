//! Parses SIP messages from files and prints what tether makes of each:
//! `cargo run --example parse_file -- tests/fixtures/rfc4475/*.sip`
fn main() {
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).expect("readable file");
        let verdict = match tether::sip::parse(&bytes) {
            Err(e) => format!("parse error: {e:?}"),
            Ok(m) => match m.validate() {
                Ok(_) => format!(
                    "ok ({} headers, {} body bytes)",
                    m.header_count(),
                    m.body.len()
                ),
                Err(e) => format!("invalid: {e:?}"),
            },
        };
        println!("{path}: {verdict}");
    }
}
