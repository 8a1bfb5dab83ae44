//! The io_uring backend: one ring per core.
//!
//! - Receive: one multishot `recvmsg` (`RecvMsgMulti`) on a provided-buffer
//!   ring registered with the kernel. Each completion names the buffer the
//!   datagram landed in; the buffer goes back to the ring once the core has
//!   seen the datagram, and the ring's tail is published once per turn.
//!   With [`crate::io::IoOptions::multishot_recv`] off, a set of single-shot
//!   `recvmsg` on the same buffer ring instead, each re-armed after use
//!   (for benchmarks, and for kernels whose multishot misbehaves).
//! - Send: each turn's datagrams become `sendmsg` SQEs (one per destination
//!   group, with `UDP_SEGMENT` when several datagrams share it). They reach
//!   the kernel with the same `io_uring_enter` that waits for the next
//!   completion, so a busy turn costs one syscall.
//! - Wake-ups: a multishot poll on the core's eventfd; timers bound the wait
//!   through the enter's timeout argument (`IORING_FEAT_EXT_ARG`).
use std::collections::VecDeque;
use std::io;
use std::mem::size_of;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

use super::mmsg::count_sent;
use super::slot::{is_gso_refusal, place, DestIndex, MsgSlot, MAX_SEGMENTS};
use super::stamp::{self, BatchArrivals, ControlBuf, CONTROL_LEN};
use super::{sockaddr, Backend, BackendShared, IoCounters, IO_URING, MAX_DATAGRAM};
use crate::core::{Core, Transmit};

const SQ_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 4096;
/// Receive buffers in the provided-buffer ring (a power of two).
const RX_BUFS: u16 = 512;
/// Bytes reserved for the source address in each receive buffer.
const NAME_LEN: usize = size_of::<libc::sockaddr_in6>();
/// One receive buffer: the kernel's `io_uring_recvmsg_out` header, the
/// address, the control data (the receive stamp) and the datagram.
const RX_BUF_LEN: usize = (16 + NAME_LEN + CONTROL_LEN + MAX_DATAGRAM + 63) & !63;
/// Send messages in flight at once.
const TX_SLOTS: usize = 512;
/// Single-shot `recvmsg` operations kept in flight when multishot is off.
const RX_SINGLE: usize = 32;
/// Extra submit-and-reap rounds one turn may spend emptying the core's queue.
const FLUSH_ROUNDS: usize = 8;
/// Buffer group id of the receive ring.
const BGID: u16 = 0x77;

const UD_RECV: u64 = 1 << 60;
const UD_EVENTFD: u64 = 2 << 60;
const UD_SEND: u64 = 3 << 60;
const UD_CANCEL: u64 = 4 << 60;
const UD_RECV_ONE: u64 = 5 << 60;
const UD_KIND: u64 = 0xf << 60;

/// A provided-buffer ring: the entry array shared with the kernel (its own
/// mapping, page aligned) and the buffers it hands out.
pub(crate) struct BufRing {
    entries: *mut BufRingEntry,
    map_len: usize,
    count: u16,
    tail: u16,
    bufs: Box<[u8]>,
    buf_len: usize,
}

impl BufRing {
    /// Allocates `count` (a power of two) buffers of `buf_len` bytes, all
    /// available to the kernel once registered.
    pub(crate) fn new(count: u16, buf_len: usize) -> io::Result<Self> {
        let map_len = usize::from(count) * size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut me = Self {
            entries: p.cast(),
            map_len,
            count,
            tail: 0,
            bufs: vec![0u8; usize::from(count) * buf_len].into_boxed_slice(),
            buf_len,
        };
        for bid in 0..count {
            me.push(bid);
        }
        me.publish();
        Ok(me)
    }

    /// Registers the ring as buffer group `bgid` of `ring`.
    pub(crate) fn register(&self, ring: &IoUring, bgid: u16) -> io::Result<()> {
        // SAFETY: the entry array and the buffers live as long as `self`,
        // and the owner drops the io_uring before this ring.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(self.entries as u64, self.count, bgid, 0)
        }
    }

    /// Gives buffer `bid` back to the kernel (visible after [`BufRing::publish`]).
    pub(crate) fn push(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let idx = usize::from(self.tail & (self.count - 1));
        let addr = self.bufs[usize::from(bid) * self.buf_len..].as_ptr() as u64;
        // SAFETY: idx < count, inside the mapping. The kernel reads only
        // entries between its head and our published tail, and this one is
        // past the tail.
        let e = unsafe { &mut *self.entries.add(idx) };
        e.set_addr(addr);
        e.set_len(self.buf_len as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the buffers pushed since the last call.
    pub(crate) fn publish(&self) {
        // SAFETY: the tail field lies inside entry 0 of our mapping; the
        // kernel only reads it, so an atomic release store is the protocol.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid`.
    pub(crate) fn get(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * self.buf_len;
        &self.bufs[start..start + len.min(self.buf_len)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.entries.cast(), self.map_len) };
    }
}

/// A `msghdr` template for multishot `recvmsg`: only the name and control
/// lengths matter to the kernel, which reserves that much room in each
/// provided buffer before the datagram.
fn recv_template() -> Box<libc::msghdr> {
    // SAFETY: all-zero is a valid msghdr.
    let mut hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
    hdr.msg_namelen = NAME_LEN as libc::socklen_t;
    hdr.msg_controllen = CONTROL_LEN as _;
    hdr
}

/// Builds a ring, with single-issuer deferred task running where the
/// kernel has it (6.1+), so completions are posted only when we enter.
fn build_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(SQ_ENTRIES)
        .or_else(|_| {
            IoUring::builder()
                .setup_cqsize(CQ_ENTRIES)
                .build(SQ_ENTRIES)
        })
}

/// Pushes one SQE, submitting first if the queue is full.
fn push_sqe(ring: &mut IoUring, e: &squeue::Entry) -> io::Result<()> {
    // SAFETY (for the pushes below): every SQE built by this module points
    // at memory owned by the backend that outlives the operation.
    if unsafe { ring.submission().push(e) }.is_err() {
        ring.submit()?;
        unsafe { ring.submission().push(e) }
            .map_err(|_| io::Error::other("submission queue full"))?;
    }
    Ok(())
}

/// Checks that io_uring works here with everything the backend needs:
/// ring setup, the enter timeout argument, `recvmsg`/`sendmsg`/poll
/// opcodes, a provided-buffer ring, and a multishot `recvmsg` that stays
/// armed after delivering a real datagram on 127.0.0.1.
pub(crate) fn probe() -> Result<(), String> {
    let mut ring = IoUring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    if !ring.params().is_feature_ext_arg() {
        return Err("kernel lacks IORING_FEAT_EXT_ARG (enter timeouts, Linux 5.11)".into());
    }
    let mut p = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| format!("IORING_REGISTER_PROBE failed: {e}"))?;
    for (code, name) in [
        (opcode::RecvMsg::CODE, "RECVMSG"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !p.is_supported(code) {
            return Err(format!("IORING_OP_{name} not supported"));
        }
    }
    let bufs = BufRing::new(8, 256).map_err(|e| format!("buffer ring allocation failed: {e}"))?;
    bufs.register(&ring, 1)
        .map_err(|e| format!("provided buffer rings (Linux 5.19) refused: {e}"))?;
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("probe socket: {e}"))?;
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("probe socket: {e}"))?;
    let hdr = recv_template();
    let recv = opcode::RecvMsgMulti::new(Fd(rx.as_raw_fd()), &*hdr, 1)
        .build()
        .user_data(UD_RECV);
    push_sqe(&mut ring, &recv).map_err(|e| e.to_string())?;
    ring.submit()
        .map_err(|e| format!("io_uring_enter failed: {e}"))?;
    let target = rx.local_addr().map_err(|e| e.to_string())?;
    tx.send_to(b"weir-probe", target)
        .map_err(|e| format!("probe send: {e}"))?;
    let ts = Timespec::new().sec(1);
    let args = SubmitArgs::new().timespec(&ts);
    let result = match ring.submitter().submit_with_args(1, &args) {
        Err(e) if e.raw_os_error() == Some(libc::ETIME) => {
            Err("multishot recvmsg delivered nothing within 1 s".into())
        }
        Err(e) => Err(format!("io_uring_enter failed: {e}")),
        Ok(_) => match ring.completion().next() {
            None => Err("multishot recvmsg delivered nothing".into()),
            Some(c) if c.result() < 0 => Err(format!(
                "multishot recvmsg (Linux 6.0) refused: {}",
                io::Error::from_raw_os_error(-c.result())
            )),
            Some(c) if !cqueue::more(c.flags()) => {
                Err("multishot recvmsg did not stay armed".into())
            }
            Some(c) => {
                let bid = cqueue::buffer_select(c.flags()).unwrap_or(u16::MAX);
                let buf = bufs.get(bid, c.result() as usize);
                match RecvMsgOut::parse(buf, &hdr) {
                    Ok(m) if m.payload_data() == b"weir-probe" => Ok(()),
                    _ => Err("multishot recvmsg returned a malformed buffer".into()),
                }
            }
        },
    };
    cancel_and_drain(&mut ring, &[UD_RECV], 0);
    drop(ring);
    drop(bufs);
    result
}

/// Cancels the multishot operations `uds` and waits (bounded) until they
/// and `in_flight` sends have completed, so no kernel work targets our
/// buffers after the ring is gone.
fn cancel_and_drain(ring: &mut IoUring, uds: &[u64], mut in_flight: usize) {
    for &ud in uds {
        let _ = push_sqe(
            ring,
            &opcode::AsyncCancel::new(ud).build().user_data(UD_CANCEL),
        );
    }
    let mut live = uds.len();
    let give_up = Instant::now() + Duration::from_secs(1);
    while (live > 0 || in_flight > 0) && Instant::now() < give_up {
        let ts = Timespec::new().nsec(50_000_000);
        let args = SubmitArgs::new().timespec(&ts);
        let _ = ring.submitter().submit_with_args(1, &args);
        for c in ring.completion() {
            match c.user_data() & UD_KIND {
                UD_RECV | UD_EVENTFD | UD_RECV_ONE if !cqueue::more(c.flags()) => {
                    live = live.saturating_sub(1)
                }
                UD_SEND => in_flight = in_flight.saturating_sub(1),
                _ => {}
            }
        }
    }
}

/// One single-shot `recvmsg` in flight: its header, and the address and
/// control data (the receive stamp) the kernel writes. The datagram lands
/// in a buffer of the ring.
struct RecvOne {
    hdr: libc::msghdr,
    name: libc::sockaddr_storage,
    control: ControlBuf,
    iov: libc::iovec,
    armed: bool,
}

pub(crate) struct Uring {
    // Declared first so it drops first: the kernel lets go of the buffer
    // ring and the send slots before their memory is freed.
    ring: IoUring,
    bufs: BufRing,
    sock: UdpSocket,
    efd: RawFd,
    io: Arc<IoCounters>,
    max_segments: usize,
    recv_hdr: Box<libc::msghdr>,
    recv_armed: bool,
    /// Single-shot receives, used instead of the multishot one when it is off.
    single: Option<Box<[RecvOne]>>,
    efd_armed: bool,
    slots: Box<[MsgSlot]>,
    index: DestIndex,
    free: Vec<u16>,
    open: Vec<u16>,
    in_flight: usize,
    retry: VecDeque<Transmit>,
    carry: Option<Transmit>,
    /// The eventfd fired during a reap inside `send`; reported by the next
    /// `receive` so the driver resets it (else senders would never write
    /// it again).
    woke: bool,
}

impl Uring {
    pub(crate) fn new(sock: UdpSocket, efd: RawFd, shared: BackendShared) -> io::Result<Self> {
        // A blocking socket lets io_uring park sends and receives on the
        // socket's wait queue instead of failing them with EAGAIN.
        sock.set_nonblocking(false)?;
        if let Err(e) = stamp::enable(&sock) {
            tracing::warn!("no kernel receive stamps ({e}): arrivals are batch times");
        }
        let ring = build_ring()?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without IORING_FEAT_EXT_ARG",
            ));
        }
        let bufs = BufRing::new(RX_BUFS, RX_BUF_LEN)?;
        bufs.register(&ring, BGID)?;
        Ok(Self {
            ring,
            bufs,
            sock,
            efd,
            io: shared.io,
            max_segments: if shared.gso { MAX_SEGMENTS } else { 1 },
            recv_hdr: recv_template(),
            recv_armed: false,
            single: (!shared.multishot_recv).then(|| {
                (0..RX_SINGLE)
                    .map(|_| RecvOne {
                        // SAFETY: all-zero is a valid msghdr and sockaddr_storage.
                        hdr: unsafe { std::mem::zeroed() },
                        // SAFETY: as above.
                        name: unsafe { std::mem::zeroed() },
                        control: ControlBuf::ZERO,
                        iov: libc::iovec {
                            iov_base: std::ptr::null_mut(),
                            iov_len: MAX_DATAGRAM,
                        },
                        armed: false,
                    })
                    .collect()
            }),
            efd_armed: false,
            slots: (0..TX_SLOTS).map(|_| MsgSlot::new()).collect(),
            index: DestIndex::new(TX_SLOTS),
            free: (0..TX_SLOTS as u16).rev().collect(),
            open: Vec::with_capacity(TX_SLOTS),
            in_flight: 0,
            retry: VecDeque::with_capacity(TX_SLOTS * MAX_SEGMENTS),
            carry: None,
            woke: false,
        })
    }

    fn arm(&mut self) -> io::Result<()> {
        if let Some(single) = self.single.as_mut() {
            for (k, r) in single.iter_mut().enumerate() {
                if r.armed {
                    continue;
                }
                // With buffer select the kernel picks the data buffer; the
                // one iovec only bounds the length.
                r.hdr.msg_name = (&mut r.name as *mut libc::sockaddr_storage).cast();
                r.hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                r.hdr.msg_iov = &mut r.iov;
                r.hdr.msg_iovlen = 1;
                r.hdr.msg_control = r.control.0.as_mut_ptr().cast();
                r.hdr.msg_controllen = CONTROL_LEN as _;
                let e = opcode::RecvMsg::new(Fd(self.sock.as_raw_fd()), &mut r.hdr)
                    .buf_group(BGID)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
                    .user_data(UD_RECV_ONE | k as u64);
                push_sqe(&mut self.ring, &e)?;
                r.armed = true;
            }
        } else if !self.recv_armed {
            let e = opcode::RecvMsgMulti::new(Fd(self.sock.as_raw_fd()), &*self.recv_hdr, BGID)
                .build()
                .user_data(UD_RECV);
            push_sqe(&mut self.ring, &e)?;
            self.recv_armed = true;
        }
        if !self.efd_armed {
            let e = opcode::PollAdd::new(Fd(self.efd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(UD_EVENTFD);
            push_sqe(&mut self.ring, &e)?;
            self.efd_armed = true;
        }
        Ok(())
    }

    /// Handles every completion waiting in the queue. Returns whether the
    /// eventfd fired.
    fn reap(&mut self, core: &mut Core) -> bool {
        let Self {
            ring,
            bufs,
            io,
            recv_hdr,
            recv_armed,
            single,
            efd_armed,
            slots,
            free,
            in_flight,
            retry,
            max_segments,
            ..
        } = self;
        let mut arrivals = BatchArrivals::start();
        let now = arrivals.now();
        let mut woke = false;
        let mut received = 0u64;
        let mut recycled = false;
        for c in ring.completion() {
            let ud = c.user_data();
            match ud & UD_KIND {
                UD_RECV => {
                    if !cqueue::more(c.flags()) {
                        *recv_armed = false;
                    }
                    let res = c.result();
                    if res < 0 {
                        if res == -libc::ENOBUFS {
                            io.rx_no_buffers.inc();
                        } else {
                            io.rx_errors.inc();
                        }
                        continue;
                    }
                    let Some(bid) = cqueue::buffer_select(c.flags()) else {
                        continue;
                    };
                    match RecvMsgOut::parse(bufs.get(bid, res as usize), recv_hdr) {
                        Ok(m) if m.is_payload_truncated() => io.rx_truncated.inc(),
                        Ok(m) => match sockaddr::read(m.name_data()) {
                            Some(from) => {
                                received += 1;
                                let arrival = arrivals.arrival(Some(m.control_data()));
                                core.handle_datagram_at(now, arrival, from, m.payload_data());
                            }
                            None => io.rx_errors.inc(),
                        },
                        Err(()) => io.rx_errors.inc(),
                    }
                    bufs.push(bid);
                    recycled = true;
                }
                UD_RECV_ONE => {
                    let Some(r) = single
                        .as_mut()
                        .and_then(|v| v.get_mut((ud & 0xffff) as usize))
                    else {
                        continue;
                    };
                    r.armed = false;
                    let res = c.result();
                    if res < 0 {
                        if res == -libc::ENOBUFS {
                            io.rx_no_buffers.inc();
                        } else {
                            io.rx_errors.inc();
                        }
                        continue;
                    }
                    let Some(bid) = cqueue::buffer_select(c.flags()) else {
                        continue;
                    };
                    let len = res as usize;
                    // A datagram that filled the iovec may have been cut short.
                    if len >= MAX_DATAGRAM {
                        io.rx_truncated.inc();
                    } else {
                        // SAFETY: `name` is a live sockaddr_storage; reading
                        // its bytes is fine whatever the kernel wrote.
                        let name = unsafe {
                            std::slice::from_raw_parts(
                                (&r.name as *const libc::sockaddr_storage).cast::<u8>(),
                                size_of::<libc::sockaddr_storage>(),
                            )
                        };
                        match sockaddr::read(name) {
                            Some(from) => {
                                received += 1;
                                let control = stamp::control_len(&r.hdr);
                                let arrival = arrivals.arrival(Some(&r.control.0[..control]));
                                core.handle_datagram_at(now, arrival, from, bufs.get(bid, len));
                            }
                            None => io.rx_errors.inc(),
                        }
                    }
                    bufs.push(bid);
                    recycled = true;
                }
                UD_EVENTFD => {
                    if !cqueue::more(c.flags()) {
                        *efd_armed = false;
                    }
                    if c.result() > 0 {
                        woke = true;
                    }
                }
                UD_SEND => {
                    let i = (ud & 0xffff) as usize;
                    let Some(slot) = slots.get_mut(i) else {
                        continue;
                    };
                    let res = c.result();
                    if res >= 0 {
                        count_sent(core, io, slot);
                    } else if slot.segments() > 1 && is_gso_refusal(-res) {
                        io.gso_fallbacks.inc();
                        if *max_segments > 1 {
                            tracing::warn!(
                                "UDP GSO refused by the kernel ({}); sending one datagram per message from now on",
                                io::Error::from_raw_os_error(-res)
                            );
                        }
                        *max_segments = 1;
                        retry.extend(slot.tx.drain(..));
                    } else {
                        core.counters().tx_errors.add(slot.segments() as u64);
                    }
                    slot.recycle_into(core);
                    free.push(i as u16);
                    *in_flight -= 1;
                }
                _ => {}
            }
        }
        if recycled {
            bufs.publish();
        }
        if received > 0 {
            arrivals.finish(io);
            io.rx_batches.inc();
            io.rx_batch_datagrams.add(received);
        }
        if woke {
            io.wakeups.inc();
        }
        woke
    }
}

impl Backend for Uring {
    fn name(&self) -> &'static str {
        IO_URING
    }

    fn send(&mut self, core: &mut Core) {
        // More datagrams than slots: submit what is queued and reuse the
        // slots as their sends complete (inline, for UDP), so the core's
        // queue is emptied every turn as with mmsg.
        for _ in 0..FLUSH_ROUNDS {
            if !self.send_once(core) {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::debug!("io_uring submit: {e}");
                return;
            }
            self.woke |= self.reap(core);
        }
    }

    fn receive(&mut self, core: &mut Core, block: bool, deadline: Instant) -> io::Result<bool> {
        self.arm()?;
        let ready = self.woke || !self.ring.completion().is_empty();
        let r = if block && !ready {
            self.io.waits.inc();
            let timeout = deadline.saturating_duration_since(Instant::now());
            let ts = Timespec::new()
                .sec(timeout.as_secs())
                .nsec(timeout.subsec_nanos());
            let args = SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        } else {
            self.ring.submit()
        };
        if let Err(e) = r {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        let woke = self.reap(core);
        Ok(std::mem::take(&mut self.woke) | woke)
    }
}

impl Uring {
    /// Queues SQEs for as many of the core's datagrams as there are free
    /// slots. Returns whether datagrams are left over.
    fn send_once(&mut self, core: &mut Core) -> bool {
        self.open.clear();
        self.index.clear();
        loop {
            let t = if let Some(t) = self.carry.take() {
                t
            } else if let Some(t) = self.retry.pop_front() {
                t
            } else if let Some(t) = core.poll_transmit() {
                t
            } else {
                break;
            };
            let t = match place(&mut self.slots, &self.index, t, self.max_segments) {
                Ok(()) => continue,
                Err(t) => t,
            };
            let Some(i) = self.free.pop() else {
                // Every slot is in flight: wait for completions.
                self.carry = Some(t);
                break;
            };
            let dest = t.dest;
            // An empty slot takes any datagram.
            let _ = self.slots[usize::from(i)].try_push(t, self.max_segments);
            self.index.set(&self.slots, dest, i);
            self.open.push(i);
        }
        if self.open.is_empty() {
            return self.carry.is_some();
        }
        self.io.tx_batches.inc();
        let fd = self.sock.as_raw_fd();
        for k in 0..self.open.len() {
            let i = self.open[k];
            let Some(hdr) = self.slots[usize::from(i)].prepare() else {
                continue;
            };
            let e = opcode::SendMsg::new(Fd(fd), hdr)
                .build()
                .user_data(UD_SEND | u64::from(i));
            if push_sqe(&mut self.ring, &e).is_err() {
                // Cannot happen with SQ_ENTRIES > TX_SLOTS; drop rather than leak.
                core.counters()
                    .tx_errors
                    .add(self.slots[usize::from(i)].segments() as u64);
                self.slots[usize::from(i)].recycle_into(core);
                self.free.push(i);
                continue;
            }
            self.in_flight += 1;
        }
        self.carry.is_some()
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        let mut live = Vec::with_capacity(2 + RX_SINGLE);
        if self.recv_armed {
            live.push(UD_RECV);
        }
        if self.efd_armed {
            live.push(UD_EVENTFD);
        }
        if let Some(single) = &self.single {
            live.extend(
                single
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.armed)
                    .map(|(k, _)| UD_RECV_ONE | k as u64),
            );
        }
        cancel_and_drain(&mut self.ring, &live, self.in_flight);
    }
}
