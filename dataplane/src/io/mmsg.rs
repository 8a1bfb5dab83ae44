//! The portable backend: `recvmmsg`/`sendmmsg` on a non-blocking socket,
//! waiting in `ppoll(2)` on the socket and the core's eventfd.
//!
//! A busy core makes one `recvmmsg` and one `sendmmsg` per loop turn and
//! never polls; an idle one sleeps in `ppoll` until a datagram, a wake-up or
//! its next timer.
use std::collections::VecDeque;
use std::io;
use std::mem::size_of;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::slot::{is_gso_refusal, place, DestIndex, MsgSlot, MAX_SEGMENTS};
use super::stamp::{self, BatchArrivals, ControlBuf, CONTROL_LEN};
use super::{sockaddr, Backend, BackendShared, IoCounters, MAX_DATAGRAM, MMSG};
use crate::core::{Core, Transmit};

/// Datagrams read per `recvmmsg`.
const RX_BATCH: usize = 64;
/// Messages written per `sendmmsg`: enough that, with many subscribers,
/// several packets of a frame to one of them still meet in a batch.
const TX_SLOTS: usize = 512;
/// How long one wait for a full socket send buffer may last.
const SEND_WAIT: Duration = Duration::from_millis(20);
/// Waits on a full send buffer before the batch's rest is dropped.
const SEND_WAIT_TRIES: u32 = 10;

pub(crate) struct Mmsg {
    sock: UdpSocket,
    efd: RawFd,
    io: Arc<IoCounters>,
    /// 1 when GSO is off (configured, undetected or refused).
    max_segments: usize,
    rx_buf: Box<[u8]>,
    rx_names: Box<[libc::sockaddr_storage]>,
    rx_iov: Box<[libc::iovec]>,
    /// Control data per datagram: its kernel receive stamp.
    rx_control: Box<[ControlBuf]>,
    rx_msgs: Box<[libc::mmsghdr]>,
    slots: Box<[MsgSlot]>,
    index: DestIndex,
    tx_msgs: Box<[libc::mmsghdr]>,
    /// Datagrams of a refused GSO message, sent again one by one.
    retry: VecDeque<Transmit>,
    /// A datagram taken from the core that found no free slot.
    carry: Option<Transmit>,
}

impl Mmsg {
    pub(crate) fn new(sock: UdpSocket, efd: RawFd, shared: BackendShared) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        if let Err(e) = stamp::enable(&sock) {
            tracing::warn!("no kernel receive stamps ({e}): arrivals are batch times");
        }
        // SAFETY: all-zero is a valid sockaddr_storage and mmsghdr.
        let zero_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let mut me = Self {
            sock,
            efd,
            io: shared.io,
            max_segments: if shared.gso { MAX_SEGMENTS } else { 1 },
            rx_buf: vec![0u8; RX_BATCH * MAX_DATAGRAM].into_boxed_slice(),
            rx_names: vec![zero_name; RX_BATCH].into_boxed_slice(),
            rx_iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                RX_BATCH
            ]
            .into_boxed_slice(),
            rx_control: vec![ControlBuf::ZERO; RX_BATCH].into_boxed_slice(),
            rx_msgs: vec![zero_msg; RX_BATCH].into_boxed_slice(),
            slots: (0..TX_SLOTS).map(|_| MsgSlot::new()).collect(),
            index: DestIndex::new(TX_SLOTS),
            tx_msgs: vec![zero_msg; TX_SLOTS].into_boxed_slice(),
            retry: VecDeque::with_capacity(TX_SLOTS * MAX_SEGMENTS),
            carry: None,
        };
        // The boxed slices never move or grow, so the pointers set here
        // stay valid for the backend's life.
        for i in 0..RX_BATCH {
            me.rx_iov[i] = libc::iovec {
                iov_base: me.rx_buf[i * MAX_DATAGRAM..].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let hdr = &mut me.rx_msgs[i].msg_hdr;
            hdr.msg_name = (&mut me.rx_names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_iov = &mut me.rx_iov[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = me.rx_control[i].0.as_mut_ptr().cast();
        }
        Ok(me)
    }

    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// One `recvmmsg`; every datagram goes to `core`. Returns how many.
    fn recv_batch(&mut self, core: &mut Core) -> io::Result<usize> {
        for m in self.rx_msgs.iter_mut() {
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_flags = 0;
            // The kernel leaves the length it used here.
            m.msg_hdr.msg_controllen = CONTROL_LEN as _;
            m.msg_len = 0;
        }
        // SAFETY: rx_msgs holds RX_BATCH headers whose name and iovec
        // pointers target live, exclusively owned buffers (see `new`).
        let r = unsafe {
            libc::recvmmsg(
                self.fd(),
                self.rx_msgs.as_mut_ptr(),
                RX_BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                // ICMP errors from departed peers surface here; not fatal.
                Some(libc::ECONNREFUSED) | Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => {
                    self.io.rx_errors.inc();
                    Ok(0)
                }
                _ => Err(e),
            };
        }
        let n = r as usize;
        if n == 0 {
            return Ok(0);
        }
        let mut arrivals = BatchArrivals::start();
        let now = arrivals.now();
        self.io.rx_batches.inc();
        self.io.rx_batch_datagrams.add(n as u64);
        for i in 0..n {
            let m = &self.rx_msgs[i];
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.io.rx_truncated.inc();
                continue;
            }
            let Some(from) = sockaddr::read_storage(&self.rx_names[i], m.msg_hdr.msg_namelen)
            else {
                self.io.rx_errors.inc();
                continue;
            };
            let len = (m.msg_len as usize).min(MAX_DATAGRAM);
            let start = i * MAX_DATAGRAM;
            let control = stamp::control_len(&m.msg_hdr);
            let arrival = arrivals.arrival(Some(&self.rx_control[i].0[..control]));
            core.handle_datagram_at(now, arrival, from, &self.rx_buf[start..start + len]);
        }
        arrivals.finish(&self.io);
        Ok(n)
    }

    /// Sends slots `0..used` with as few `sendmmsg` calls as the socket allows.
    fn flush(&mut self, core: &mut Core, used: usize) {
        for i in 0..used {
            if let Some(hdr) = self.slots[i].prepare() {
                self.tx_msgs[i] = libc::mmsghdr {
                    msg_hdr: *hdr,
                    msg_len: 0,
                };
            }
        }
        self.io.tx_batches.inc();
        let mut start = 0;
        let mut waits = 0;
        while start < used {
            // SAFETY: tx_msgs[start..used] were prepared above from slots
            // that own their names, iovecs, control data and datagrams.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd(),
                    self.tx_msgs[start..].as_mut_ptr(),
                    (used - start) as u32,
                    0,
                )
            };
            if r > 0 {
                for i in start..start + r as usize {
                    count_sent(core, &self.io, &self.slots[i]);
                }
                start += r as usize;
                continue;
            }
            let err = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            match err {
                libc::EINTR => {}
                libc::EAGAIN | libc::ENOBUFS => {
                    self.io.tx_would_block.inc();
                    waits += 1;
                    if waits > SEND_WAIT_TRIES {
                        for s in &self.slots[start..used] {
                            core.counters().tx_errors.add(s.segments() as u64);
                        }
                        break;
                    }
                    wait_writable(self.fd(), SEND_WAIT);
                }
                e if self.slots[start].segments() > 1 && is_gso_refusal(e) => {
                    self.io.gso_fallbacks.inc();
                    self.max_segments = 1;
                    tracing::warn!(
                        "UDP GSO refused by the kernel ({}); sending one datagram per message from now on",
                        io::Error::from_raw_os_error(e)
                    );
                    for s in &mut self.slots[start..used] {
                        self.retry.extend(s.tx.drain(..));
                    }
                    break;
                }
                _ => {
                    core.counters()
                        .tx_errors
                        .add(self.slots[start].segments() as u64);
                    start += 1;
                }
            }
        }
        for s in &mut self.slots[..used] {
            s.recycle_into(core);
        }
    }

    fn next_transmit(&mut self, core: &mut Core) -> Option<Transmit> {
        self.retry
            .pop_front()
            .or_else(|| self.carry.take())
            .or_else(|| core.poll_transmit())
    }
}

/// Counts a sent message in the core's and the backend's counters.
pub(crate) fn count_sent(core: &Core, io: &IoCounters, slot: &MsgSlot) {
    let segs = slot.segments() as u64;
    core.counters().tx_datagrams.add(segs);
    core.counters().tx_bytes.add(slot.bytes() as u64);
    io.tx_messages.inc();
    if segs > 1 {
        io.tx_gso_messages.inc();
        io.tx_gso_segments.add(segs);
    }
}

fn wait_writable(fd: RawFd, timeout: Duration) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one live pollfd.
    unsafe { libc::poll(&mut p, 1, ms) };
}

impl Backend for Mmsg {
    fn name(&self) -> &'static str {
        MMSG
    }

    fn send(&mut self, core: &mut Core) {
        loop {
            let mut used = 0usize;
            self.index.clear();
            while let Some(t) = self.next_transmit(core) {
                let t = match place(&mut self.slots, &self.index, t, self.max_segments) {
                    Ok(()) => continue,
                    Err(t) => t,
                };
                if used == TX_SLOTS {
                    self.carry = Some(t);
                    break;
                }
                let dest = t.dest;
                // An empty slot takes any datagram.
                let _ = self.slots[used].try_push(t, self.max_segments);
                self.index.set(&self.slots, dest, used as u16);
                used += 1;
            }
            if used == 0 {
                return;
            }
            self.flush(core, used);
        }
    }

    fn receive(&mut self, core: &mut Core, block: bool, deadline: Instant) -> io::Result<bool> {
        if self.recv_batch(core)? > 0 || !block {
            return Ok(false);
        }
        self.io.waits.inc();
        let timeout = deadline.saturating_duration_since(Instant::now());
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let mut fds = [
            libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.efd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two live pollfds and a live timespec.
        let r = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(false)
            } else {
                Err(e)
            };
        }
        let woke = fds[1].revents & libc::POLLIN != 0;
        if woke {
            self.io.wakeups.inc();
        }
        if fds[0].revents != 0 {
            self.recv_batch(core)?;
        }
        Ok(woke)
    }
}
