//! What the kernel offers the IO backends, probed once per process.
//!
//! io_uring counts as available only when everything the backend uses works
//! end to end: ring setup (it fails under seccomp, in many containers, or
//! with `kernel.io_uring_disabled`), the enter timeout argument, the
//! `recvmsg`/`sendmsg`/poll opcodes, a registered provided-buffer ring and a
//! multishot `recvmsg` that really delivers a datagram on 127.0.0.1.
//! UDP GSO counts as available when `setsockopt(UDP_SEGMENT)` succeeds; a
//! device may still refuse it at send time, which the backends handle.
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

use super::slot::{SOL_UDP, UDP_SEGMENT};

/// The probe's findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// `Ok` when the io_uring backend can run, else why not.
    pub io_uring: Result<(), String>,
    /// `Ok` when UDP GSO (`UDP_SEGMENT`) is accepted, else why not.
    pub gso: Result<(), String>,
}

impl Features {
    /// Whether the io_uring backend can run.
    pub fn io_uring_available(&self) -> bool {
        self.io_uring.is_ok()
    }

    /// Whether UDP GSO can be used.
    pub fn gso_available(&self) -> bool {
        self.gso.is_ok()
    }
}

/// The features of this kernel and process, probed on first use.
pub fn features() -> &'static Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    FEATURES.get_or_init(|| Features {
        io_uring: super::uring::probe(),
        gso: probe_gso(),
    })
}

fn probe_gso() -> Result<(), String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("probe socket: {e}"))?;
    let seg: libc::c_int = 1200;
    // SAFETY: passes a live c_int of the stated size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            SOL_UDP,
            UDP_SEGMENT,
            (&seg as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "setsockopt(UDP_SEGMENT) refused: {} (Linux 4.18+)",
            std::io::Error::last_os_error()
        ))
    }
}
