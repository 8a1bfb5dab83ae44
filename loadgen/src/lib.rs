//! `weir-loadgen`: real WebRTC peers at scale against a Weir server, measured.
//!
//! Every simulated participant is a real client of the reference signaling
//! protocol (`signaling/PROTOCOL.md`) with its own UDP socket, ICE checks
//! (controlling, against the ICE-lite server), a DTLS client handshake and
//! SRTP, built from Weir's own pieces (the data plane's STUN codec and SRTP
//! session) and the webrtc-rs `dtls` crate. Nothing is simulated below the
//! media: the server sees what a browser would send.
//!
//! Peers run thread per core: `Scenario::threads` OS threads, each with a
//! single-threaded tokio runtime, peers dealt to them round-robin; they
//! share only atomic counters.
//!
//! ```text
//! run ─ ramp ─▶ peer task per participant (on thread n mod threads) ─ signaling (WebSocket JSON)
//!                    │                     └ transport: socket ─ recv task (STUN | DTLS | SRTP demux)
//!                    │                                          └ check task (ICE, consent)
//!                    └ publisher: media task (VP8 30 fps, Opus 20 ms) → SRTP → socket
//!                      subscriber: recv task → SRTP → trailer → Stats (atomics)
//! ```
//!
//! Publishers send VP8 with RFC 7741 payload descriptors (15-bit picture
//! ids, keyframes with start code and size, periodic and on PLI/FIR),
//! optionally as three simulcast encodings named by the rid extension, and
//! Opus. VP8 frames are synthetic (sized to a bitrate) or real Chromium
//! frames replayed so that decoders accept them. Payloads end with a
//! trailer (counter, send time) from which subscribers in the same process
//! measure loss, reordering and one-way latency. [`run`] returns a [`Report`]; the binary prints it and writes
//! it as JSON.
//!
//! ```no_run
//! # async fn f() -> Result<(), String> {
//! let mut scenario = weir_loadgen::Scenario::new("http://127.0.0.1:8080")?;
//! scenario.subscribers = 10;
//! let report = weir_loadgen::run(scenario, std::future::pending()).await?;
//! println!("{report}");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod captured;
mod config;
mod media;
mod pacer;
mod peer;
mod report;
mod run;
mod sdp;
mod signaling;
mod stamp;
mod stats;
mod transport;

pub use config::{
    expand_scenario_file, Args, AudioCodec, Scenario, ScenarioFileError, VideoCodec, Vp8Frames,
};
pub use report::{DtlsSummary, FailedByCause, JoinStages, Quantiles, Report, ScenarioSummary};
pub use run::run;
pub use stats::FailCause;

/// Entry points for the fuzz targets in `loadgen/fuzz`; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a scenario file's text and, if that succeeds, the command
    /// line it stands for; returns whether both were accepted.
    pub fn scenario_file(text: &str) -> bool {
        use clap::Parser;
        let Ok(flags) = crate::config::scenario_flags(std::path::Path::new("fuzz.toml"), text)
        else {
            return false;
        };
        let argv = std::iter::once("weir-loadgen".to_owned()).chain(flags);
        crate::Args::try_parse_from(argv).is_ok_and(|a| a.scenario().is_ok())
    }

    /// Parses a server's session description as a subscriber does and, if
    /// that succeeds, answers it with and without transport-cc; returns
    /// whether it parsed.
    pub fn server_description(text: &str) -> bool {
        let Ok(remote) = crate::sdp::parse(text) else {
            return false;
        };
        let local = crate::sdp::LocalParams::generate("AA:BB");
        let _ = remote.twcc_ext_id();
        let _ = crate::sdp::subscribe_answer(&local, &remote, true);
        let _ = crate::sdp::subscribe_answer(&local, &remote, false);
        true
    }

    /// Reassembles the VP8 frames of an rtpdump; returns how many.
    pub fn rtpdump_frames(dump: &[u8]) -> usize {
        crate::captured::frames_of(dump, None).map_or(0, |f| f.len())
    }
}
