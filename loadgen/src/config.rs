//! Command line, scenario files, and the validated scenario they describe.
//!
//! A scenario file (`--scenario FILE`) is TOML whose keys are the long
//! flags (`rooms = 10`, `prefer-layer = 0` or `prefer_layer = 0`,
//! `simulcast = true`). Its settings are placed before the command line's,
//! so a flag given on the command line wins.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, CommandFactory, Parser, ValueEnum};

/// The command line of `weir-loadgen`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "weir-loadgen",
    version,
    about = "Real WebRTC peers (ICE, DTLS, SRTP) against a Weir server, with measurements",
    // A scenario file's settings come first; the command line overrides them.
    args_override_self = true
)]
pub struct Args {
    /// TOML scenario file whose keys are these long flags; flags given on
    /// the command line override it. Read by [`expand_scenario_file`].
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
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
    /// VP8 frames: synthetic (sized by --video-kbps, a trailer in every
    /// packet) or captured (real Chromium frames replayed, which decoders
    /// accept; the trailer only in a frame's last packet).
    #[arg(long, value_enum, default_value_t = Vp8Frames::Synthetic)]
    pub vp8_frames: Vp8Frames,
    /// Rooms are named `<PREFIX>-<n>` (default: loadgen-<pid>).
    #[arg(long, value_name = "PREFIX")]
    pub room_prefix: Option<String>,
    /// Peers started per second (0: all at once).
    #[arg(long, value_name = "PEERS_PER_SEC", default_value_t = 100.0)]
    pub ramp: f64,
    /// Percentage of publisher packets dropped before sending.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    pub loss: f64,
    /// Percentage of media packets each subscriber drops on arrival, before
    /// decrypting (downlink loss its own NACKs then repair).
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    pub rx_loss: f64,
    /// Subscribers send no NACKs (loss is then before retransmission).
    #[arg(long)]
    pub no_nack: bool,
    /// Subscribers negotiate transport-cc and send its feedback every
    /// 50 ms, as browsers do, so the server runs its send-side bandwidth
    /// estimate (probes, pausing and layer choice) for each of them. Off by
    /// default, so runs measure forwarding alone and stay comparable with
    /// earlier ones (see the README).
    #[arg(long)]
    pub twcc: bool,
    /// Subscribers join as visible members (announced to everyone, n²
    /// membership messages per room) instead of `hidden` viewers.
    #[arg(long)]
    pub visible_subscribers: bool,
    /// Average video bitrate of a publisher, in kbit/s.
    #[arg(long, value_name = "KBPS", default_value_t = 1000)]
    pub video_kbps: u32,
    /// Publishers pace video at this multiple of --video-kbps, in 5 ms
    /// slices, as libwebrtc does (its default factor is 2.5); 0 sends each
    /// frame as one burst.
    #[arg(long, value_name = "F", default_value_t = 2.5)]
    pub pacing_factor: f64,
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
    /// Publishers send video as three simulcast encodings (rids q, h, f:
    /// 320×180, 640×360, 1280×720; 10, 25 and 65 % of --video-kbps).
    #[arg(long)]
    pub simulcast: bool,
    /// Subscribers ask for this spatial layer (0 = lowest) of every video
    /// track with `setPreferredLayers`.
    #[arg(long, value_name = "N")]
    pub prefer_layer: Option<u8>,
    /// Peer threads, one single-threaded runtime each (thread per core);
    /// 0: one per available core.
    #[arg(long, value_name = "N", default_value_t = 0)]
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

/// Where publishers' VP8 frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vp8Frames {
    /// Random bytes behind valid frame headers, sized to `--video-kbps`;
    /// parsers accept them, decoders do not.
    Synthetic,
    /// Real frames from Chromium captures, looped from a keyframe; decoders
    /// accept them; the bitrate is the capture's.
    Captured,
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
    /// Where VP8 frames come from.
    pub vp8_frames: Vp8Frames,
    /// Peers started per second; `None` starts all at once.
    pub ramp: Option<f64>,
    /// Fraction (0..=1) of publisher packets dropped before sending.
    pub loss: f64,
    /// Fraction (0..=1) of media packets subscribers drop on arrival.
    pub rx_loss: f64,
    /// Whether subscribers NACK missing packets.
    pub nack: bool,
    /// Whether subscribers negotiate transport-cc and send its feedback.
    pub twcc: bool,
    /// Whether subscribers join `hidden` (not announced to the room).
    pub hidden_subscribers: bool,
    /// Average video bitrate, bit/s.
    pub video_bps: u32,
    /// Video leaves at this multiple of `video_bps`; 0: a burst per frame.
    pub pacing_factor: f64,
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
    /// Publishers send three simulcast encodings.
    pub simulcast: bool,
    /// Spatial layer subscribers prefer (0..=3), if any.
    pub prefer_layer: Option<u8>,
    /// Peer threads (each a single-threaded runtime); peers are spread
    /// over them round-robin.
    pub threads: usize,
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
        if !(0.0..=100.0).contains(&self.rx_loss) {
            return Err("--rx-loss must be a percentage between 0 and 100".into());
        }
        if !self.pacing_factor.is_finite() || self.pacing_factor < 0.0 {
            return Err("--pacing-factor must be 0 (no pacing) or a positive multiple".into());
        }
        if !self.ramp.is_finite() || self.ramp < 0.0 {
            return Err("--ramp must be 0 (all at once) or a positive rate".into());
        }
        if self.rooms == 0 || self.publishers + self.subscribers == 0 {
            return Err("the scenario has no peers".into());
        }
        if self.prefer_layer.is_some_and(|l| l > 3) {
            return Err("--prefer-layer must be a layer from 0 to 3".into());
        }
        let unsupported = Vec::new();
        Ok(Scenario {
            publish_ws,
            subscribe_ws,
            rooms: self.rooms,
            publishers: self.publishers,
            subscribers: self.subscribers,
            duration: secs("duration", self.duration)?,
            video: self.video,
            audio: self.audio,
            vp8_frames: self.vp8_frames,
            ramp: (self.ramp > 0.0).then_some(self.ramp),
            loss: self.loss / 100.0,
            rx_loss: self.rx_loss / 100.0,
            nack: !self.no_nack,
            twcc: self.twcc,
            hidden_subscribers: !self.visible_subscribers,
            video_bps: self.video_kbps.saturating_mul(1000),
            pacing_factor: self.pacing_factor,
            keyframe_interval: secs("keyframe-interval", self.keyframe_interval)?,
            join_timeout: secs("join-timeout", self.join_timeout)?,
            server_pid: self.server_pid,
            room_prefix: self
                .room_prefix
                .clone()
                .unwrap_or_else(|| format!("loadgen-{}", std::process::id())),
            progress: !self.quiet,
            simulcast: self.simulcast,
            prefer_layer: self.prefer_layer,
            threads: if self.threads == 0 {
                std::thread::available_parallelism().map_or(1, usize::from)
            } else {
                self.threads
            },
            unsupported,
        })
    }
}

/// Why a scenario file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioFileError {
    /// `--scenario` without a file name.
    #[error("--scenario needs a file name")]
    MissingPath,
    /// The file could not be read.
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("scenario file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message (with line and column).
        message: String,
    },
    /// A key is not a flag of `weir-loadgen`.
    #[error("scenario file {path}: unknown key '{key}' (keys are the long flags, e.g. rooms, subscribers, prefer-layer)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value has a type the key cannot take.
    #[error("scenario file {path}: key '{key}' {expected}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the key takes.
        expected: &'static str,
    },
}

/// Expands `--scenario FILE` in a command line (program name first): the
/// file's settings become flags placed right after the program name, so
/// the flags written on the command line override them. A command line
/// without `--scenario` comes back unchanged.
pub fn expand_scenario_file(argv: Vec<OsString>) -> Result<Vec<OsString>, ScenarioFileError> {
    let mut path = None;
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let Some(a) = a.to_str() else { continue };
        if a == "--" {
            break;
        }
        if a == "--scenario" {
            path = Some(PathBuf::from(
                it.next().ok_or(ScenarioFileError::MissingPath)?,
            ));
        } else if let Some(p) = a.strip_prefix("--scenario=") {
            path = Some(PathBuf::from(p));
        }
    }
    let Some(path) = path else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ScenarioFileError::Read {
        path: path.clone(),
        source,
    })?;
    let flags = scenario_flags(&path, &text)?;
    let mut out = Vec::with_capacity(argv.len() + flags.len());
    let mut argv = argv.into_iter();
    out.extend(argv.next());
    out.extend(flags.into_iter().map(OsString::from));
    out.extend(argv);
    Ok(out)
}

/// The flags a scenario file's text stands for.
pub(crate) fn scenario_flags(path: &Path, text: &str) -> Result<Vec<String>, ScenarioFileError> {
    let table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ScenarioFileError::Syntax {
                path: path.to_owned(),
                message: e.to_string().trim_end().to_owned(),
            })?;
    let cmd = Args::command();
    let mut flags = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "scenario")
            .ok_or_else(|| ScenarioFileError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
            })?;
        let is_switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let bad = |expected| ScenarioFileError::BadValue {
            path: path.to_owned(),
            key: key.clone(),
            expected,
        };
        let text = match value {
            toml::Value::Boolean(b) if is_switch => {
                if *b {
                    flags.push(format!("--{long}"));
                }
                continue;
            }
            _ if is_switch => return Err(bad("is a switch: true or false")),
            toml::Value::String(v) => v.clone(),
            toml::Value::Integer(v) => v.to_string(),
            toml::Value::Float(v) => v.to_string(),
            _ => return Err(bad("takes a string or a number")),
        };
        flags.push(format!("--{long}"));
        flags.push(text);
    }
    Ok(flags)
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
        assert!(s.simulcast);
        assert!(s.unsupported.is_empty());
        assert!(Scenario::new("http://127.0.0.1:1").is_ok());
        let bad = Args::try_parse_from([
            "weir-loadgen",
            "--server",
            "http://a:1",
            "--prefer-layer",
            "4",
        ])
        .unwrap();
        assert!(bad.scenario().is_err());
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn write_file(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("weir-loadgen-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn scenario_file_equals_flags_and_the_command_line_wins() {
        let path = write_file(
            "ok",
            "server = \"http://127.0.0.1:9\"\nrooms = 10\npublishers = 5\nsubscribers = 5\n\
             duration = 2.5\nsimulcast = true\nprefer_layer = 1\nloss = 1\nquiet = false\n\
             publish-server = \"http://127.0.0.1:10\"\n",
        );
        let p = path.to_str().unwrap();
        let argv =
            expand_scenario_file(os(&["weir-loadgen", "--scenario", p, "--rooms", "3"])).unwrap();
        let s = Args::try_parse_from(argv).unwrap().scenario().unwrap();
        assert_eq!(s.rooms, 3, "the command line overrides the file");
        assert_eq!((s.publishers, s.subscribers), (5, 5));
        assert_eq!(s.duration, Duration::from_millis(2500));
        assert!(s.simulcast);
        assert_eq!(s.prefer_layer, Some(1));
        assert!((s.loss - 0.01).abs() < 1e-9);
        assert!(s.progress);
        assert_eq!(s.publish_ws, "ws://127.0.0.1:10/ws");
        assert_eq!(s.subscribe_ws, "ws://127.0.0.1:9/ws");
        let flags = Args::try_parse_from([
            "weir-loadgen",
            "--server",
            "http://127.0.0.1:9",
            "--rooms",
            "10",
            "--publishers",
            "5",
            "--subscribers",
            "5",
            "--duration",
            "2.5",
            "--simulcast",
            "--prefer-layer",
            "1",
            "--loss",
            "1",
            "--publish-server",
            "http://127.0.0.1:10",
        ])
        .unwrap()
        .scenario()
        .unwrap();
        let from_file = Args::try_parse_from(
            expand_scenario_file(os(&["weir-loadgen", &format!("--scenario={p}")])).unwrap(),
        )
        .unwrap()
        .scenario()
        .unwrap();
        assert_eq!(
            format!(
                "{:?}",
                (
                    flags.rooms,
                    flags.duration,
                    flags.simulcast,
                    flags.prefer_layer,
                    &flags.publish_ws
                )
            ),
            format!(
                "{:?}",
                (
                    from_file.rooms,
                    from_file.duration,
                    from_file.simulcast,
                    from_file.prefer_layer,
                    &from_file.publish_ws
                )
            )
        );
        std::fs::remove_file(path).unwrap();
        let same = os(&["weir-loadgen", "--server", "x"]);
        assert_eq!(expand_scenario_file(same.clone()).unwrap(), same);
    }

    #[test]
    fn scenario_file_errors_are_clear() {
        let cases = [
            ("syntax", "rooms = = 3", "not valid TOML"),
            ("unknown", "room = 3", "unknown key 'room'"),
            ("nested", "scenario = \"x.toml\"", "unknown key 'scenario'"),
            ("switch", "simulcast = 1", "key 'simulcast' is a switch"),
            (
                "table",
                "[rooms]\nx = 1",
                "key 'rooms' takes a string or a number",
            ),
            (
                "array",
                "rooms = [1, 2]",
                "key 'rooms' takes a string or a number",
            ),
        ];
        for (name, text, want) in cases {
            let path = write_file(name, text);
            let err =
                expand_scenario_file(os(&["weir-loadgen", "--scenario", path.to_str().unwrap()]))
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(want), "{name}: {err}");
            assert!(
                err.contains(path.to_str().unwrap()),
                "{name} names the file: {err}"
            );
            std::fs::remove_file(path).unwrap();
        }
        let err = expand_scenario_file(os(&["weir-loadgen", "--scenario", "/nonexistent/x.toml"]))
            .unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
        assert!(matches!(
            expand_scenario_file(os(&["weir-loadgen", "--scenario"])),
            Err(ScenarioFileError::MissingPath)
        ));
        // A bad value of the right type is the command line parser's to reject.
        let path = write_file("value", "server = \"http://a:1\"\nrooms = -2");
        let argv =
            expand_scenario_file(os(&["weir-loadgen", "--scenario", path.to_str().unwrap()]))
                .unwrap();
        assert!(Args::try_parse_from(argv).is_err());
        std::fs::remove_file(path).unwrap();
    }
}
