//! The SRTP key derivation function (RFC 3711 §4.3), with a key derivation
//! rate of zero: session keys are derived once, at setup.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128Enc;

/// Labels of RFC 3711 §4.3.2 (and RFC 7714 §11, which reuses them).
pub(crate) const LABEL_RTP_KEY: u8 = 0x00;
pub(crate) const LABEL_RTP_AUTH: u8 = 0x01;
pub(crate) const LABEL_RTP_SALT: u8 = 0x02;
pub(crate) const LABEL_RTCP_KEY: u8 = 0x03;
pub(crate) const LABEL_RTCP_AUTH: u8 = 0x04;
pub(crate) const LABEL_RTCP_SALT: u8 = 0x05;

/// Fills `out` with the AES-CM PRF output for `label` (RFC 3711 §4.3.3).
///
/// The PRF input is the 112-bit value `master_salt XOR (label || r)` times
/// 2^16, r being 0. A 96-bit GCM master salt (RFC 7714 §11) is padded with
/// zeros on the right to 112 bits, as every deployed stack does.
pub(crate) fn derive(master_key: &[u8; 16], master_salt: &[u8], label: u8, out: &mut [u8]) {
    debug_assert!(master_salt.len() <= 14);
    let aes = Aes128Enc::new(master_key.into());
    let mut x = [0u8; 16];
    x[..master_salt.len()].copy_from_slice(master_salt);
    // key_id = label || r is 56 bits, right-aligned in the 112-bit salt.
    x[7] ^= label;
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = x;
        // The low 16 bits count the output blocks.
        block[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        let mut b = block.into();
        aes.encrypt_block(&mut b);
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}
