//! Command line and the validated scenario it describes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The command line of `weir-loadgen`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "weir-loadgen",
    version,
    about = "Real WebRTC peers (ICE, DTLS, SRTP) against a Weir server, with measurements"
)]
pub struct Args {
    /// Base HTTP URL of the server, e.g. http://127.0.0.1:8080 (WebSocket at /ws).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// Server for publishers (defaults to --server), for relayed rooms.
    #[arg(long, value_name = "URL")]
    pub publish_server: Option<String>,
    /// Server for subscribers (defaults to --server), for relayed rooms.
    #[arg(long, value_name = "URL")]
    pub subscribe_server: Option<String>,
    /// Number of rooms.
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub rooms: usize,
    /// Publishers per room.
    #[arg(long, value_name = "P", default_value_t = 1)]
    pub publishers: usize,
    /// Subscribers per room; each subscribes to every track of the room.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub subscribers: usize,
    /// Seconds of measurement after the last peer was started.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub duration: f64,
    /// Video codec of publishers.
    #[arg(long, value_enum, default_value_t = VideoCodec::Vp8)]
    pub video: VideoCodec,
    /// Audio codec of publishers.
    #[arg(long, value_enum, default_value_t = AudioCodec::Opus)]
    pub audio: AudioCodec,
    /// Peers started per second (0: all at once).
    #[arg(long, value_name = "PEERS_PER_SEC", default_value_t = 100.0)]
    pub ramp: f64,
    /// Percentage of publisher packets dropped before sending.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    pub loss: f64,
    /// Average video bitrate of a publisher, in kbit/s.
    #[arg(long, value_name = "KBPS", default_value_t = 1000)]
    pub video_kbps: u32,
    /// Seconds between periodic VP8 keyframes (keyframe requests add more).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub keyframe_interval: f64,
    /// Seconds a peer may take from its WebSocket to media flowing.
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    pub join_timeout: f64,
    /// Write the final report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The server's process id: its CPU and RSS are read from /proc.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Simulcast publishers (not yet supported: reported and ignored).
    #[arg(long)]
    pub simulcast: bool,
    /// Preferred simulcast layer of subscribers (not yet supported).
    #[arg(long, value_name = "N")]
    pub prefer_layer: Option<u8>,
    /// Tokio worker threads of the load generator.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
    /// No progress line every second.
    #[arg(long)]
    pub quiet: bool,
}

/// Video codec of publishers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// VP8 (RFC 7741).
    Vp8,
    /// No video track.
    None,
}

/// Audio codec of publishers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioCodec {
    /// Opus (RFC 7587).
    Opus,
    /// No audio track.
    None,
}

/// A validated load scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// WebSocket URL publishers connect to.
    pub publish_ws: String,
    /// WebSocket URL subscribers connect to.
    pub subscribe_ws: String,
    /// Number of rooms.
    pub rooms: usize,
    /// Publishers per room.
    pub publishers: usize,
    /// Subscribers per room.
    pub subscribers: usize,
    /// Measurement time after the ramp.
    pub duration: Duration,
    /// Video codec.
    pub video: VideoCodec,
    /// Audio codec.
    pub audio: AudioCodec,
    /// Peers started per second; `None` starts all at once.
    pub ramp: Option<f64>,
    /// Fraction (0..=1) of publisher packets dropped before sending.
    pub loss: f64,
    /// Average video bitrate, bit/s.
    pub video_bps: u32,
    /// Time between periodic keyframes.
    pub keyframe_interval: Duration,
    /// Time a peer may take to join.
    pub join_timeout: Duration,
    /// Server process to sample.
    pub server_pid: Option<u32>,
    /// Prefix of room names; a run's rooms are `<prefix>-<n>`.
    pub room_prefix: String,
    /// Print a progress line every second (to stderr).
    pub progress: bool,
    /// Requested features that this version ignores.
    pub unsupported: Vec<String>,
}

impl Scenario {
    /// A scenario against one server with the defaults of the command line.
    pub fn new(server: &str) -> Result<Self, String> {
        let args = Args::try_parse_from(["weir-loadgen", "--server", server])
            .map_err(|e| e.to_string())?;
        args.scenario()
    }

    /// Number of peers asked for: rooms × (publishers + subscribers).
    pub fn peers(&self) -> usize {
        self.rooms * (self.publishers + self.subscribers)
    }
}

impl Args {
    /// The scenario these arguments describe, or why they are invalid.
    pub fn scenario(&self) -> Result<Scenario, String> {
        let publish_ws = ws_url(self.publish_server.as_deref().unwrap_or(&self.server))?;
        let subscribe_ws = ws_url(self.subscribe_server.as_deref().unwrap_or(&self.server))?;
        let secs = |name: &str, v: f64| -> Result<Duration, String> {
            if v.is_finite() && v > 0.0 && v < 1e7 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!("--{name} must be a positive number of seconds"))
            }
        };
        if !(0.0..=100.0).contains(&self.loss) {
            return Err("--loss must be a percentage between 0 and 100".into());
        }
        if !self.ramp.is_finite() || self.ramp < 0.0 {
            return Err("--ramp must be 0 (all at once) or a positive rate".into());
        }
        if self.rooms == 0 || self.publishers + self.subscribers == 0 {
            return Err("the scenario has no peers".into());
        }
        let mut unsupported = Vec::new();
        if self.simulcast {
            unsupported.push("--simulcast".to_owned());
        }
        if self.prefer_layer.is_some() {
            unsupported.push("--prefer-layer".to_owned());
        }
        Ok(Scenario {
            publish_ws,
            subscribe_ws,
            rooms: self.rooms,
            publishers: self.publishers,
            subscribers: self.subscribers,
            duration: secs("duration", self.duration)?,
            video: self.video,
            audio: self.audio,
            ramp: (self.ramp > 0.0).then_some(self.ramp),
            loss: self.loss / 100.0,
            video_bps: self.video_kbps.saturating_mul(1000),
            keyframe_interval: secs("keyframe-interval", self.keyframe_interval)?,
            join_timeout: secs("join-timeout", self.join_timeout)?,
            server_pid: self.server_pid,
            room_prefix: format!("loadgen-{}", std::process::id()),
            progress: !self.quiet,
            unsupported,
        })
    }
}

/// `http://host:port[/]` (or `ws://…`) to `ws://host:port/ws`.
fn ws_url(base: &str) -> Result<String, String> {
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("ws://"))
        .ok_or_else(|| {
            format!("server URL '{base}' must start with http:// (TLS is not supported)")
        })?;
    let host = rest.trim_end_matches('/');
    let host = host.strip_suffix("/ws").unwrap_or(host);
    if host.is_empty() {
        return Err(format!("server URL '{base}' has no host"));
    }
    Ok(format!("ws://{host}/ws"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(
            ws_url("http://127.0.0.1:8080/").unwrap(),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(
            ws_url("ws://127.0.0.1:8080/ws").unwrap(),
            "ws://127.0.0.1:8080/ws"
        );
        assert!(ws_url("https://x").is_err());
        assert!(ws_url("http://").is_err());
    }

    #[test]
    fn command_line() {
        let a = Args::try_parse_from([
            "weir-loadgen",
            "--server",
            "http://127.0.0.1:1",
            "--rooms",
            "2",
            "--publishers",
            "1",
            "--subscribers",
            "3",
            "--duration",
            "5",
            "--loss",
            "2.5",
            "--simulcast",
        ])
        .unwrap();
        let s = a.scenario().unwrap();
        assert_eq!(s.peers(), 8);
        assert!((s.loss - 0.025).abs() < 1e-9);
        assert_eq!(s.unsupported, vec!["--simulcast".to_owned()]);
        assert!(Scenario::new("http://127.0.0.1:1").is_ok());
    }
}
