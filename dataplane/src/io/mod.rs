//! The socket side of a data-plane core: two IO backends behind one small
//! interface, chosen at start by feature detection.
//!
//! - [`uring`]: io_uring with a multishot `recvmsg` on a registered
//!   provided-buffer ring, and sends as a batch of `sendmsg` SQEs submitted
//!   with the same `io_uring_enter` that waits for the next completion.
//! - [`mmsg`]: `recvmmsg`/`sendmmsg` on a non-blocking socket, waiting in
//!   `ppoll` on the socket and the core's eventfd.
//!
//! Both group equal-size datagrams to one destination into a single UDP GSO
//! send (`UDP_SEGMENT`) when the kernel allows it, and fall back to one
//! datagram per message (counted) when it refuses.
//!
//! Both ask the kernel to stamp every datagram on receipt (`SO_TIMESTAMPNS`,
//! see [`stamp`]) and hand the core that stamp as the datagram's arrival, so
//! transport-cc feedback reports when packets reached the host, not when a
//! busy core got round to reading them.
//!
//! Every syscall of the data plane lives under this module. Buffers are
//! allocated once when a backend starts and never grow.
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::core::Core;
use crate::counters::Counter;

pub mod detect;
pub(crate) mod mmsg;
pub(crate) mod slot;
pub(crate) mod sockaddr;
pub mod stamp;
#[cfg(test)]
mod tests;
pub(crate) mod uring;
pub(crate) mod wake;

/// Which IO backend a data plane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackendChoice {
    /// io_uring when [`detect::features`] finds it usable, else mmsg.
    #[default]
    Auto,
    /// io_uring; starting fails with the detection's reason if it is not usable.
    IoUring,
    /// `recvmmsg`/`sendmmsg`, available on every Linux.
    Mmsg,
}

impl fmt::Display for IoBackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoBackendChoice::Auto => "auto",
            IoBackendChoice::IoUring => "io-uring",
            IoBackendChoice::Mmsg => "mmsg",
        })
    }
}

impl std::str::FromStr for IoBackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(IoBackendChoice::Auto),
            "io-uring" | "io_uring" | "uring" => Ok(IoBackendChoice::IoUring),
            "mmsg" => Ok(IoBackendChoice::Mmsg),
            other => Err(format!(
                "unknown IO backend {other:?} (auto, io-uring, mmsg)"
            )),
        }
    }
}

/// Tuning of the IO backends, each switch there so that benchmarks can
/// measure it against its alternative. Build from [`IoOptions::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IoOptions {
    /// Group datagrams to one destination into UDP GSO sends (used only
    /// where the kernel accepts `UDP_SEGMENT`).
    pub gso: bool,
    /// io_uring: one multishot `recvmsg` instead of a set of single-shot
    /// ones re-armed after each datagram.
    pub multishot_recv: bool,
}

impl Default for IoOptions {
    fn default() -> Self {
        Self {
            gso: true,
            multishot_recv: true,
        }
    }
}

/// Name of the io_uring backend, as [`crate::DataPlane::backend_name`] gives it.
pub const IO_URING: &str = "io_uring";
/// Name of the recvmmsg/sendmmsg backend.
pub const MMSG: &str = "mmsg";

/// Counters of one core's IO backend (batching, GSO, socket errors). Packet
/// and byte totals stay in [`crate::counters::CoreCounters`].
#[derive(Debug, Default)]
pub struct IoCounters {
    /// Receive batches handed to the core (a `recvmmsg` call or one pass
    /// over the completion queue that held datagrams).
    pub rx_batches: Counter,
    /// Datagrams in those batches; `rx_batch_datagrams / rx_batches` is the
    /// mean receive batch.
    pub rx_batch_datagrams: Counter,
    /// Datagrams dropped because they did not fit a receive buffer.
    pub rx_truncated: Counter,
    /// Receive errors reported by the socket (for example ICMP unreachable).
    pub rx_errors: Counter,
    /// Times the provided-buffer ring ran dry (io_uring `ENOBUFS`).
    pub rx_no_buffers: Counter,
    /// Datagrams without a kernel receive stamp (`SO_TIMESTAMPNS` refused
    /// or its control message missing or malformed): their arrival is the
    /// time the batch was read.
    pub rx_unstamped: Counter,
    /// Datagrams whose stamp was later than the batch was read or more than
    /// [`stamp::MAX_STAMP_AGE`] before it (a wall-clock step), and clamped.
    pub rx_stamp_clamped: Counter,
    /// Microseconds datagrams waited between their kernel stamp and the core
    /// reading them, summed; over `rx_batch_datagrams - rx_unstamped` it is
    /// the mean receive queueing delay.
    pub rx_queue_delay_us: Counter,
    /// Send submissions (`sendmmsg` calls, or turns that queued `sendmsg` SQEs).
    pub tx_batches: Counter,
    /// Messages sent (a GSO message counts once).
    pub tx_messages: Counter,
    /// Messages that carried more than one segment with `UDP_SEGMENT`.
    pub tx_gso_messages: Counter,
    /// Datagrams sent inside those GSO messages.
    pub tx_gso_segments: Counter,
    /// Times the kernel refused a GSO send, after which GSO is off for the core.
    pub gso_fallbacks: Counter,
    /// Sends that found the socket buffer full and had to wait.
    pub tx_would_block: Counter,
    /// Wake-ups through the core's eventfd (commands, cross-core messages).
    pub wakeups: Counter,
    /// Loop turns that waited in the kernel.
    pub waits: Counter,
}

impl IoCounters {
    /// Every counter with its name, for exporters.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("rx_batches", self.rx_batches.get()),
            ("rx_batch_datagrams", self.rx_batch_datagrams.get()),
            ("rx_truncated", self.rx_truncated.get()),
            ("rx_errors", self.rx_errors.get()),
            ("rx_no_buffers", self.rx_no_buffers.get()),
            ("rx_unstamped", self.rx_unstamped.get()),
            ("rx_stamp_clamped", self.rx_stamp_clamped.get()),
            ("rx_queue_delay_us", self.rx_queue_delay_us.get()),
            ("tx_batches", self.tx_batches.get()),
            ("tx_messages", self.tx_messages.get()),
            ("tx_gso_messages", self.tx_gso_messages.get()),
            ("tx_gso_segments", self.tx_gso_segments.get()),
            ("gso_fallbacks", self.gso_fallbacks.get()),
            ("tx_would_block", self.tx_would_block.get()),
            ("wakeups", self.wakeups.get()),
            ("waits", self.waits.get()),
        ]
    }
}

/// Largest datagram a receive buffer holds; longer ones are dropped and
/// counted in [`IoCounters::rx_truncated`].
pub const MAX_DATAGRAM: usize = 2048;

/// The interface between the driver loop and one IO backend.
///
/// # Calling order
/// Each loop turn the driver calls [`Backend::send`] once (after commands and
/// timers ran), then [`Backend::receive`] once, which may wait in the kernel
/// until a datagram arrives, the core's eventfd is written, a send
/// completes or `deadline` passes.
pub(crate) trait Backend {
    /// The backend's name, for logs and [`crate::DataPlane::backend_name`].
    fn name(&self) -> &'static str;

    /// Takes the datagrams `core` has ready and sends (or queues) them as
    /// batches. Datagrams the backend has no room for stay in `core` for the
    /// next turn.
    fn send(&mut self, core: &mut Core);

    /// Hands each received datagram to [`Core::handle_datagram`]. Waits in
    /// the kernel only when `block` is set and nothing is ready, at most
    /// until `deadline`. Returns whether the core's eventfd fired, so the
    /// driver resets it and drains its mailbox.
    fn receive(&mut self, core: &mut Core, block: bool, deadline: Instant)
        -> std::io::Result<bool>;
}

/// The shared parts every backend gets: the counters it writes.
pub(crate) struct BackendShared {
    pub(crate) io: Arc<IoCounters>,
    /// GSO configured and detected.
    pub(crate) gso: bool,
    pub(crate) multishot_recv: bool,
}

/// Socket buffer size asked for (the kernel caps it at `net.core.*mem_max`).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// Best-effort larger socket buffers, so a burst (a keyframe fanned out to
/// many subscribers) does not overflow them between two loop turns.
pub(crate) fn tune_socket(sock: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: passes a live c_int of the stated size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&SOCKET_BUFFER as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            tracing::debug!(
                "socket buffer size not raised: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
