//! Minimal SDP reading: what the tests need to know of Weir's offers.

/// One m-section, as lines.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub media: String,
    pub mid: Option<String>,
    pub lines: Vec<String>,
}

pub fn sections(sdp: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("m=") {
            out.push(Section {
                media: rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                ..Default::default()
            });
        } else if let Some(sec) = out.last_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                sec.mid = Some(mid.to_owned());
            }
            sec.lines.push(line.to_owned());
        }
    }
    out
}

/// The media SSRC announced for `mid`: the first SSRC of an `a=ssrc-group:FID`
/// if there is one, else the first `a=ssrc:` line.
pub fn media_ssrc(sdp: &str, mid: &str) -> Option<u32> {
    let sec = sections(sdp)
        .into_iter()
        .find(|s| s.mid.as_deref() == Some(mid))?;
    for l in &sec.lines {
        if let Some(rest) = l.strip_prefix("a=ssrc-group:FID ") {
            if let Some(first) = rest.split_whitespace().next() {
                return first.parse().ok();
            }
        }
    }
    sec.lines.iter().find_map(|l| {
        l.strip_prefix("a=ssrc:")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|s| s.parse().ok())
    })
}

/// The direction attribute of the section with `mid`.
pub fn direction(sdp: &str, mid: &str) -> Option<String> {
    let sec = sections(sdp)
        .into_iter()
        .find(|s| s.mid.as_deref() == Some(mid))?;
    sec.lines
        .iter()
        .find(|l| {
            matches!(
                l.as_str(),
                "a=sendonly" | "a=recvonly" | "a=sendrecv" | "a=inactive"
            )
        })
        .map(|l| l[2..].to_owned())
}

/// The value of the first `a=<name>:` line anywhere in the SDP.
pub fn attribute(sdp: &str, name: &str) -> Option<String> {
    let prefix = format!("a={name}:");
    sdp.lines()
        .map(str::trim_end)
        .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
}

/// `sdp` without the lines for which `drop` is true (CRLF line ends).
pub fn without_lines(sdp: &str, drop: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(sdp.len());
    for l in sdp.lines().map(str::trim_end).filter(|l| !drop(l)) {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out
}
