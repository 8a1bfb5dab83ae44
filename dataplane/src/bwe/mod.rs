//! Send-side bandwidth estimation toward subscribers, in the spirit of Google
//! Congestion Control (draft-ietf-rmcat-gcc-02), and the per-transport
//! allocator that shares the estimate among a transport's tracks.
//!
//! Everything here is sans-IO: the session feeds sends, transport-cc
//! feedback and RTT samples in with the current time, and reads the estimate
//! and probe requests back out. See [`BandwidthEstimator`] for the calling
//! order.
//!
//! The parts, each testable alone:
//! - [`history`]: what was sent when (by transport-wide sequence number),
//!   matched against feedback; the acknowledged bitrate.
//! - [`delay`]: packet groups, the trendline filter over one-way delay
//!   variation, the adaptive overuse threshold and the AIMD rate controller.
//! - [`loss`]: the loss-based controller.
//! - [`estimator`]: both controllers combined, plus probing.
//! - [`allocator`]: layer choice per track from the estimate.

pub mod allocator;
pub mod delay;
pub mod estimator;
pub mod history;
pub mod loss;
pub mod remote;

#[cfg(test)]
mod tests;

pub use allocator::{Allocator, LayerRate, TrackDemand, TrackKind};
pub use estimator::{BandwidthEstimator, ProbeRequest};
pub use history::{PacketResult, ProbeId, SendHistory};
pub use remote::RemoteEstimator;

/// Why the estimator rejected an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BweError {
    /// The transport-cc feedback could not be parsed.
    #[error("malformed transport-cc feedback")]
    MalformedFeedback,
}
