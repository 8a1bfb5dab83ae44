//! Allocation-free parsers for what an SFU needs to know about an RTP packet.
//!
//! Weir parses each published packet once, on the core that received it, and shares
//! the result with every subscriber's forwarder, which patches a few fields on the
//! way out. This crate is that parse step and those patches:
//!
//! - [`rtp`]: a borrowed view of the RTP fixed header, and in-place setters for the
//!   fields a forwarder rewrites (SSRC, sequence number, timestamp, payload type, marker).
//! - [`extensions`]: RFC 8285 header-extension framing, a block writer, in-place value
//!   rewrites, and the typed values Weir uses (mid, rid, audio level, abs-send-time,
//!   transport-wide sequence number, video orientation, playout delay).
//! - [`av1::dependency_descriptor`]: the Dependency Descriptor extension with its
//!   cached template structure, and a writer for changing active decode targets.
//! - [`vp8`], [`vp9`], [`h264`], [`av1`], [`opus`]: payload descriptors, with picture-id
//!   patchers for VP8 and VP9.
//! - [`facts`](mod@facts): one [`PacketFacts`] per packet (key frame, layer ids, switch point,
//!   frame boundaries, picture ids) whatever the codec, for layer selection.
//!
//! A typical receive path: [`RtpHeader::parse`], then [`Extensions::parse`] on its
//! extension block, then [`facts()`] on its payload with the descriptor's
//! [`FrameDependency`] if the stream negotiated one.
//!
//! Nothing here does IO or allocates; every parser returns a `Result` and never panics
//! on input from the network. Each module has its own `#[non_exhaustive]` error enum.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod av1;
pub mod extensions;
pub mod facts;
pub mod h264;
pub mod opus;
pub mod rtp;
pub mod vp8;
pub mod vp9;

pub use av1::{Av1Payload, DdError, DependencyDescriptor, DependencyStructure, FrameDependency};
pub use extensions::{ExtError, ExtForm, Extensions, ExtensionsWriter};
pub use facts::{facts, facts_with_descriptor, Codec, CodecError, PacketFacts};
pub use h264::H264Payload;
pub use opus::OpusToc;
pub use rtp::{RtpError, RtpHeader};
pub use vp8::{Vp8Descriptor, Vp8Patch};
pub use vp9::{Vp9Descriptor, Vp9Patch};
