//! Waking a core's thread out of `ppoll` or `io_uring_enter` without a lock:
//! one eventfd per core, written at most once between two resets.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// An eventfd plus a flag that says a wake-up is already on its way, so a
/// burst of messages costs one `write(2)`, not one each.
///
/// Senders push their message first, then call [`Notify::wake`]. The core
/// calls [`Notify::reset`] when it sees the eventfd readable, then drains its
/// queue. `pending` is true only between a sender's `write` (or the moment it
/// is about to write) and the core's reset, so a message is either seen by
/// the drain after a reset or announced by a fresh `write`.
#[derive(Debug)]
pub(crate) struct Notify {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Notify {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            fd,
            pending: AtomicBool::new(false),
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes sure the core wakes up and drains its queue.
    pub(crate) fn wake(&self) {
        // SeqCst pairs with the swap in `reset`: the push before this call
        // is visible to the drain after the reset that observed `true`.
        if !self.pending.swap(true, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd. It can
            // only fail with EAGAIN when the counter is saturated, which
            // means a wake-up is pending anyway.
            unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Consumes the eventfd's count; call before draining the queue.
    pub(crate) fn reset(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN (nothing to
        // read) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        self.pending.swap(false, Ordering::SeqCst);
    }
}
