//! Kernel receive stamps: when each datagram reached the socket.
//!
//! Transport-cc feedback tells a publisher's delay-based estimator when each
//! of its packets arrived. A backend that reads a batch after a scheduling
//! gap and stamps the whole batch with one `Instant::now()` reports the gap
//! as queueing and the batch as a burst, and the browser backs off. The
//! kernel stamps every datagram as it is received, before any of that, so
//! the arrival handed to the core is that stamp.
//!
//! `SO_TIMESTAMPNS` rather than `SO_TIMESTAMPING` with software receive
//! stamps: both take the same software stamp at the same point of the
//! receive path, but `SCM_TIMESTAMPNS` is one `timespec` (32 bytes of
//! control data per datagram) where `SCM_TIMESTAMPING` carries three (64),
//! and there is no hardware stamp to ask for on the sockets Weir uses.
//!
//! The stamp is on the wall clock (`CLOCK_REALTIME`); [`BatchClock`] moves
//! it onto the `Instant` timeline with one offset per receive batch.
use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::IoCounters;

/// Control-buffer bytes reserved per datagram: one `SCM_TIMESTAMPNS` (a
/// 16-byte `cmsghdr` and a 16-byte `timespec`), with room to spare so
/// another control message does not truncate it.
pub const CONTROL_LEN: usize = 64;

/// An arrival stamped further back than this is clamped to it. A datagram
/// does not wait a second in a socket buffer of a live core; an older stamp
/// means the wall clock was stepped between stamping and reading.
pub const MAX_STAMP_AGE: Duration = Duration::from_secs(1);

/// Size of `struct cmsghdr` on this target: `size_t` length, two `int`s.
const CMSG_HDR: usize = size_of::<usize>() + 2 * size_of::<i32>();
/// Control messages start at multiples of `size_t` (`CMSG_ALIGN`).
const CMSG_ALIGN: usize = size_of::<usize>();
/// Size of a 64-bit `struct timespec` (`tv_sec`, `tv_nsec`).
const TIMESPEC: usize = 2 * size_of::<i64>();

/// A kernel receive stamp: wall-clock time since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RxStamp(Duration);

impl RxStamp {
    /// A stamp at `since_epoch` after 1970-01-01 UTC.
    pub fn new(since_epoch: Duration) -> Self {
        Self(since_epoch)
    }

    /// Time since the Unix epoch.
    pub fn since_epoch(self) -> Duration {
        self.0
    }
}

/// Why a control buffer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CmsgError {
    /// A control message header claims fewer bytes than the header itself
    /// or more than the buffer holds.
    #[error("control message length out of bounds")]
    BadLength,
    /// An `SCM_TIMESTAMPNS` whose data is too short or not a valid time.
    #[error("malformed SCM_TIMESTAMPNS")]
    BadTimestamp,
}

/// Finds the `SCM_TIMESTAMPNS` in a control buffer as `recvmsg` fills it
/// (`msg_control`, `msg_controllen` bytes). `Ok(None)` when there is none.
///
/// Reads the bytes as they are, so it is safe on any input: the backends
/// hand it what the kernel wrote, the fuzz target anything.
pub fn parse_rx_stamp(control: &[u8]) -> Result<Option<RxStamp>, CmsgError> {
    let mut at = 0usize;
    // Fewer bytes than a header left: the kernel's CMSG_NXTHDR ends there too.
    while control.len().saturating_sub(at) >= CMSG_HDR {
        let h = &control[at..];
        let len = usize::from_ne_bytes(word(h, 0));
        let level = i32::from_ne_bytes(word(h, size_of::<usize>()));
        let kind = i32::from_ne_bytes(word(h, size_of::<usize>() + 4));
        if len < CMSG_HDR || len > h.len() {
            return Err(CmsgError::BadLength);
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
            let data = &h[CMSG_HDR..len];
            if data.len() < TIMESPEC {
                return Err(CmsgError::BadTimestamp);
            }
            let sec = i64::from_ne_bytes(word(data, 0));
            let nsec = i64::from_ne_bytes(word(data, 8));
            let (Ok(sec), Ok(nsec)) = (u64::try_from(sec), u32::try_from(nsec)) else {
                return Err(CmsgError::BadTimestamp);
            };
            if nsec >= 1_000_000_000 {
                return Err(CmsgError::BadTimestamp);
            }
            return Ok(Some(RxStamp(Duration::new(sec, nsec))));
        }
        // `len` fits the buffer, so this cannot overflow.
        at += len.next_multiple_of(CMSG_ALIGN);
    }
    Ok(None)
}

/// `N` bytes of `b` from `at`; the callers have checked the length.
fn word<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut w = [0u8; N];
    w.copy_from_slice(&b[at..at + N]);
    w
}

/// The wall clock and the monotonic clock read together once per receive
/// batch, which maps each datagram's stamp onto the core's `Instant`s.
#[derive(Debug, Clone, Copy)]
pub struct BatchClock {
    now: Instant,
    wall: Duration,
}

impl BatchClock {
    /// Reads both clocks (two vDSO calls, no syscall).
    pub fn read() -> Self {
        Self::at(
            Instant::now(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        )
    }

    /// A batch read at `now`, when the wall clock said `wall` (since the
    /// Unix epoch). For tests with simulated time.
    pub fn at(now: Instant, wall: Duration) -> Self {
        Self { now, wall }
    }

    /// When the batch was read.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The arrival of a datagram stamped `stamp`: never later than the
    /// batch, never more than [`MAX_STAMP_AGE`] before it, and the batch
    /// time itself without a stamp.
    #[inline]
    pub fn arrival(&self, stamp: Option<RxStamp>) -> Instant {
        self.place(stamp).0
    }

    /// The arrival and how it was found.
    #[inline]
    fn place(&self, stamp: Option<RxStamp>) -> (Instant, Placed) {
        let Some(s) = stamp else {
            return (self.now, Placed::Unstamped);
        };
        let Some(age) = self.wall.checked_sub(s.0) else {
            return (self.now, Placed::Clamped);
        };
        if age > MAX_STAMP_AGE {
            let at = self.now.checked_sub(MAX_STAMP_AGE).unwrap_or(self.now);
            return (at, Placed::Clamped);
        }
        match self.now.checked_sub(age) {
            Some(at) => (at, Placed::Stamped(age)),
            None => (self.now, Placed::Clamped),
        }
    }
}

/// How [`BatchClock::place`] found an arrival.
#[derive(Debug, Clone, Copy)]
enum Placed {
    Unstamped,
    Stamped(Duration),
    Clamped,
}

/// Arrivals of one receive batch, tallied locally and added to the
/// backend's counters once per batch rather than per datagram.
pub(crate) struct BatchArrivals {
    clock: BatchClock,
    unstamped: u64,
    clamped: u64,
    delay_us: u64,
}

impl BatchArrivals {
    /// Starts a batch read now.
    pub(crate) fn start() -> Self {
        Self {
            clock: BatchClock::read(),
            unstamped: 0,
            clamped: 0,
            delay_us: 0,
        }
    }

    /// When the batch was read: the core's `now` for every datagram in it.
    pub(crate) fn now(&self) -> Instant {
        self.clock.now
    }

    /// The arrival of a datagram with control data `control` (`None` when
    /// the backend has none for it).
    #[inline]
    pub(crate) fn arrival(&mut self, control: Option<&[u8]>) -> Instant {
        let stamp = control.and_then(|c| parse_rx_stamp(c).ok().flatten());
        let (at, placed) = self.clock.place(stamp);
        match placed {
            Placed::Unstamped => self.unstamped += 1,
            Placed::Clamped => self.clamped += 1,
            Placed::Stamped(age) => self.delay_us += age.as_micros() as u64,
        }
        at
    }

    /// Adds the batch's tallies to `io`.
    pub(crate) fn finish(&self, io: &IoCounters) {
        if self.unstamped > 0 {
            io.rx_unstamped.add(self.unstamped);
        }
        if self.clamped > 0 {
            io.rx_stamp_clamped.add(self.clamped);
        }
        if self.delay_us > 0 {
            io.rx_queue_delay_us.add(self.delay_us);
        }
    }
}

/// Asks the kernel to stamp each datagram `sock` receives
/// (`SO_TIMESTAMPNS`; read back with [`parse_rx_stamp`]). Also used by
/// weir-loadgen for its own latency figures.
pub fn enable(sock: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a live socket and a c_int option of the stated size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The control bytes `recvmsg` wrote into `hdr`'s buffer, at most
/// [`CONTROL_LEN`] (`msg_controllen` is `size_t` on glibc, `socklen_t` on musl).
#[allow(clippy::unnecessary_cast)]
pub(crate) fn control_len(hdr: &libc::msghdr) -> usize {
    (hdr.msg_controllen as usize).min(CONTROL_LEN)
}

/// A control buffer aligned for `cmsghdr`, one per receive slot.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct ControlBuf(pub(crate) [u8; CONTROL_LEN]);

impl ControlBuf {
    pub(crate) const ZERO: Self = Self([0; CONTROL_LEN]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One control message as the kernel lays it out.
    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let len = CMSG_HDR + data.len();
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(data);
        v.resize(len.next_multiple_of(CMSG_ALIGN), 0);
        v
    }

    fn timespec(sec: i64, nsec: i64) -> Vec<u8> {
        [sec.to_ne_bytes(), nsec.to_ne_bytes()].concat()
    }

    #[test]
    fn finds_the_stamp_after_other_messages() {
        let mut buf = cmsg(libc::IPPROTO_IP, libc::IP_TOS, &[0x2e, 0, 0, 0]);
        buf.extend(cmsg(
            libc::SOL_SOCKET,
            libc::SCM_TIMESTAMPNS,
            &timespec(1_700_000_000, 123),
        ));
        assert_eq!(
            parse_rx_stamp(&buf),
            Ok(Some(RxStamp::new(Duration::new(1_700_000_000, 123))))
        );
    }

    #[test]
    fn empty_or_unrelated_control_data_has_no_stamp() {
        assert_eq!(parse_rx_stamp(&[]), Ok(None));
        let buf = cmsg(libc::IPPROTO_IP, libc::IP_TOS, &[1]);
        assert_eq!(parse_rx_stamp(&buf), Ok(None));
    }

    #[test]
    fn bad_lengths_and_times_are_errors() {
        let mut zero_len = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &timespec(1, 1));
        zero_len[..size_of::<usize>()].copy_from_slice(&0usize.to_ne_bytes());
        assert_eq!(parse_rx_stamp(&zero_len), Err(CmsgError::BadLength));
        let mut too_long = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &timespec(1, 1));
        too_long[..size_of::<usize>()].copy_from_slice(&999usize.to_ne_bytes());
        assert_eq!(parse_rx_stamp(&too_long), Err(CmsgError::BadLength));
        let short = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &[0; 8]);
        assert_eq!(parse_rx_stamp(&short), Err(CmsgError::BadTimestamp));
        for (s, ns) in [(-1, 0), (1, -1), (1, 1_000_000_000)] {
            let buf = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &timespec(s, ns));
            assert_eq!(parse_rx_stamp(&buf), Err(CmsgError::BadTimestamp));
        }
    }

    #[test]
    fn arrival_is_clamped_to_the_batch_and_a_second_before() {
        let now = Instant::now();
        let wall = Duration::from_secs(1_700_000_000);
        let clock = BatchClock::at(now, wall);
        let stamp = |d: Duration| Some(RxStamp::new(d));
        assert_eq!(clock.arrival(None), now);
        assert_eq!(
            clock.arrival(stamp(wall - Duration::from_millis(20))),
            now - Duration::from_millis(20)
        );
        // From the future (a clock stepped back): the batch time.
        assert_eq!(clock.arrival(stamp(wall + Duration::from_secs(5))), now);
        // Hours old (a clock stepped forward): at most MAX_STAMP_AGE.
        assert_eq!(
            clock.arrival(stamp(wall - Duration::from_secs(3600))),
            now - MAX_STAMP_AGE
        );
    }

    proptest! {
        /// Any bytes: no panic, and a stamp found is a valid time.
        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some(s)) = parse_rx_stamp(&bytes) {
                prop_assert!(s.since_epoch().subsec_nanos() < 1_000_000_000);
            }
        }

        /// A stamp among any other well-formed messages is found, exactly.
        #[test]
        fn a_stamp_among_other_messages_is_found(
            before in proptest::collection::vec((0i32..300, 0i32..100, proptest::collection::vec(any::<u8>(), 0..24)), 0..3),
            sec in 0i64..4_000_000_000,
            nsec in 0i64..1_000_000_000,
        ) {
            let mut buf = Vec::new();
            for (level, kind, data) in &before {
                // Only SOL_SOCKET/SCM_TIMESTAMPNS is the stamp; skip it here.
                let level = if *level == libc::SOL_SOCKET { level + 1 } else { *level };
                buf.extend(cmsg(level, *kind, data));
            }
            buf.extend(cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &timespec(sec, nsec)));
            prop_assert_eq!(
                parse_rx_stamp(&buf),
                Ok(Some(RxStamp::new(Duration::new(sec as u64, nsec as u32))))
            );
        }

        /// The arrival never passes the batch time nor MAX_STAMP_AGE before it.
        #[test]
        fn arrival_stays_in_its_window(wall in 0u64..u64::from(u32::MAX), stamp in 0u64..u64::from(u32::MAX)) {
            let now = Instant::now() + Duration::from_secs(10);
            let clock = BatchClock::at(now, Duration::from_millis(wall));
            let a = clock.arrival(Some(RxStamp::new(Duration::from_millis(stamp))));
            prop_assert!(a <= now);
            prop_assert!(a >= now - MAX_STAMP_AGE);
        }
    }
}
