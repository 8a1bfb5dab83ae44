//! Building an extension block into a caller buffer, and rewriting one value in
//! place inside a packet.

use super::{ExtError, ExtForm, Extensions};
use crate::rtp::RtpHeader;

/// Writes extension elements into a caller-owned buffer.
///
/// The buffer receives only the block (what follows the 4-byte extension header);
/// [`WrittenBlock`] gives the profile and padded length for that header.
#[derive(Debug)]
pub struct ExtensionsWriter<'b> {
    form: ExtForm,
    buf: &'b mut [u8],
    len: usize,
}

/// The result of [`ExtensionsWriter::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenBlock {
    /// Profile for the extension header.
    pub profile: u16,
    /// Bytes written, a multiple of 4 (zero-padded).
    pub len: usize,
}

impl WrittenBlock {
    /// The length field of the extension header, in 32-bit words.
    pub fn length_words(&self) -> u16 {
        // `len` is bounded by the caller's buffer; blocks over 256 KiB are not RTP.
        u16::try_from(self.len / 4).unwrap_or(u16::MAX)
    }
}

impl<'b> ExtensionsWriter<'b> {
    /// Starts a block of the given form in `buf`.
    pub fn new(form: ExtForm, buf: &'b mut [u8]) -> Self {
        Self { form, buf, len: 0 }
    }

    /// Appends one element.
    pub fn push(&mut self, id: u8, value: &[u8]) -> Result<(), ExtError> {
        let header = match self.form {
            ExtForm::OneByte => {
                if !(1..=14).contains(&id) {
                    return Err(ExtError::BadId(id));
                }
                if value.is_empty() || value.len() > 16 {
                    return Err(ExtError::BadLength(value.len()));
                }
                1
            }
            ExtForm::TwoByte { .. } => {
                if id == 0 {
                    return Err(ExtError::BadId(id));
                }
                if value.len() > 255 {
                    return Err(ExtError::BadLength(value.len()));
                }
                2
            }
        };
        let end = self.len + header + value.len();
        let out = self
            .buf
            .get_mut(self.len..end)
            .ok_or(ExtError::BufferTooSmall)?;
        match self.form {
            // Lengths checked above: 1..=16 and 0..=255.
            ExtForm::OneByte => out[0] = (id << 4) | (value.len() - 1) as u8,
            ExtForm::TwoByte { .. } => {
                out[0] = id;
                out[1] = value.len() as u8;
            }
        }
        out[header..].copy_from_slice(value);
        self.len = end;
        Ok(())
    }

    /// Zero-pads to a 32-bit boundary and returns the header fields.
    pub fn finish(self) -> Result<WrittenBlock, ExtError> {
        let padded = self.len.next_multiple_of(4);
        self.buf
            .get_mut(self.len..padded)
            .ok_or(ExtError::BufferTooSmall)?
            .fill(0);
        Ok(WrittenBlock {
            profile: self.form.profile(),
            len: padded,
        })
    }
}

/// Overwrites the value of extension `id` in the RTP packet `packet` with `value`,
/// which must have the same length as the current value (no bytes move).
///
/// This is how a forwarder stamps its own transport-wide sequence number.
pub fn rewrite_in_place(packet: &mut [u8], id: u8, value: &[u8]) -> Result<(), ExtError> {
    let (range, offset) = {
        let h = RtpHeader::parse(packet)?;
        let profile = h.extension_profile().ok_or(ExtError::NotPresent(id))?;
        let exts = Extensions::parse(profile, h.extension_block())?;
        let range = exts.value_range(id).ok_or(ExtError::NotPresent(id))?;
        // Present because the profile is.
        let offset = h.extension_block_offset().ok_or(ExtError::NotPresent(id))?;
        (range, offset)
    };
    if range.len() != value.len() {
        return Err(ExtError::WrongSize {
            got: value.len(),
            expected: range.len(),
        });
    }
    packet
        .get_mut(offset + range.start..offset + range.end)
        .ok_or(ExtError::NotPresent(id))?
        .copy_from_slice(value);
    Ok(())
}
