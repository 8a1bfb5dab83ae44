//! The raw ceiling: how many 1200-byte datagrams one core can push through
//! `sendmmsg` (64 distinct buffers per call) to loopback receivers, with
//! nothing else to do.
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cpu::{pin, thread_cpu};
use crate::sink::Sink;

const BATCH: usize = 64;
const LEN: usize = 1200;
const SENDER: &str = "weir-raw-tx";

/// What to measure.
#[derive(Debug, Clone)]
pub struct RawConfig {
    /// Receiver sockets, sent to round robin.
    pub receivers: usize,
    /// Measurement time.
    pub seconds: f64,
    /// Send each receiver's share of a batch as one UDP GSO message.
    pub gso: bool,
    /// Core the sender is pinned to (receivers use the last core).
    pub sender_core: usize,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct RawResult {
    /// Datagrams sent in the window.
    pub sent: u64,
    /// Datagrams the receivers got in the window.
    pub received: u64,
    /// Wall time of the window.
    pub wall: Duration,
    /// CPU time of the sending thread in the window.
    pub cpu: Duration,
}

impl RawResult {
    /// Datagrams per wall-clock second.
    pub fn pps_wall(&self) -> f64 {
        self.sent as f64 / self.wall.as_secs_f64()
    }

    /// Datagrams per CPU-second of the sending thread.
    pub fn pps_cpu(&self) -> f64 {
        self.sent as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

fn storage(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let SocketAddr::V4(a) = addr else {
        panic!("IPv4 loopback only")
    };
    // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
    let sin = unsafe { &mut *(&mut st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = a.port().to_be();
    sin.sin_addr = libc::in_addr {
        s_addr: u32::from_ne_bytes(a.ip().octets()),
    };
    (
        st,
        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
    )
}

/// Runs the raw ceiling.
pub fn run(cfg: &RawConfig) -> RawResult {
    let receivers: Vec<UdpSocket> = (0..cfg.receivers.max(1))
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind receiver"))
        .collect();
    let addrs: Vec<SocketAddr> = receivers.iter().map(|s| s.local_addr().unwrap()).collect();
    let sink = Sink::start(receivers, crate::cpu::cores() - 1, "weir-raw-rx");
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, st2, gso, core) = (sent.clone(), stop.clone(), cfg.gso, cfg.sender_core);
    let sender = std::thread::Builder::new()
        .name(SENDER.into())
        .spawn(move || {
            pin(core);
            send_loop(&addrs, gso, &s2, &st2);
        })
        .expect("spawn sender");
    std::thread::sleep(Duration::from_millis(300));
    let (s0, r0, c0, t0) = (
        sent.load(Ordering::Relaxed),
        sink.received(),
        thread_cpu(SENDER),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(cfg.seconds));
    let (s1, r1, c1, t1) = (
        sent.load(Ordering::Relaxed),
        sink.received(),
        thread_cpu(SENDER),
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    sink.stop();
    RawResult {
        sent: s1 - s0,
        received: r1 - r0,
        wall: t1 - t0,
        cpu: c1
            .unwrap_or_default()
            .saturating_sub(c0.unwrap_or_default()),
    }
}

fn send_loop(addrs: &[SocketAddr], gso: bool, sent: &AtomicU64, stop: &AtomicBool) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    // 64 distinct buffers, as a forwarder's batch would be, not one hot one.
    let payloads: Vec<Vec<u8>> = (0..BATCH).map(|i| vec![i as u8; LEN]).collect();
    let names: Vec<(libc::sockaddr_storage, libc::socklen_t)> =
        addrs.iter().map(|a| storage(*a)).collect();
    // One message per datagram, or (GSO) one per receiver holding its share.
    let messages = if gso { addrs.len().min(BATCH) } else { BATCH };
    let per_msg = BATCH / messages;
    let mut iov: Vec<libc::iovec> = (0..messages * per_msg)
        .map(|i| libc::iovec {
            iov_base: payloads[i].as_ptr() as *mut libc::c_void,
            iov_len: LEN,
        })
        .collect();
    let mut cmsg = vec![[0u64; 4]; messages];
    let mut names = names;
    // SAFETY: all-zero is a valid mmsghdr.
    let mut msgs: Vec<libc::mmsghdr> = (0..messages)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    let n_names = names.len();
    for (i, m) in msgs.iter_mut().enumerate() {
        let (name, len) = &mut names[i % n_names];
        m.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        m.msg_hdr.msg_namelen = *len;
        m.msg_hdr.msg_iov = iov[i * per_msg..].as_mut_ptr();
        m.msg_hdr.msg_iovlen = per_msg as _;
        if gso && per_msg > 1 {
            m.msg_hdr.msg_control = cmsg[i].as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE is arithmetic; the control buffer holds 32 bytes.
            unsafe {
                m.msg_hdr.msg_controllen = libc::CMSG_SPACE(2) as _;
                let c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                (*c).cmsg_level = 17; // SOL_UDP
                (*c).cmsg_type = 103; // UDP_SEGMENT
                (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), LEN as u16);
            }
        }
    }
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: msgs point at live names, iovecs, control data and payload.
        let r = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), messages as u32, 0) };
        if r > 0 {
            sent.fetch_add(r as u64 * per_msg as u64, Ordering::Relaxed);
        } else {
            let mut p = libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one live pollfd.
            unsafe { libc::poll(&mut p, 1, 10) };
        }
    }
}
