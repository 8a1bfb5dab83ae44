//! SRTP and SRTCP contexts of one transport (RFC 3711, RFC 7714).
//!
//! Packets are protected and unprotected in place: an inbound packet is
//! authenticated and decrypted inside the receive buffer it arrived in, and
//! an outbound one is encrypted straight into the send buffer the caller
//! leases (`*_in_place` and `*_into`). Session keys, AES key schedules and
//! HMAC pad states are computed once, in [`SrtpSession::new`]; no call
//! allocates once the SSRCs of a transport have been seen. The `Vec`-based
//! methods remain for callers off the hot path.
//!
//! Calling order: build one [`SrtpSession`] per transport from the keys
//! that DTLS exported, then call `decrypt_*` for what the peer sent and
//! `encrypt_*` for what we send, in any interleaving. There is no clock and
//! no I/O inside.
//!
//! State per SSRC: inbound, the highest authenticated packet index and a
//! 1024-packet replay bitmap (RFC 3711 §3.3.2), for SRTP (48-bit index
//! estimated from the sequence number, §3.3.1) and SRTCP (explicit 31-bit
//! index); outbound, the highest SRTP index sent and the next SRTCP index.
//!
//! The primitives, chosen per profile by the benchmark in `benches/srtp.rs`
//! (figures in `bench/RESULTS.md (SRTP section)`): ring's AES-GCM for AEAD_AES_128_GCM;
//! RustCrypto's `aes` keystream and `hmac` + `sha1` for
//! AES128_CM_HMAC_SHA1_80. With the `aws-lc-rs` feature, aws-lc-rs's AES-GCM,
//! which measured faster still, at the cost of a C build. Key derivation
//! always uses RustCrypto's `aes`.

mod cm;
mod gcm;
mod header;
mod kdf;
mod replay;
mod streams;
#[cfg(test)]
mod tests;

use cm::CmTransform;
use gcm::GcmTransform;
use header::{rtcp_sender_ssrc, RtpHeader};
use replay::{estimate_index, ReplayWindow};
use streams::Streams;

/// The SRTP protection profiles Weir negotiates, most preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpProfile {
    /// AEAD_AES_128_GCM (RFC 7714).
    AeadAes128Gcm,
    /// AES128_CM_HMAC_SHA1_80 (RFC 3711).
    Aes128CmHmacSha1_80,
}

impl SrtpProfile {
    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        16
    }

    /// Master salt length in bytes.
    pub fn salt_len(self) -> usize {
        match self {
            SrtpProfile::AeadAes128Gcm => gcm::SALT_LEN,
            SrtpProfile::Aes128CmHmacSha1_80 => cm::SALT_LEN,
        }
    }

    /// Authentication tag length in bytes.
    pub fn tag_len(self) -> usize {
        match self {
            SrtpProfile::AeadAes128Gcm => gcm::TAG_LEN,
            SrtpProfile::Aes128CmHmacSha1_80 => cm::TAG_LEN,
        }
    }

    /// Bytes SRTCP adds to an RTCP packet: the E flag and index, and the tag.
    pub fn srtcp_overhead(self) -> usize {
        self.tag_len() + SRTCP_INDEX_LEN
    }

    /// The primitives that measured fastest for this profile (bench/RESULTS.md (SRTP section)):
    /// for AES-GCM ring's, or aws-lc-rs's when it is built in; for AES-CM
    /// RustCrypto's (SHA-NI HMAC; ring's SHA-1 is portable code, and
    /// aws-lc-rs's per-packet HMAC setup costs more on small packets).
    fn default_backend(self) -> Backend {
        match self {
            #[cfg(feature = "aws-lc-rs")]
            SrtpProfile::AeadAes128Gcm => Backend::AwsLc,
            #[cfg(not(feature = "aws-lc-rs"))]
            SrtpProfile::AeadAes128Gcm => Backend::Ring,
            SrtpProfile::Aes128CmHmacSha1_80 => Backend::RustCrypto,
        }
    }
}

/// Length of the SRTCP E flag and index.
const SRTCP_INDEX_LEN: usize = 4;
/// Largest SRTCP index (31 bits); it is never wrapped without new keys.
const MAX_SRTCP_INDEX: u32 = (1 << 31) - 1;

/// Keys exported from DTLS (RFC 5764 §4.2), from this side's point of view.
#[derive(Clone)]
pub struct SrtpKeys {
    /// The negotiated profile.
    pub profile: SrtpProfile,
    /// Key we encrypt with.
    pub local_key: Vec<u8>,
    /// Salt we encrypt with.
    pub local_salt: Vec<u8>,
    /// Key the peer encrypts with.
    pub remote_key: Vec<u8>,
    /// Salt the peer encrypts with.
    pub remote_salt: Vec<u8>,
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never log key material.
        f.debug_struct("SrtpKeys")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// Why an SRTP operation failed.
///
/// Per-packet failures carry no heap data, so that rejecting a flood of
/// forged packets allocates nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// The keys have the wrong length for the profile.
    #[error("SRTP key setup: {0}")]
    Setup(String),
    /// Authentication failed, the packet is a replay, or it is malformed.
    /// Kept for callers of the first version; this module now reports the
    /// specific variants below.
    #[error("SRTP: {0}")]
    Rejected(String),
    /// Shorter than its header and tag.
    #[error("SRTP: packet too short")]
    TooShort,
    /// The header does not parse.
    #[error("SRTP: malformed packet: {0}")]
    Malformed(&'static str),
    /// The tag does not match: forged, corrupted, or keyed otherwise.
    #[error("SRTP: authentication failed")]
    Authentication,
    /// This packet index was already authenticated (RFC 3711 §3.3.2).
    #[error("SRTP: replayed packet")]
    Replayed,
    /// The packet index is behind the replay window.
    #[error("SRTP: packet older than the replay window")]
    TooOld,
    /// The output buffer has no room for the protected packet.
    #[error("SRTP: output buffer of {have} bytes, {need} needed")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// The ROC or SRTCP index would wrap: the keys are used up.
    #[error("SRTP: packet index exhausted, new keys needed")]
    IndexExhausted,
    /// More SSRCs than one direction of a transport may carry.
    #[error("SRTP: too many SSRCs")]
    TooManyStreams,
}

/// Which primitive implementations a session uses. Not a stable API: the
/// benchmark and the tests compare them; [`SrtpSession::new`] takes the
/// fastest for the profile.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// ring's AES-GCM and HMAC-SHA1; AES-CM keystream from RustCrypto `aes`
    /// (ring has no raw counter mode).
    Ring,
    /// RustCrypto `aes-gcm`, `hmac` + `sha1`, and `aes`.
    RustCrypto,
    /// aws-lc-rs for everything: AES-GCM, AES-CTR and HMAC-SHA1. Only with
    /// the `aws-lc-rs` feature, whose C build is not worth its cost by
    /// default (see `bench/RESULTS.md (SRTP section)`).
    #[cfg(feature = "aws-lc-rs")]
    AwsLc,
}

/// One profile's cipher and MAC keys for one direction. Boxed: the
/// variants differ by 700 B (HMAC-SHA1's state), and every transport keeps
/// two, so inline each would cost what the larger one does.
enum Transform {
    Gcm(Box<GcmTransform>),
    Cm(Box<CmTransform>),
}

/// Outbound SRTCP state of one SSRC.
struct RtcpSender {
    next_index: u32,
}

/// Keys and per-SSRC state of what the peer sends.
struct Inbound {
    transform: Transform,
    rtp: Streams<ReplayWindow>,
    rtcp: Streams<ReplayWindow>,
}

/// Keys and per-SSRC state of what we send.
struct Outbound {
    transform: Transform,
    /// Highest SRTP index sent per SSRC.
    rtp: Streams<u64>,
    rtcp: Streams<RtcpSender>,
}

/// The inbound and outbound SRTP/SRTCP state of one transport.
pub struct SrtpSession {
    profile: SrtpProfile,
    inbound: Inbound,
    outbound: Outbound,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

fn transform(
    profile: SrtpProfile,
    key: &[u8],
    salt: &[u8],
    backend: Backend,
) -> Result<Transform, SrtpError> {
    let key: &[u8; 16] = key.try_into().map_err(|_| {
        SrtpError::Setup(format!(
            "master key of {} bytes, {} expected",
            key.len(),
            profile.key_len()
        ))
    })?;
    if salt.len() != profile.salt_len() {
        return Err(SrtpError::Setup(format!(
            "master salt of {} bytes, {} expected",
            salt.len(),
            profile.salt_len()
        )));
    }
    Ok(match profile {
        SrtpProfile::AeadAes128Gcm => {
            Transform::Gcm(Box::new(GcmTransform::new(key, salt, backend)?))
        }
        SrtpProfile::Aes128CmHmacSha1_80 => {
            Transform::Cm(Box::new(CmTransform::new(key, salt, backend)))
        }
    })
}

impl SrtpSession {
    /// Builds both directions from exported keys. Inbound contexts have
    /// replay protection; outbound ones need none.
    pub fn new(keys: &SrtpKeys) -> Result<Self, SrtpError> {
        Self::with_backend(keys, keys.profile.default_backend())
    }

    /// Like [`Self::new`] with the given primitives; for benchmarks and
    /// cross-checks only.
    #[doc(hidden)]
    pub fn with_backend(keys: &SrtpKeys, backend: Backend) -> Result<Self, SrtpError> {
        let p = keys.profile;
        Ok(Self {
            profile: p,
            inbound: Inbound {
                transform: transform(p, &keys.remote_key, &keys.remote_salt, backend)?,
                rtp: Streams::new(),
                rtcp: Streams::new(),
            },
            outbound: Outbound {
                transform: transform(p, &keys.local_key, &keys.local_salt, backend)?,
                rtp: Streams::new(),
                rtcp: Streams::new(),
            },
        })
    }

    /// The negotiated profile.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Authenticates and decrypts an SRTP packet in place; returns the
    /// length of the RTP packet now at the start of `packet`. Replays and
    /// packets behind the replay window are rejected before any crypto. On
    /// error the bytes of `packet` are unspecified.
    pub fn decrypt_rtp_in_place(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.profile.tag_len();
        let hdr = RtpHeader::parse(packet, tag_len)?;
        let streams = &mut self.inbound.rtp;
        let slot = streams.find(hdr.ssrc);
        let index = match slot {
            Some(s) => {
                let window = streams.get(s);
                let index = estimate_index(window.top(), hdr.seq)?;
                window.check(index)?;
                index
            }
            None => {
                streams.ensure_room()?;
                // RFC 3711 §3.3.1: the first packet of a stream has ROC 0.
                u64::from(hdr.seq)
            }
        };
        let len = match &self.inbound.transform {
            Transform::Gcm(t) => t.open_rtp(packet, &hdr, index)?,
            Transform::Cm(t) => t.open_rtp(packet, &hdr, index)?,
        };
        match slot {
            Some(s) => streams.get_mut(s).accept(index),
            None => {
                streams.insert(hdr.ssrc, ReplayWindow::new(index))?;
            }
        }
        Ok(len)
    }

    /// Authenticates and decrypts an SRTCP packet in place; returns the
    /// length of the RTCP compound packet now at the start of `packet`.
    pub fn decrypt_rtcp_in_place(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let len = packet.len();
        let at = match self.inbound.transform {
            Transform::Gcm(_) => GcmTransform::rtcp_trailer_at(len),
            Transform::Cm(_) => CmTransform::rtcp_trailer_at(len),
        }
        .ok_or(SrtpError::TooShort)?;
        let ssrc = rtcp_sender_ssrc(packet)?;
        let trailer =
            u32::from_be_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]]);
        let encrypted = trailer >> 31 == 1;
        let index = trailer & MAX_SRTCP_INDEX;
        let streams = &mut self.inbound.rtcp;
        let slot = streams.find(ssrc);
        match slot {
            Some(s) => streams.get(s).check(u64::from(index))?,
            None => streams.ensure_room()?,
        }
        let plain = match &self.inbound.transform {
            Transform::Gcm(t) => t.open_rtcp(packet, ssrc, index, encrypted)?,
            Transform::Cm(t) => t.open_rtcp(packet, ssrc, index, encrypted)?,
        };
        match slot {
            Some(s) => streams.get_mut(s).accept(u64::from(index)),
            None => {
                streams.insert(ssrc, ReplayWindow::new(u64::from(index)))?;
            }
        }
        Ok(plain)
    }

    /// Encrypts the RTP packet `plain` into `out`, which needs room for it
    /// and the tag ([`SrtpProfile::tag_len`]); returns the SRTP length.
    pub fn encrypt_rtp_into(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, SrtpError> {
        let hdr = RtpHeader::parse(plain, 0)?;
        let len = plain.len();
        let need = len + self.profile.tag_len();
        if out.len() < need {
            return Err(SrtpError::BufferTooSmall {
                need,
                have: out.len(),
            });
        }
        let streams = &mut self.outbound.rtp;
        let (slot, index) = match streams.find(hdr.ssrc) {
            Some(s) => (Some(s), estimate_index(*streams.get(s), hdr.seq)?),
            None => {
                streams.ensure_room()?;
                (None, u64::from(hdr.seq))
            }
        };
        let out = &mut out[..need];
        out[..len].copy_from_slice(plain);
        let sealed = match &self.outbound.transform {
            Transform::Gcm(t) => t.seal_rtp(out, len, &hdr, index)?,
            Transform::Cm(t) => t.seal_rtp(out, len, &hdr, index)?,
        };
        match slot {
            Some(s) => {
                let highest = streams.get_mut(s);
                *highest = (*highest).max(index);
            }
            None => {
                streams.insert(hdr.ssrc, index)?;
            }
        }
        Ok(sealed)
    }

    /// Encrypts the RTCP compound packet `plain` into `out`, which needs
    /// room for it, the E flag and index, and the tag
    /// ([`SrtpProfile::srtcp_overhead`]); returns the SRTCP length.
    pub fn encrypt_rtcp_into(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, SrtpError> {
        self.protect_rtcp(plain, out, true)
    }

    /// SRTCP with the E flag as given; only tests send unencrypted SRTCP.
    fn protect_rtcp(
        &mut self,
        plain: &[u8],
        out: &mut [u8],
        encrypt: bool,
    ) -> Result<usize, SrtpError> {
        let ssrc = rtcp_sender_ssrc(plain)?;
        let len = plain.len();
        let need = len + self.profile.srtcp_overhead();
        if out.len() < need {
            return Err(SrtpError::BufferTooSmall {
                need,
                have: out.len(),
            });
        }
        let streams = &mut self.outbound.rtcp;
        let slot = match streams.find(ssrc) {
            Some(s) => s,
            None => streams.insert(ssrc, RtcpSender { next_index: 0 })?,
        };
        let index = streams.get(slot).next_index;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }
        let out = &mut out[..need];
        out[..len].copy_from_slice(plain);
        let sealed = match &self.outbound.transform {
            Transform::Gcm(t) => t.seal_rtcp(out, len, ssrc, index, encrypt)?,
            Transform::Cm(t) => t.seal_rtcp(out, len, ssrc, index, encrypt)?,
        };
        streams.get_mut(slot).next_index = index + 1;
        Ok(sealed)
    }

    /// Authenticates and decrypts an SRTP packet into `out`; returns its length.
    pub fn decrypt_rtp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<usize, SrtpError> {
        out.clear();
        out.extend_from_slice(packet);
        let r = self.decrypt_rtp_in_place(out);
        finish(out, r)
    }

    /// Authenticates and decrypts an SRTCP packet into `out`.
    pub fn decrypt_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<usize, SrtpError> {
        out.clear();
        out.extend_from_slice(packet);
        let r = self.decrypt_rtcp_in_place(out);
        finish(out, r)
    }

    /// Encrypts an RTP packet into `out`.
    pub fn encrypt_rtp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<usize, SrtpError> {
        out.clear();
        out.resize(packet.len() + self.profile.tag_len(), 0);
        let r = self.encrypt_rtp_into(packet, out);
        finish(out, r)
    }

    /// Encrypts an RTCP packet into `out`.
    pub fn encrypt_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<usize, SrtpError> {
        out.clear();
        out.resize(packet.len() + self.profile.srtcp_overhead(), 0);
        let r = self.encrypt_rtcp_into(packet, out);
        finish(out, r)
    }
}

/// Trims `out` to the result, or empties it on failure so that no
/// half-processed bytes are mistaken for a packet.
fn finish(out: &mut Vec<u8>, r: Result<usize, SrtpError>) -> Result<usize, SrtpError> {
    match r {
        Ok(n) => {
            out.truncate(n);
            Ok(n)
        }
        Err(e) => {
            out.clear();
            Err(e)
        }
    }
}
