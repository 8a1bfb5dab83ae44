//! SRTP and SRTCP contexts of one transport.
//!
//! This first version wraps webrtc-srtp 0.17, which allocates an output
//! buffer per call. The data-plane issue replaces it with an in-place
//! implementation behind this same small interface, chosen by benchmark.
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

/// Replay window for inbound SRTP and SRTCP (RFC 3711 §3.3.2 suggests ≥ 64).
const REPLAY_WINDOW: usize = 1024;

/// The SRTP protection profiles Weir negotiates, most preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpProfile {
    /// AEAD_AES_128_GCM (RFC 7714).
    AeadAes128Gcm,
    /// AES128_CM_HMAC_SHA1_80 (RFC 3711).
    Aes128CmHmacSha1_80,
}

impl SrtpProfile {
    fn to_webrtc(self) -> ProtectionProfile {
        match self {
            SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpProfile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        }
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        self.to_webrtc().key_len()
    }

    /// Master salt length in bytes.
    pub fn salt_len(self) -> usize {
        self.to_webrtc().salt_len()
    }

    /// Authentication tag length in bytes.
    pub fn tag_len(self) -> usize {
        match self {
            SrtpProfile::AeadAes128Gcm => 16,
            SrtpProfile::Aes128CmHmacSha1_80 => 10,
        }
    }
}

/// Smallest SRTCP packet: header and sender SSRC, E flag + index, tag.
const SRTCP_MIN_WITHOUT_TAG: usize = 8 + 4;
/// Smallest SRTP packet: the fixed header and the tag.
const SRTP_MIN_WITHOUT_TAG: usize = 12;

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
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// The keys have the wrong length for the profile.
    #[error("SRTP key setup: {0}")]
    Setup(String),
    /// Authentication failed, the packet is a replay, or it is malformed.
    #[error("SRTP: {0}")]
    Rejected(String),
}

/// The inbound and outbound SRTP/SRTCP state of one transport.
pub struct SrtpSession {
    tag_len: usize,
    inbound: Context,
    outbound: Context,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtpSession")
    }
}

impl SrtpSession {
    /// Builds both directions from exported keys. Inbound contexts have
    /// replay protection; outbound ones need none.
    pub fn new(keys: &SrtpKeys) -> Result<Self, SrtpError> {
        let profile = keys.profile.to_webrtc();
        let inbound = Context::new(
            &keys.remote_key,
            &keys.remote_salt,
            profile,
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
        .map_err(|e| SrtpError::Setup(e.to_string()))?;
        let outbound = Context::new(&keys.local_key, &keys.local_salt, profile, None, None)
            .map_err(|e| SrtpError::Setup(e.to_string()))?;
        Ok(Self { tag_len: keys.profile.tag_len(), inbound, outbound })
    }

    /// Authenticates and decrypts an SRTP packet into `out`; returns its length.
    pub fn decrypt_rtp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<usize, SrtpError> {
        if packet.len() < SRTP_MIN_WITHOUT_TAG + self.tag_len {
            return Err(SrtpError::Rejected("SRTP packet too short".into()));
        }
        let plain = self
            .inbound
            .decrypt_rtp(packet)
            .map_err(|e| SrtpError::Rejected(e.to_string()))?;
        out.clear();
        out.extend_from_slice(&plain);
        Ok(plain.len())
    }

    /// Authenticates and decrypts an SRTCP packet into `out`.
    pub fn decrypt_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<usize, SrtpError> {
        // webrtc-srtp 0.17 indexes short SRTCP packets out of bounds (a
        // panic found by this crate's property tests), so length is checked
        // here first.
        if packet.len() < SRTCP_MIN_WITHOUT_TAG + self.tag_len {
            return Err(SrtpError::Rejected("SRTCP packet too short".into()));
        }
        let plain = self
            .inbound
            .decrypt_rtcp(packet)
            .map_err(|e| SrtpError::Rejected(e.to_string()))?;
        out.clear();
        out.extend_from_slice(&plain);
        Ok(plain.len())
    }

    /// Encrypts an RTP packet into `out`.
    pub fn encrypt_rtp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<usize, SrtpError> {
        let sealed = self
            .outbound
            .encrypt_rtp(packet)
            .map_err(|e| SrtpError::Rejected(e.to_string()))?;
        out.clear();
        out.extend_from_slice(&sealed);
        Ok(sealed.len())
    }

    /// Encrypts an RTCP packet into `out`.
    pub fn encrypt_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<usize, SrtpError> {
        let sealed = self
            .outbound
            .encrypt_rtcp(packet)
            .map_err(|e| SrtpError::Rejected(e.to_string()))?;
        out.clear();
        out.extend_from_slice(&sealed);
        Ok(sealed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever arrives, decrypting returns an error instead of panicking.
        #[test]
        fn decrypt_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), gcm in any::<bool>()) {
            let profile = if gcm { SrtpProfile::AeadAes128Gcm } else { SrtpProfile::Aes128CmHmacSha1_80 };
            let mut s = SrtpSession::new(&keys(profile, false)).unwrap();
            let mut out = Vec::new();
            let _ = s.decrypt_rtp(&data, &mut out);
            let _ = s.decrypt_rtcp(&data, &mut out);
            let mut rtcp = vec![0x80, 200, 0, 1];
            rtcp.extend_from_slice(&data);
            let _ = s.decrypt_rtcp(&rtcp, &mut out);
            let mut rtp = vec![0x80, 96];
            rtp.extend_from_slice(&data);
            let _ = s.decrypt_rtp(&rtp, &mut out);
        }
    }

    fn keys(profile: SrtpProfile, flip: bool) -> SrtpKeys {
        let a = vec![1u8; profile.key_len()];
        let b = vec![2u8; profile.key_len()];
        let sa = vec![3u8; profile.salt_len()];
        let sb = vec![4u8; profile.salt_len()];
        if flip {
            SrtpKeys { profile, local_key: b, local_salt: sb, remote_key: a, remote_salt: sa }
        } else {
            SrtpKeys { profile, local_key: a, local_salt: sa, remote_key: b, remote_salt: sb }
        }
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 7]);
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn round_trip_rejects_replay_and_wrong_key() {
        for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
            let mut alice = SrtpSession::new(&keys(profile, false)).unwrap();
            let mut bob = SrtpSession::new(&keys(profile, true)).unwrap();
            let mut sealed = Vec::new();
            let mut plain = Vec::new();
            alice.encrypt_rtp(&rtp(1), &mut sealed).unwrap();
            bob.decrypt_rtp(&sealed, &mut plain).unwrap();
            assert_eq!(plain, rtp(1));
            // The same packet again is a replay.
            assert!(bob.decrypt_rtp(&sealed, &mut plain).is_err());
            // A session with other keys cannot authenticate it.
            let mut eve = SrtpSession::new(&keys(profile, false)).unwrap();
            alice.encrypt_rtp(&rtp(2), &mut sealed).unwrap();
            assert!(eve.decrypt_rtp(&sealed, &mut plain).is_err());
        }
    }
}
