//! AES128_CM_HMAC_SHA1_80 (RFC 3711 §4.1.1, §4.2.1): AES in counter mode
//! and an HMAC-SHA1 tag truncated to 80 bits, both keyed once at setup.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128Enc, Block};
use hmac::{Hmac, Mac as _};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::header::{RtpHeader, RTCP_CLEAR};
use super::kdf::{self, LABEL_RTCP_AUTH, LABEL_RTCP_KEY, LABEL_RTCP_SALT};
use super::kdf::{LABEL_RTP_AUTH, LABEL_RTP_KEY, LABEL_RTP_SALT};
use super::{Backend, SrtpError};

/// The truncated HMAC-SHA1 tag.
pub(crate) const TAG_LEN: usize = 10;
/// E flag and SRTCP index.
const RTCP_TRAILER: usize = 4;
/// Session salt length (112 bits).
pub(crate) const SALT_LEN: usize = 14;
/// Keystream blocks computed per call into the block cipher, enough for
/// AES-NI to pipeline.
const PAR_BLOCKS: usize = 8;

/// HMAC-SHA1 keyed at setup: the inner and outer pad states are computed
/// once, and each packet starts from a copy of them.
// Built once per direction of a transport and never moved per packet, so
// the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Mac {
    RustCrypto(Hmac<Sha1>),
    Ring(ring::hmac::Key),
    #[cfg(feature = "aws-lc-rs")]
    AwsLc(aws_lc_rs::hmac::Key),
}

impl Mac {
    fn new(key: &[u8; 20], backend: Backend) -> Self {
        match backend {
            Backend::RustCrypto => {
                // Invariant: HMAC accepts keys of any length.
                let mac =
                    <Hmac<Sha1> as hmac::Mac>::new_from_slice(key).expect("HMAC key of any length");
                Mac::RustCrypto(mac)
            }
            Backend::Ring => Mac::Ring(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                key,
            )),
            #[cfg(feature = "aws-lc-rs")]
            Backend::AwsLc => Mac::AwsLc(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                key,
            )),
        }
    }

    /// HMAC of `a || b`, truncated to the SRTP tag.
    #[inline]
    fn tag(&self, a: &[u8], b: &[u8]) -> [u8; TAG_LEN] {
        let mut out = [0u8; TAG_LEN];
        match self {
            Mac::RustCrypto(key) => {
                let mut m = key.clone();
                m.update(a);
                m.update(b);
                out.copy_from_slice(&m.finalize().into_bytes()[..TAG_LEN]);
            }
            Mac::Ring(key) => {
                let mut m = ring::hmac::Context::with_key(key);
                m.update(a);
                m.update(b);
                out.copy_from_slice(&m.sign().as_ref()[..TAG_LEN]);
            }
            #[cfg(feature = "aws-lc-rs")]
            Mac::AwsLc(key) => {
                let mut m = aws_lc_rs::hmac::Context::with_key(key);
                m.update(a);
                m.update(b);
                out.copy_from_slice(&m.sign().as_ref()[..TAG_LEN]);
            }
        }
        out
    }
}

/// An AES-128 key schedule for the counter-mode keystream.
enum Ctr {
    RustCrypto(Aes128Enc),
    #[cfg(feature = "aws-lc-rs")]
    AwsLc(aws_lc_rs::cipher::EncryptingKey),
}

impl Ctr {
    fn new(key: &[u8; 16], backend: Backend) -> Self {
        match backend {
            Backend::RustCrypto | Backend::Ring => Ctr::RustCrypto(Aes128Enc::new(key.into())),
            #[cfg(feature = "aws-lc-rs")]
            Backend::AwsLc => {
                use aws_lc_rs::cipher::{EncryptingKey, UnboundCipherKey, AES_128};
                // Invariant: a 16-byte key is an AES-128 key.
                let key = UnboundCipherKey::new(&AES_128, key).expect("16-byte AES key");
                Ctr::AwsLc(EncryptingKey::ctr(key).expect("AES-128 supports CTR"))
            }
        }
    }

    #[inline]
    fn apply(&self, iv: &[u8; 16], data: &mut [u8]) -> Result<(), SrtpError> {
        match self {
            Ctr::RustCrypto(aes) => {
                apply_keystream(aes, iv, data);
                Ok(())
            }
            #[cfg(feature = "aws-lc-rs")]
            Ctr::AwsLc(key) => {
                use aws_lc_rs::cipher::EncryptionContext;
                use aws_lc_rs::iv::FixedLength;
                key.less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from(*iv)))
                    .map(|_| ())
                    .map_err(|_| SrtpError::Malformed("AES-CTR refused the packet"))
            }
        }
    }
}

/// Keys of one of SRTP or SRTCP.
struct CmKeys {
    aes: Ctr,
    salt: [u8; SALT_LEN],
    mac: Mac,
}

impl CmKeys {
    fn new(master_key: &[u8; 16], master_salt: &[u8], labels: [u8; 3], backend: Backend) -> Self {
        let mut key = [0u8; 16];
        let mut auth = [0u8; 20];
        let mut salt = [0u8; SALT_LEN];
        kdf::derive(master_key, master_salt, labels[0], &mut key);
        kdf::derive(master_key, master_salt, labels[1], &mut auth);
        kdf::derive(master_key, master_salt, labels[2], &mut salt);
        Self {
            aes: Ctr::new(&key, backend),
            salt,
            mac: Mac::new(&auth, backend),
        }
    }

    /// IV of RFC 3711 §4.1.1: `(salt * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)`.
    #[inline]
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..SALT_LEN].copy_from_slice(&self.salt);
        for (d, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *d ^= s;
        }
        for (d, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *d ^= s;
        }
        iv
    }
}

/// XORs the AES-CM keystream starting at `iv` into `data`.
///
/// The counter is the low 16 bits of the IV, which are zero at the start;
/// a packet (at most 4,096 blocks) never carries into the salt bits.
pub(crate) fn apply_keystream(aes: &Aes128Enc, iv: &[u8; 16], data: &mut [u8]) {
    let mut blocks = [Block::default(); PAR_BLOCKS];
    let mut counter: u16 = 0;
    for chunk in data.chunks_mut(16 * PAR_BLOCKS) {
        let n = chunk.len().div_ceil(16);
        for b in &mut blocks[..n] {
            b.copy_from_slice(iv);
            b[14..16].copy_from_slice(&counter.to_be_bytes());
            counter = counter.wrapping_add(1);
        }
        aes.encrypt_blocks(&mut blocks[..n]);
        for (d, k) in chunk.chunks_mut(16).zip(&blocks[..n]) {
            for (x, y) in d.iter_mut().zip(k.iter()) {
                *x ^= y;
            }
        }
    }
}

/// Both halves of one direction's AES-CM/HMAC-SHA1 keys.
pub(crate) struct CmTransform {
    rtp: CmKeys,
    rtcp: CmKeys,
}

impl CmTransform {
    pub(crate) fn new(master_key: &[u8; 16], master_salt: &[u8], backend: Backend) -> Self {
        Self {
            rtp: CmKeys::new(
                master_key,
                master_salt,
                [LABEL_RTP_KEY, LABEL_RTP_AUTH, LABEL_RTP_SALT],
                backend,
            ),
            rtcp: CmKeys::new(
                master_key,
                master_salt,
                [LABEL_RTCP_KEY, LABEL_RTCP_AUTH, LABEL_RTCP_SALT],
                backend,
            ),
        }
    }

    /// Encrypts `buf[..len]`, an RTP packet, in place and writes the tag
    /// after it; `buf` has room for it. Returns the SRTP length.
    pub(crate) fn seal_rtp(
        &self,
        buf: &mut [u8],
        len: usize,
        hdr: &RtpHeader,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let iv = self.rtp.iv(hdr.ssrc, index);
        self.rtp.aes.apply(&iv, &mut buf[hdr.len..len])?;
        let roc = ((index >> 16) as u32).to_be_bytes();
        let tag = self.rtp.mac.tag(&buf[..len], &roc);
        buf[len..len + TAG_LEN].copy_from_slice(&tag);
        Ok(len + TAG_LEN)
    }

    /// Authenticates the SRTP packet `buf` and decrypts it in place.
    /// Returns the RTP length.
    pub(crate) fn open_rtp(
        &self,
        buf: &mut [u8],
        hdr: &RtpHeader,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let len = buf.len() - TAG_LEN;
        let roc = ((index >> 16) as u32).to_be_bytes();
        let tag = self.rtp.mac.tag(&buf[..len], &roc);
        if !bool::from(tag.ct_eq(&buf[len..])) {
            return Err(SrtpError::Authentication);
        }
        let iv = self.rtp.iv(hdr.ssrc, index);
        self.rtp.aes.apply(&iv, &mut buf[hdr.len..len])?;
        Ok(len)
    }

    /// Where the E flag and index sit in an SRTCP packet.
    pub(crate) fn rtcp_trailer_at(len: usize) -> Option<usize> {
        len.checked_sub(TAG_LEN + RTCP_TRAILER)
            .filter(|&at| at >= RTCP_CLEAR)
    }

    /// Protects `buf[..len]`, an RTCP compound packet, in place: encrypts
    /// it if `encrypt`, appends E flag and index, then the tag.
    pub(crate) fn seal_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
        encrypt: bool,
    ) -> Result<usize, SrtpError> {
        if encrypt {
            let iv = self.rtcp.iv(ssrc, u64::from(index));
            self.rtcp.aes.apply(&iv, &mut buf[RTCP_CLEAR..len])?;
        }
        let trailer = (index | (u32::from(encrypt) << 31)).to_be_bytes();
        buf[len..len + RTCP_TRAILER].copy_from_slice(&trailer);
        let end = len + RTCP_TRAILER;
        let tag = self.rtcp.mac.tag(&buf[..end], &[]);
        buf[end..end + TAG_LEN].copy_from_slice(&tag);
        Ok(end + TAG_LEN)
    }

    /// Authenticates the SRTCP packet `buf` and decrypts it in place if its
    /// E flag says so. Returns the RTCP length.
    pub(crate) fn open_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        index: u32,
        encrypted: bool,
    ) -> Result<usize, SrtpError> {
        let end = buf.len() - TAG_LEN;
        let tag = self.rtcp.mac.tag(&buf[..end], &[]);
        if !bool::from(tag.ct_eq(&buf[end..])) {
            return Err(SrtpError::Authentication);
        }
        let len = end - RTCP_TRAILER;
        if encrypted {
            let iv = self.rtcp.iv(ssrc, u64::from(index));
            self.rtcp.aes.apply(&iv, &mut buf[RTCP_CLEAR..len])?;
        }
        Ok(len)
    }
}
