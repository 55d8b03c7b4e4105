//! The crate's `ng` codec ([`crate::media::ng`]) behind the scenario's
//! [`NgCodec`]. No flags: both parties' SDP are plain RTP/AVP over IPv4
//! from 127.0.0.1, which a relay takes as they are.

use super::control::NgCodec;
use crate::media::ng;

pub struct Ng;

impl NgCodec for Ng {
    fn offer(&self, cookie: &str, call_id: &str, from_tag: &str, sdp: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + sdp.len());
        ng::encode_offer(
            cookie.as_bytes(),
            call_id.as_bytes(),
            from_tag.as_bytes(),
            sdp.as_bytes(),
            &[],
            &mut out,
        );
        out
    }

    fn answer(
        &self,
        cookie: &str,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &str,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + sdp.len());
        ng::encode_answer(
            cookie.as_bytes(),
            call_id.as_bytes(),
            from_tag.as_bytes(),
            to_tag.as_bytes(),
            sdp.as_bytes(),
            &[],
            &mut out,
        );
        out
    }

    fn delete(&self, cookie: &str, call_id: &str, from_tag: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        ng::encode_delete(
            cookie.as_bytes(),
            call_id.as_bytes(),
            from_tag.as_bytes(),
            None,
            &[],
            &mut out,
        );
        out
    }

    fn reply(&self, msg: &[u8]) -> Result<(String, Result<Option<String>, String>), String> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let r = ng::parse_reply(msg).map_err(|e| e.reason.to_owned())?;
        let outcome = if r.is_ok() {
            Ok(r.sdp.map(text))
        } else {
            Err(r
                .error_reason
                .map(text)
                .unwrap_or_else(|| format!("result {}", text(r.result))))
        };
        Ok((text(r.cookie), outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_call_and_replies_read_back() {
        let m = Ng.offer("c1", "call", "ft", "v=0\r\n");
        let text = String::from_utf8_lossy(&m);
        assert!(text.starts_with("c1 d"), "{text}");
        assert!(text.contains("7:command5:offer") && text.contains("7:call-id4:call"));
        let m = Ng.delete("c2", "call", "ft");
        assert!(String::from_utf8_lossy(&m).contains("6:delete"));
        let (cookie, out) = Ng.reply(b"c1 d6:result2:ok3:sdp5:v=0\r\ne").unwrap();
        assert_eq!((cookie.as_str(), out), ("c1", Ok(Some("v=0\r\n".into()))));
        let (_, out) = Ng
            .reply(b"c3 d6:result5:error12:error-reason7:refusede")
            .unwrap();
        assert_eq!(out, Err("refused".into()));
        assert!(Ng.reply(b"garbage").is_err());
    }
}
