//! Receiver Estimated Maximum Bitrate (draft-alvestrand-rmcat-remb): the
//! receive-side bandwidth estimate Weir sends to publishers that did not
//! negotiate transport-cc but did negotiate `goog-remb`.
//!
//! Wire format: PSFB (PT 206) FMT 15, media source 0, the ASCII
//! identifier "REMB", a count of SSRCs, the bitrate as a 6-bit exponent
//! and an 18-bit mantissa, then the SSRCs the estimate covers.

/// Writes a REMB packet from `sender_ssrc` saying `bitrate_bps` for
/// `ssrcs` (at most 255). Returns the length, or `None` if `out` is too
/// small.
pub fn write_remb(
    out: &mut [u8],
    sender_ssrc: u32,
    bitrate_bps: u64,
    ssrcs: &[u32],
) -> Option<usize> {
    let count = u8::try_from(ssrcs.len()).ok()?;
    let len = 20 + 4 * ssrcs.len();
    let out = out.get_mut(..len)?;
    out[0] = 0x80 | 15;
    out[1] = 206;
    out[2..4].copy_from_slice(&u16::try_from(len / 4 - 1).ok()?.to_be_bytes());
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    out[8..12].fill(0);
    out[12..16].copy_from_slice(b"REMB");
    // The smallest exponent whose mantissa fits 18 bits.
    let mut exp = 0u32;
    while (bitrate_bps >> exp) > 0x3_ffff {
        exp += 1;
    }
    let mantissa = (bitrate_bps >> exp) as u32;
    out[16] = count;
    out[17] = ((exp as u8) << 2) | ((mantissa >> 16) as u8 & 0x03);
    out[18..20].copy_from_slice(&(mantissa as u16).to_be_bytes());
    for (i, ssrc) in ssrcs.iter().enumerate() {
        out[20 + 4 * i..24 + 4 * i].copy_from_slice(&ssrc.to_be_bytes());
    }
    Some(len)
}

/// A parsed REMB: the bitrate and the SSRCs it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remb<'a> {
    /// The estimate, bit/s.
    pub bitrate_bps: u64,
    /// The SSRCs (4 bytes each).
    pub ssrcs: &'a [u8],
}

/// Reads the FCI of a PSFB FMT 15 packet (what follows the 12-byte
/// header) as a REMB; `None` if it is not one or is truncated.
pub fn parse_remb(fci: &[u8]) -> Option<Remb<'_>> {
    if fci.get(..4)? != b"REMB" {
        return None;
    }
    let count = usize::from(*fci.get(4)?);
    let exp = u32::from(fci.get(5)? >> 2);
    let mantissa = (u64::from(fci[5] & 0x03) << 16)
        | u64::from(u16::from_be_bytes([*fci.get(6)?, *fci.get(7)?]));
    let ssrcs = fci.get(8..8 + 4 * count)?;
    Some(Remb {
        bitrate_bps: mantissa.checked_shl(exp)?,
        ssrcs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_value_round_trips_through_the_walker() {
        let mut buf = [0u8; 64];
        let n = write_remb(&mut buf, 1, 1_500_000, &[11, 12]).unwrap();
        assert_eq!(n, 28);
        let item = super::super::walk(&buf[..n]).next().unwrap().unwrap();
        assert_eq!(
            item,
            super::super::RtcpItem::Other {
                packet_type: 206,
                fmt: 15
            }
        );
        let remb = parse_remb(&buf[12..n]).unwrap();
        // 1.5 Mbit/s needs exponent 3: the mantissa keeps 18 bits.
        assert_eq!(remb.bitrate_bps, 1_500_000 & !0x7);
        assert_eq!(remb.ssrcs, &[0, 0, 0, 11, 0, 0, 0, 12]);
        assert!(write_remb(&mut buf[..27], 1, 1, &[11, 12]).is_none());
    }

    proptest! {
        #[test]
        fn any_rate_round_trips_within_its_precision(bps in any::<u64>()) {
            let mut buf = [0u8; 24];
            let n = write_remb(&mut buf, 1, bps, &[5]).unwrap();
            let back = parse_remb(&buf[12..n]).unwrap().bitrate_bps;
            prop_assert!(back <= bps);
            prop_assert!(bps - back <= bps >> 17);
        }

        #[test]
        fn parsing_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_remb(&data);
        }
    }
}
