//! MSB-first bit reader and writer with the AV1 `f(n)` and `ns(n)` codings, as the
//! Dependency Descriptor syntax (AV1 RTP spec appendix A) uses them.

use super::dependency_descriptor::DdError;

/// Reads bits from a borrowed buffer; running past its end is an error, not a panic.
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn bit(&mut self) -> Result<bool, DdError> {
        let byte = *self.data.get(self.pos / 8).ok_or(DdError::Truncated)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(b == 1)
    }

    /// `f(n)` for `n <= 32`.
    pub(crate) fn f(&mut self, n: u32) -> Result<u32, DdError> {
        debug_assert!(n <= 32);
        let mut v: u32 = 0;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Ok(v)
    }

    /// `ns(n)`: a value in `0..n` in `w - 1` or `w` bits, where `w` is the bit length of `n`.
    pub(crate) fn ns(&mut self, n: u32) -> Result<u32, DdError> {
        let w = 32 - n.leading_zeros();
        if w == 0 {
            return Ok(0);
        }
        let m = (1u32 << w) - n;
        let v = self.f(w - 1)?;
        if v < m {
            return Ok(v);
        }
        let extra = u32::from(self.bit()?);
        Ok((v << 1) - m + extra)
    }
}

/// Writes bits into a caller buffer; running past its end is an error.
#[derive(Debug)]
pub(crate) struct BitWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> BitWriter<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn bit(&mut self, b: bool) -> Result<(), DdError> {
        let byte = self
            .buf
            .get_mut(self.pos / 8)
            .ok_or(DdError::BufferTooSmall)?;
        let mask = 1u8 << (7 - self.pos % 8);
        if b {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
        self.pos += 1;
        Ok(())
    }

    /// `f(n)`: the low `n` bits of `v`, MSB first.
    pub(crate) fn f(&mut self, v: u32, n: u32) -> Result<(), DdError> {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1)?;
        }
        Ok(())
    }

    /// `ns(n)` for `v < n`; the inverse of [`BitReader::ns`].
    pub(crate) fn ns(&mut self, v: u32, n: u32) -> Result<(), DdError> {
        let w = 32 - n.leading_zeros();
        if w == 0 {
            return Ok(());
        }
        if v >= n {
            return Err(DdError::Invalid("ns value out of range"));
        }
        let m = (1u32 << w) - n;
        if v < m {
            self.f(v, w - 1)
        } else {
            self.f((v + m) >> 1, w - 1)?;
            self.bit((v + m) & 1 == 1)
        }
    }

    /// Zero-fills to a byte boundary and returns the bytes written.
    pub(crate) fn finish(mut self) -> Result<usize, DdError> {
        while self.pos % 8 != 0 {
            self.bit(false)?;
        }
        Ok(self.pos / 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ns_matches_spec_table() {
        // ns(5): w = 3, m = 3; values 0..3 take 2 bits, 3 and 4 take 3 bits.
        let mut buf = [0u8; 4];
        let mut w = BitWriter::new(&mut buf);
        for v in 0..5 {
            w.ns(v, 5).unwrap();
        }
        let len = w.finish().unwrap();
        assert_eq!(len, 2); // 2+2+2+3+3 = 12 bits
        let mut r = BitReader::new(&buf);
        for v in 0..5 {
            assert_eq!(r.ns(5).unwrap(), v);
        }
    }

    proptest! {
        #[test]
        fn ns_roundtrip(n in 1u32..100_000, v: u32) {
            let v = v % n;
            let mut buf = [0u8; 8];
            let mut w = BitWriter::new(&mut buf);
            w.ns(v, n).unwrap();
            w.finish().unwrap();
            prop_assert_eq!(BitReader::new(&buf).ns(n).unwrap(), v);
        }
    }
}
