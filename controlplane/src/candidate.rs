//! Validation of client ICE candidates (RFC 8839 §5.1 syntax).
use crate::error::{Error, Result};
use crate::types::IceCandidate;

/// Checks the syntax of a candidate; `None` is end-of-candidates.
pub(crate) fn validate(candidate: Option<&IceCandidate>) -> Result<()> {
    let Some(c) = candidate else { return Ok(()) };
    let text = c.candidate.trim();
    // An empty string is how browsers say end-of-candidates.
    if text.is_empty() {
        return Ok(());
    }
    let text = text.strip_prefix("a=").unwrap_or(text);
    let body = text
        .strip_prefix("candidate:")
        .ok_or_else(|| Error::InvalidCandidate("it does not start with 'candidate:'".into()))?;
    let fields: Vec<&str> = body.split_whitespace().collect();
    if fields.len() < 8 {
        return Err(Error::InvalidCandidate(format!(
            "expected at least 8 fields, found {}",
            fields.len()
        )));
    }
    if fields[1].parse::<u8>().is_err() {
        return Err(Error::InvalidCandidate(format!(
            "component '{}' is not a number",
            fields[1]
        )));
    }
    if !fields[2].eq_ignore_ascii_case("udp") && !fields[2].eq_ignore_ascii_case("tcp") {
        return Err(Error::InvalidCandidate(format!(
            "transport '{}' is not udp or tcp",
            fields[2]
        )));
    }
    if fields[3].parse::<u32>().is_err() {
        return Err(Error::InvalidCandidate(format!(
            "priority '{}' is not a number",
            fields[3]
        )));
    }
    if fields[5].parse::<u16>().is_err() {
        return Err(Error::InvalidCandidate(format!(
            "port '{}' is not a number",
            fields[5]
        )));
    }
    if fields[6] != "typ" {
        return Err(Error::InvalidCandidate("the 7th field is not 'typ'".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> IceCandidate {
        IceCandidate {
            candidate: s.into(),
            sdp_mid: "0".into(),
            sdp_mline_index: 0,
        }
    }

    #[test]
    fn accepts_browser_candidates_and_rejects_garbage() {
        assert!(validate(None).is_ok());
        assert!(validate(Some(&c(""))).is_ok());
        assert!(validate(Some(&c("candidate:842163049 1 udp 1677729535 192.0.2.3 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0"))).is_ok());
        assert!(validate(Some(&c(
            "candidate:1 1 udp 2130706431 abcd.local 5000 typ host"
        )))
        .is_ok());
        assert!(validate(Some(&c("hello"))).is_err());
        assert!(validate(Some(&c("candidate:1 1 udp x 1.2.3.4 5 typ host"))).is_err());
        assert!(validate(Some(&c("candidate:1 1 udp 1 1.2.3.4 99999 typ host"))).is_err());
    }
}
