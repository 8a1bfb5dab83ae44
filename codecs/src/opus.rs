//! Opus packet TOC (RFC 6716 §3.1): mode, bandwidth, frame size, channel count and
//! frame count, plus a DTX hint.

use thiserror::Error;

/// Why an Opus packet is malformed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OpusError {
    /// The packet is empty, or a code-3 packet lacks its frame count byte.
    #[error("Opus packet truncated")]
    Truncated,
    /// A code-3 packet with zero frames or more than 120 ms of audio (RFC 6716 R5).
    #[error("invalid Opus frame count {0}")]
    BadFrameCount(u8),
}

/// Coding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpusMode {
    /// SILK only (speech).
    Silk,
    /// SILK and CELT.
    Hybrid,
    /// CELT only.
    Celt,
}

/// Audio bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpusBandwidth {
    /// 4 kHz.
    Narrowband,
    /// 6 kHz.
    Mediumband,
    /// 8 kHz.
    Wideband,
    /// 12 kHz.
    SuperWideband,
    /// 20 kHz.
    Fullband,
}

/// A parsed Opus packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpusToc {
    /// The 5-bit configuration number.
    pub config: u8,
    /// s: stereo.
    pub stereo: bool,
    /// c: the frame count code (0..=3).
    pub frame_count_code: u8,
    /// Number of frames in the packet.
    pub frame_count: u8,
    /// The packet is 1 or 2 bytes: DTX or comfort-noise, no speech to forward urgently.
    pub dtx: bool,
}

impl OpusToc {
    /// Parses the TOC byte and, for code 3, the frame count byte.
    pub fn parse(packet: &[u8]) -> Result<Self, OpusError> {
        let &toc = packet.first().ok_or(OpusError::Truncated)?;
        let code = toc & 0x03;
        let frame_count = match code {
            0 => 1,
            1 | 2 => 2,
            _ => (*packet.get(1).ok_or(OpusError::Truncated)?) & 0x3f,
        };
        let t = Self {
            config: toc >> 3,
            stereo: toc & 0x04 != 0,
            frame_count_code: code,
            frame_count,
            // libopus encodes a DTX frame as the TOC alone (or TOC + count byte).
            dtx: packet.len() <= 2,
        };
        if frame_count == 0 || t.duration_samples_48k() > 5760 {
            return Err(OpusError::BadFrameCount(frame_count));
        }
        Ok(t)
    }

    /// Coding mode from the configuration number.
    pub fn mode(&self) -> OpusMode {
        match self.config {
            0..=11 => OpusMode::Silk,
            12..=15 => OpusMode::Hybrid,
            _ => OpusMode::Celt,
        }
    }

    /// Audio bandwidth from the configuration number.
    pub fn bandwidth(&self) -> OpusBandwidth {
        match self.config {
            0..=3 | 16..=19 => OpusBandwidth::Narrowband,
            4..=7 => OpusBandwidth::Mediumband,
            8..=11 | 20..=23 => OpusBandwidth::Wideband,
            12..=13 | 24..=27 => OpusBandwidth::SuperWideband,
            _ => OpusBandwidth::Fullband,
        }
    }

    /// Duration of one frame in 48 kHz samples (120 = 2.5 ms … 2880 = 60 ms).
    pub fn frame_samples_48k(&self) -> u32 {
        const SILK: [u32; 4] = [480, 960, 1920, 2880];
        const HYBRID: [u32; 2] = [480, 960];
        const CELT: [u32; 4] = [120, 240, 480, 960];
        let c = usize::from(self.config);
        match self.config {
            0..=11 => SILK[c % 4],
            12..=15 => HYBRID[c % 2],
            _ => CELT[c % 4],
        }
    }

    /// Duration of the whole packet in 48 kHz samples.
    pub fn duration_samples_48k(&self) -> u32 {
        self.frame_samples_48k() * u32::from(self.frame_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc6716_toc_examples() {
        // config 31 (CELT FB 20 ms), mono, code 0.
        let t = OpusToc::parse(&[0xf8, 0xff, 0xfe]).unwrap();
        assert_eq!((t.config, t.stereo, t.frame_count), (31, false, 1));
        assert_eq!(
            (t.mode(), t.bandwidth()),
            (OpusMode::Celt, OpusBandwidth::Fullband)
        );
        assert_eq!(t.duration_samples_48k(), 960);
        assert!(!t.dtx);
        // config 1 (SILK NB 20 ms), stereo, code 1: two frames.
        let t = OpusToc::parse(&[0x0d, 0, 0]).unwrap();
        assert_eq!(
            (t.stereo, t.frame_count, t.duration_samples_48k()),
            (true, 2, 1920)
        );
        // config 13 (Hybrid SWB 20 ms), code 3 with 3 frames.
        let t = OpusToc::parse(&[0x6b, 0x03, 0, 0]).unwrap();
        assert_eq!(
            (t.mode(), t.frame_count, t.duration_samples_48k()),
            (OpusMode::Hybrid, 3, 2880)
        );
        // config 16 (CELT NB 2.5 ms).
        assert_eq!(
            OpusToc::parse(&[0x80, 0, 0]).unwrap().frame_samples_48k(),
            120
        );
    }

    #[test]
    fn dtx_and_errors() {
        assert!(OpusToc::parse(&[0xf8]).unwrap().dtx);
        assert_eq!(OpusToc::parse(&[]), Err(OpusError::Truncated));
        assert_eq!(OpusToc::parse(&[0x03]), Err(OpusError::Truncated));
        assert_eq!(
            OpusToc::parse(&[0x03, 0x00]),
            Err(OpusError::BadFrameCount(0))
        );
        // 60 ms SILK frames: 3 frames = 180 ms > 120 ms.
        assert_eq!(
            OpusToc::parse(&[0x1b, 0x03]),
            Err(OpusError::BadFrameCount(3))
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..8)) {
            if let Ok(t) = OpusToc::parse(&bytes) {
                prop_assert!(t.duration_samples_48k() <= 5760);
            }
        }
    }
}
