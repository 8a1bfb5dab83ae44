//! AEAD_AES_128_GCM (RFC 7714): AES-GCM with a 16-byte tag, keyed once at
//! setup, sealing and opening in place.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_128_GCM};

use super::header::{RtpHeader, RTCP_CLEAR};
use super::kdf::{self, LABEL_RTCP_KEY, LABEL_RTCP_SALT, LABEL_RTP_KEY, LABEL_RTP_SALT};
use super::{Backend, SrtpError};

/// The GCM tag.
pub(crate) const TAG_LEN: usize = 16;
/// E flag and SRTCP index.
const RTCP_TRAILER: usize = 4;
/// Session salt length (96 bits).
pub(crate) const SALT_LEN: usize = 12;

/// An AES-128-GCM key schedule and GHASH key.
// Built once per direction of a transport and never moved per packet, so
// the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Aead {
    Ring(LessSafeKey),
    RustCrypto(Box<Aes128Gcm>),
    #[cfg(feature = "aws-lc-rs")]
    AwsLc(aws_lc_rs::aead::LessSafeKey),
}

impl Aead {
    fn new(key: &[u8; 16], backend: Backend) -> Result<Self, SrtpError> {
        Ok(match backend {
            Backend::Ring => {
                let key = UnboundKey::new(&AES_128_GCM, key)
                    .map_err(|_| SrtpError::Setup("AES-128-GCM key rejected".into()))?;
                Aead::Ring(LessSafeKey::new(key))
            }
            Backend::RustCrypto => Aead::RustCrypto(Box::new(Aes128Gcm::new(key.into()))),
            #[cfg(feature = "aws-lc-rs")]
            Backend::AwsLc => {
                use aws_lc_rs::aead;
                let key = aead::UnboundKey::new(&aead::AES_128_GCM, key)
                    .map_err(|_| SrtpError::Setup("AES-128-GCM key rejected".into()))?;
                Aead::AwsLc(aead::LessSafeKey::new(key))
            }
        })
    }

    #[inline]
    fn seal(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SrtpError> {
        match self {
            Aead::Ring(key) => {
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        data,
                    )
                    .map_err(|_| SrtpError::Malformed("too long for AES-GCM"))?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
            Aead::RustCrypto(key) => {
                let tag = key
                    .encrypt_in_place_detached(&nonce.into(), aad, data)
                    .map_err(|_| SrtpError::Malformed("too long for AES-GCM"))?;
                Ok(tag.into())
            }
            #[cfg(feature = "aws-lc-rs")]
            Aead::AwsLc(key) => {
                use aws_lc_rs::aead;
                let tag = key
                    .seal_in_place_separate_tag(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::from(aad),
                        data,
                    )
                    .map_err(|_| SrtpError::Malformed("too long for AES-GCM"))?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
        }
    }

    #[inline]
    fn open(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8],
    ) -> Result<(), SrtpError> {
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| SrtpError::TooShort)?;
        match self {
            Aead::Ring(key) => key
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    Tag::from(tag),
                    data,
                    0..,
                )
                .map(|_| ())
                .map_err(|_| SrtpError::Authentication),
            Aead::RustCrypto(key) => key
                .decrypt_in_place_detached(&nonce.into(), aad, data, &tag.into())
                .map_err(|_| SrtpError::Authentication),
            #[cfg(feature = "aws-lc-rs")]
            Aead::AwsLc(key) => {
                use aws_lc_rs::aead;
                key.open_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(aad),
                    &tag,
                    data,
                )
                .map(|_| ())
                .map_err(|_| SrtpError::Authentication)
            }
        }
    }
}

struct GcmKeys {
    aead: Aead,
    salt: [u8; SALT_LEN],
}

impl GcmKeys {
    fn new(
        master_key: &[u8; 16],
        master_salt: &[u8],
        labels: [u8; 2],
        backend: Backend,
    ) -> Result<Self, SrtpError> {
        let mut key = [0u8; 16];
        let mut salt = [0u8; SALT_LEN];
        kdf::derive(master_key, master_salt, labels[0], &mut key);
        kdf::derive(master_key, master_salt, labels[1], &mut salt);
        Ok(Self {
            aead: Aead::new(&key, backend)?,
            salt,
        })
    }

    /// IV of RFC 7714 §8.1 (SRTP: ROC and sequence number in the last six
    /// bytes) and §9.1 (SRTCP: the 31-bit index in the last four).
    #[inline]
    fn iv(&self, ssrc: u32, low48: u64) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..12].copy_from_slice(&low48.to_be_bytes()[2..]);
        for (d, s) in iv.iter_mut().zip(&self.salt) {
            *d ^= s;
        }
        iv
    }
}

/// Both halves of one direction's AES-GCM keys.
pub(crate) struct GcmTransform {
    rtp: GcmKeys,
    rtcp: GcmKeys,
}

impl GcmTransform {
    pub(crate) fn new(
        master_key: &[u8; 16],
        master_salt: &[u8],
        backend: Backend,
    ) -> Result<Self, SrtpError> {
        Ok(Self {
            rtp: GcmKeys::new(
                master_key,
                master_salt,
                [LABEL_RTP_KEY, LABEL_RTP_SALT],
                backend,
            )?,
            rtcp: GcmKeys::new(
                master_key,
                master_salt,
                [LABEL_RTCP_KEY, LABEL_RTCP_SALT],
                backend,
            )?,
        })
    }

    /// Builds from session keys directly, as the RFC 7714 vectors give them.
    #[cfg(test)]
    pub(crate) fn from_session_keys(
        key: &[u8; 16],
        salt: &[u8; SALT_LEN],
        backend: Backend,
    ) -> Self {
        let keys = || GcmKeys {
            aead: Aead::new(key, backend).unwrap(),
            salt: *salt,
        };
        Self {
            rtp: keys(),
            rtcp: keys(),
        }
    }

    /// Encrypts `buf[..len]`, an RTP packet, in place (the header is the
    /// AAD) and writes the tag after it. Returns the SRTP length.
    pub(crate) fn seal_rtp(
        &self,
        buf: &mut [u8],
        len: usize,
        hdr: &RtpHeader,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let iv = self.rtp.iv(hdr.ssrc, index);
        let (aad, rest) = buf.split_at_mut(hdr.len);
        let (data, tail) = rest.split_at_mut(len - hdr.len);
        let tag = self.rtp.aead.seal(iv, aad, data)?;
        tail[..TAG_LEN].copy_from_slice(&tag);
        Ok(len + TAG_LEN)
    }

    /// Authenticates and decrypts the SRTP packet `buf` in place. Returns
    /// the RTP length.
    pub(crate) fn open_rtp(
        &self,
        buf: &mut [u8],
        hdr: &RtpHeader,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let len = buf.len() - TAG_LEN;
        let iv = self.rtp.iv(hdr.ssrc, index);
        let (aad, rest) = buf.split_at_mut(hdr.len);
        let (data, tag) = rest.split_at_mut(len - hdr.len);
        self.rtp.aead.open(iv, aad, data, tag)?;
        Ok(len)
    }

    /// Where the E flag and index sit in an SRTCP packet: after the tag.
    pub(crate) fn rtcp_trailer_at(len: usize) -> Option<usize> {
        len.checked_sub(RTCP_TRAILER)
            .filter(|&at| at >= RTCP_CLEAR + TAG_LEN)
    }

    /// Protects `buf[..len]`, an RTCP compound packet, in place (RFC 7714
    /// §9): `header || ciphertext || tag || E+index` when `encrypt`, else
    /// `packet || tag || E+index` with the whole packet authenticated.
    pub(crate) fn seal_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
        encrypt: bool,
    ) -> Result<usize, SrtpError> {
        let trailer = (index | (u32::from(encrypt) << 31)).to_be_bytes();
        let iv = self.rtcp.iv(ssrc, u64::from(index));
        if encrypt {
            let mut aad = [0u8; RTCP_CLEAR + RTCP_TRAILER];
            aad[..RTCP_CLEAR].copy_from_slice(&buf[..RTCP_CLEAR]);
            aad[RTCP_CLEAR..].copy_from_slice(&trailer);
            let tag = self.rtcp.aead.seal(iv, &aad, &mut buf[RTCP_CLEAR..len])?;
            buf[len..len + TAG_LEN].copy_from_slice(&tag);
            buf[len + TAG_LEN..len + TAG_LEN + RTCP_TRAILER].copy_from_slice(&trailer);
        } else {
            // The AAD is the packet followed by the trailer; build it in
            // place, then move the trailer behind the tag.
            buf[len..len + RTCP_TRAILER].copy_from_slice(&trailer);
            let tag = self
                .rtcp
                .aead
                .seal(iv, &buf[..len + RTCP_TRAILER], &mut [])?;
            buf[len + RTCP_TRAILER..len + RTCP_TRAILER + TAG_LEN].copy_from_slice(&tag);
            buf[len..len + RTCP_TRAILER + TAG_LEN].rotate_left(RTCP_TRAILER);
        }
        Ok(len + TAG_LEN + RTCP_TRAILER)
    }

    /// Authenticates the SRTCP packet `buf` and decrypts it in place if its
    /// E flag says so. Returns the RTCP length. On failure the bytes of
    /// `buf` are unspecified.
    pub(crate) fn open_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        index: u32,
        encrypted: bool,
    ) -> Result<usize, SrtpError> {
        let total = buf.len();
        let len = total - TAG_LEN - RTCP_TRAILER;
        let iv = self.rtcp.iv(ssrc, u64::from(index));
        if encrypted {
            let mut aad = [0u8; RTCP_CLEAR + RTCP_TRAILER];
            aad[..RTCP_CLEAR].copy_from_slice(&buf[..RTCP_CLEAR]);
            aad[RTCP_CLEAR..].copy_from_slice(&buf[total - RTCP_TRAILER..]);
            let (data, tag) = buf[RTCP_CLEAR..total - RTCP_TRAILER].split_at_mut(len - RTCP_CLEAR);
            self.rtcp.aead.open(iv, &aad, data, tag)?;
        } else {
            // Bring the trailer next to the packet so the AAD is contiguous.
            buf[len..].rotate_right(RTCP_TRAILER);
            let (aad, tag) = buf.split_at_mut(len + RTCP_TRAILER);
            self.rtcp.aead.open(iv, aad, &mut [], tag)?;
        }
        Ok(len)
    }
}
