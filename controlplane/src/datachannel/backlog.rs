//! The bound on what one subscriber may have waiting: messages queued in
//! Weir for its channel plus bytes its SCTP stream has not had
//! acknowledged yet.
use std::sync::atomic::{AtomicUsize, Ordering};

/// What to do with a message for a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Queue it.
    Send,
    /// Drop it and count the drop (partially reliable channels).
    Drop,
    /// Close the subscriber (reliable channels): it cannot keep up, and
    /// dropping would break the channel's promise.
    Close,
}

/// The decision, given what is waiting and the bound.
pub(crate) fn decide(waiting: usize, len: usize, limit: usize, reliable: bool) -> Admit {
    if waiting.saturating_add(len) <= limit {
        Admit::Send
    } else if reliable {
        Admit::Close
    } else {
        Admit::Drop
    }
}

/// Bytes queued in Weir for one subscriber, between the publisher's read
/// loop and the subscriber's writer.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    queued: AtomicUsize,
}

impl Backlog {
    /// Decides on a message of `len` bytes while `in_sctp` bytes wait in
    /// the SCTP stream, and books it when admitted.
    pub(crate) fn admit(&self, len: usize, in_sctp: usize, limit: usize, reliable: bool) -> Admit {
        let verdict = decide(
            self.queued.load(Ordering::Relaxed) + in_sctp,
            len,
            limit,
            reliable,
        );
        if verdict == Admit::Send {
            self.queued.fetch_add(len, Ordering::Relaxed);
        }
        verdict
    }

    /// A message left Weir's queue (written to SCTP, or discarded).
    pub(crate) fn release(&self, len: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(len))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let cases = [
            // waiting, len, limit, reliable, verdict
            (0, 10, 10, true, Admit::Send),
            (0, 10, 10, false, Admit::Send),
            (1, 10, 10, true, Admit::Close),
            (1, 10, 10, false, Admit::Drop),
            (0, 11, 10, false, Admit::Drop),
            (usize::MAX, 1, 10, true, Admit::Close),
            (5, 0, 5, true, Admit::Send),
        ];
        for (waiting, len, limit, reliable, want) in cases {
            assert_eq!(
                decide(waiting, len, limit, reliable),
                want,
                "{waiting} {len} {limit} {reliable}"
            );
        }
    }

    #[test]
    fn backlog_books_and_releases() {
        let b = Backlog::default();
        assert_eq!(b.admit(6, 0, 10, false), Admit::Send);
        assert_eq!(b.admit(6, 0, 10, false), Admit::Drop);
        assert_eq!(b.admit(4, 0, 10, true), Admit::Send);
        assert_eq!(b.admit(1, 0, 10, true), Admit::Close);
        b.release(6);
        assert_eq!(b.admit(1, 4, 10, true), Admit::Send);
        b.release(100);
        assert_eq!(b.admit(10, 0, 10, true), Admit::Send);
    }
}
