//! ICE-lite for the SFU side of a WebRTC transport.
//!
//! The SFU has public addresses and never initiates connectivity checks, so it runs the
//! "lite" variant of ICE (RFC 8445 §2.5): it answers the browser's Binding requests,
//! learns which 5-tuples are reachable from them, follows the browser's nomination and
//! watches consent freshness (RFC 7675).
//!
//! - [`stun`]: an allocation-free STUN codec (parse into a borrowed view, write into a
//!   caller-owned buffer) with just the attributes ICE needs.
//! - [`lite`]: [`IceLite`], the sans-IO agent for one transport. It takes time as an
//!   argument and owns no socket; the per-core driver feeds it datagrams and timeouts.
//! - [`credentials`]: ufrag/password pairs and their generator.
//!
//! Routing: a check's USERNAME is `"<our ufrag>:<their ufrag>"`, so the driver finds the
//! owning transport in O(1) with [`stun::local_ufrag`] and a table keyed by our ufrag;
//! after that, media and DTLS are routed by 5-tuple and gated by
//! [`IceLite::is_valid_source`].

pub mod credentials;
pub mod lite;
pub mod stun;

pub use credentials::{CredentialsError, IceCredentials};
pub use lite::{IceConfig, IceError, IceEvent, IceLite, IceState, MAX_VALID_SOURCES};
pub use stun::{StunClass, StunError, StunMessage, StunMethod};
