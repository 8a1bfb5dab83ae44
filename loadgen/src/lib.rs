//! `weir-loadgen`: real WebRTC peers at scale against a Weir server, measured.
//!
//! Every simulated participant is a real client of the reference signaling
//! protocol (`signaling/PROTOCOL.md`) with its own UDP socket, ICE checks
//! (controlling, against the ICE-lite server), a DTLS client handshake and
//! SRTP, built from Weir's own pieces (the data plane's STUN codec and SRTP
//! session) and the webrtc-rs `dtls` crate. Nothing is simulated below the
//! media: the server sees what a browser would send.
//!
//! ```text
//! run ─ ramp ─▶ peer task per participant ─ signaling (WebSocket JSON)
//!                    │                     └ transport: socket ─ recv task (STUN | DTLS | SRTP demux)
//!                    │                                          └ check task (ICE, consent)
//!                    └ publisher: media task (VP8 30 fps, Opus 20 ms) → SRTP → socket
//!                      subscriber: recv task → SRTP → trailer → Stats (atomics)
//! ```
//!
//! Publishers send VP8 with RFC 7741 payload descriptors (15-bit picture
//! ids, keyframes with start code and size, periodic and on PLI/FIR) and
//! Opus; every payload ends with a trailer (counter, send time) from which
//! subscribers in the same process measure loss, reordering and one-way
//! latency. [`run`] returns a [`Report`]; the binary prints it and writes
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
mod peer;
mod report;
mod run;
mod sdp;
mod signaling;
mod stats;
mod transport;

pub use config::{
    expand_scenario_file, Args, AudioCodec, Scenario, ScenarioFileError, VideoCodec, Vp8Frames,
};
pub use report::{FailedByCause, Quantiles, Report, ScenarioSummary};
pub use run::run;
pub use stats::FailCause;
