//! Several relay datagrams in one QUIC datagram.
//!
//! `0x02 | (length (u16) | record)+`, where each record is a datagram of
//! [`super::datagram`] (RTP or feedback), never another bundle. A sender
//! bundles only what it already has queued, so bundling adds no latency;
//! it saves quinn and the kernel one QUIC packet (its encryption, its
//! acknowledgement, its system call share) per record beyond the first.
//! Only a peer that announced [`super::control::capabilities::BUNDLE`] in
//! its hello is sent bundles.
//!
//! [`split`] is the receive side: it checks the framing of the whole
//! datagram first, so the [`Records`] it returns cannot fail half way.
use super::ProtoError;

/// Type byte of a bundle (the first byte of an RTP datagram is 0, of a
/// feedback datagram 1).
pub const BUNDLE_TYPE: u8 = 2;
/// Bytes a bundle adds before its first record: the type byte and the
/// first record's length.
pub const BUNDLE_HEADER_LEN: usize = 1 + RECORD_PREFIX_LEN;
/// Bytes before each record: its length.
pub const RECORD_PREFIX_LEN: usize = 2;

/// The length prefix of a record of `len` bytes.
pub fn record_prefix(len: usize) -> Result<[u8; RECORD_PREFIX_LEN], ProtoError> {
    match u16::try_from(len) {
        Ok(0) => Err(ProtoError::Invalid("empty bundle record")),
        Ok(n) => Ok(n.to_be_bytes()),
        Err(_) => Err(ProtoError::TooLarge("bundle record")),
    }
}

/// The records of a received datagram, framing checked: a bundle's
/// records, or the datagram itself when it is not a bundle.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    bundled: bool,
}

/// Splits a received datagram into its records. A datagram that is not a
/// bundle is one record (parsed later by [`super::datagram::Datagram`]).
/// A bundle must hold at least one record, each of at least one byte,
/// none of them a bundle, and nothing after the last.
pub fn split(datagram: &[u8]) -> Result<Records<'_>, ProtoError> {
    match datagram.split_first() {
        None => Err(ProtoError::Truncated("datagram type")),
        Some((&BUNDLE_TYPE, body)) => {
            if body.is_empty() {
                return Err(ProtoError::Truncated("bundle record"));
            }
            let mut rest = body;
            while !rest.is_empty() {
                let Some((len, after)) = rest.split_first_chunk::<RECORD_PREFIX_LEN>() else {
                    return Err(ProtoError::Truncated("bundle record length"));
                };
                let len = usize::from(u16::from_be_bytes(*len));
                if len == 0 {
                    return Err(ProtoError::Invalid("empty bundle record"));
                }
                let Some(record) = after.get(..len) else {
                    return Err(ProtoError::Truncated("bundle record"));
                };
                if record[0] == BUNDLE_TYPE {
                    return Err(ProtoError::Invalid("bundle inside a bundle"));
                }
                rest = &after[len..];
            }
            Ok(Records {
                rest: body,
                bundled: true,
            })
        }
        Some(_) => Ok(Records {
            rest: datagram,
            bundled: false,
        }),
    }
}

impl Records<'_> {
    /// Whether the datagram was a bundle.
    pub fn bundled(&self) -> bool {
        self.bundled
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        if !self.bundled {
            return Some(std::mem::take(&mut self.rest));
        }
        // `split` checked every prefix and length; a failure here would
        // be a bug, and ends the iteration rather than panic.
        let (len, after) = self.rest.split_first_chunk::<RECORD_PREFIX_LEN>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        let record = after.get(..len)?;
        self.rest = &after[len..];
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a bundle the way a sender does.
    fn bundle(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![BUNDLE_TYPE];
        for r in records {
            out.extend_from_slice(&record_prefix(r.len()).unwrap());
            out.extend_from_slice(r);
        }
        out
    }

    fn record() -> impl Strategy<Value = Vec<u8>> {
        // First byte: an RTP or feedback type, never a bundle.
        (0u8..2, proptest::collection::vec(any::<u8>(), 0..1400)).prop_map(|(t, mut body)| {
            body.insert(0, t);
            body
        })
    }

    proptest! {
        #[test]
        fn bundles_split_into_their_records(records in proptest::collection::vec(record(), 1..12)) {
            let b = bundle(&records);
            let split = split(&b).unwrap();
            prop_assert!(split.bundled());
            prop_assert_eq!(split.collect::<Vec<_>>(), records.iter().map(Vec::as_slice).collect::<Vec<_>>());
        }

        #[test]
        fn any_cut_bundle_is_refused(records in proptest::collection::vec(record(), 1..5), cut in any::<prop::sample::Index>()) {
            let b = bundle(&records);
            let cut = cut.index(b.len());
            // Every proper prefix either ends exactly after a record (a
            // shorter valid bundle) or is refused; never a panic.
            let boundaries: Vec<usize> = records.iter().scan(1, |at, r| {
                *at += RECORD_PREFIX_LEN + r.len();
                Some(*at)
            }).collect();
            prop_assert_eq!(split(&b[..cut]).is_ok(), boundaries.contains(&cut));
        }

        #[test]
        fn a_plain_datagram_is_one_record(d in record()) {
            let split = split(&d).unwrap();
            prop_assert!(!split.bundled());
            prop_assert_eq!(split.collect::<Vec<_>>(), vec![d.as_slice()]);
        }

        #[test]
        fn garbage_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(records) = split(&buf) {
                let total: usize = records.clone().map(|r| r.len()).sum();
                prop_assert!(total <= buf.len());
                prop_assert!(records.clone().all(|r| !r.is_empty() && r[0] != BUNDLE_TYPE));
            }
        }
    }

    #[test]
    fn malformed_bundles_are_refused() {
        assert!(split(&[]).is_err());
        assert!(split(&[BUNDLE_TYPE]).is_err());
        assert!(split(&[BUNDLE_TYPE, 0, 0]).is_err());
        assert!(split(&[BUNDLE_TYPE, 0, 1]).is_err());
        assert!(split(&[BUNDLE_TYPE, 0, 1, BUNDLE_TYPE]).is_err());
        assert!(split(&[BUNDLE_TYPE, 0, 1, 0, 0]).is_err());
        assert_eq!(split(&[BUNDLE_TYPE, 0, 1, 0]).unwrap().count(), 1);
        assert!(record_prefix(0).is_err());
        assert!(record_prefix(70_000).is_err());
    }
}
