//! Kernel receive stamps through each backend, over real UDP on 127.0.0.1:
//! two RTP packets sent 20 ms apart but read in one batch must reach the
//! publisher's transport-cc feedback 20 ms apart, not as one burst.
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mmsg::Mmsg;
use super::stamp::MAX_STAMP_AGE;
use super::uring::Uring;
use super::wake::Notify;
use super::{Backend, BackendShared, IoCounters};
use crate::core::{Core, CoreInput};
use crate::counters::{CoreCounters, TransportCounters};
use crate::ice::stun::{write_binding_request, IceRoleAttr};
use crate::ice::IceCredentials;
use crate::rtcp::twcc::parse_feedback;
use crate::srtp::{SrtpKeys, SrtpProfile, SrtpSession};

const TWCC_EXT: u8 = 3;
const GAP: Duration = Duration::from_millis(20);

fn keys() -> (SrtpKeys, SrtpKeys) {
    let p = SrtpProfile::AeadAes128Gcm;
    let k = |b: u8| vec![b; p.key_len()];
    let s = |b: u8| vec![b; p.salt_len()];
    let server = SrtpKeys {
        profile: p,
        local_key: k(1),
        local_salt: s(2),
        remote_key: k(3),
        remote_salt: s(4),
    };
    let client = SrtpKeys {
        profile: p,
        local_key: k(3),
        local_salt: s(4),
        remote_key: k(1),
        remote_salt: s(2),
    };
    (server, client)
}

/// RTP with a one-byte header extension carrying transport sequence `twcc`.
fn rtp(seq: u16, twcc: u16) -> Vec<u8> {
    let mut p = vec![0x90, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0x11, 0x11]);
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, (TWCC_EXT << 4) | 1]);
    p.extend_from_slice(&twcc.to_be_bytes());
    p.push(0);
    p.extend_from_slice(&[0x10, 0, 0, 0]);
    p
}

/// Reads until the core has seen `total` datagrams (bounded by a timeout).
fn receive_until(backend: &mut impl Backend, core: &mut Core, counters: &CoreCounters, total: u64) {
    let give_up = Instant::now() + Duration::from_secs(5);
    while counters.rx_datagrams.get() < total {
        assert!(Instant::now() < give_up, "datagrams did not arrive");
        backend
            .receive(core, true, Instant::now() + Duration::from_millis(100))
            .unwrap();
    }
}

/// Waits until the kernel stamps datagrams on arrival. It switches arrival
/// stamping on through a deferred work item after the first socket of the
/// system asks for it; until then a datagram is stamped when it is read,
/// which would make this file's first test see no queueing at all. The
/// returned socket keeps stamping wanted (the kernel counts the sockets
/// that want it) until the caller drops it.
fn wait_for_arrival_stamping() -> UdpSocket {
    use std::os::fd::AsRawFd;
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    super::stamp::enable(&rx).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..100 {
        tx.send_to(b"stamp?", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        let mut buf = [0u8; 16];
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr; the buffers it points at
        // outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: a live socket and a msghdr whose buffers are live.
        let n = unsafe { libc::recvmsg(rx.as_raw_fd(), &mut msg, 0) };
        assert!(n > 0, "{}", std::io::Error::last_os_error());
        let len = (msg.msg_controllen as usize).min(std::mem::size_of_val(&control));
        // SAFETY: the kernel wrote `len` bytes of `control`; any bytes are
        // valid u8.
        let bytes = unsafe { std::slice::from_raw_parts(control.as_ptr().cast::<u8>(), len) };
        let stamped = super::stamp::parse_rx_stamp(bytes)
            .unwrap()
            .expect("stamped");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        if now.saturating_sub(stamped.since_epoch()) >= Duration::from_millis(5) {
            return rx;
        }
    }
    panic!("the kernel never stamped a datagram on arrival");
}

fn stamps_reach_transport_cc<B: Backend>(make: impl FnOnce(UdpSocket, BackendShared) -> B) {
    let _stamping = wait_for_arrival_stamping();
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = server.local_addr().unwrap();
    let io = Arc::new(IoCounters::default());
    let mut backend = make(
        server,
        BackendShared {
            io: io.clone(),
            gso: false,
            multishot_recv: true,
        },
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let from: SocketAddr = client.local_addr().unwrap();
    let counters = Arc::new(CoreCounters::default());
    let mut core = Core::new(0, Duration::from_secs(30), counters.clone(), Instant::now());
    let credentials = IceCredentials::generate();
    let now = Instant::now();
    core.handle_input(
        now,
        CoreInput::AddSession {
            id: 1,
            credentials: credentials.clone(),
            counters: Arc::new(TransportCounters::default()),
        },
    );
    let (server_keys, client_keys) = keys();
    core.handle_input(
        now,
        CoreInput::InstallSrtp {
            id: 1,
            keys: Box::new(server_keys),
        },
    );
    core.handle_input(
        now,
        CoreInput::SetTransportCc {
            id: 1,
            ext_id: Some(TWCC_EXT),
        },
    );
    let mut check = [0u8; 512];
    let n = write_binding_request(
        &mut check,
        [7; 12],
        &format!("{}:client", credentials.ufrag()),
        1,
        true,
        IceRoleAttr::Controlling(42),
        credentials.pwd().as_bytes(),
    )
    .unwrap();
    client.send_to(&check[..n], to).unwrap();
    receive_until(&mut backend, &mut core, &counters, 1);
    while core.poll_transmit().is_some() {}

    // Both datagrams wait in the socket until the core reads them together.
    let mut srtp = SrtpSession::new(&client_keys).unwrap();
    let batches = io.rx_batches.get();
    let first_sent = Instant::now();
    for (i, twcc) in [(0u16, 700u16), (1, 701)] {
        let mut sealed = Vec::new();
        srtp.encrypt_rtp(&rtp(100 + i, twcc), &mut sealed).unwrap();
        client.send_to(&sealed, to).unwrap();
        if i == 0 {
            std::thread::sleep(GAP);
        }
    }
    receive_until(&mut backend, &mut core, &counters, 3);
    assert_eq!(io.rx_batches.get(), batches + 1, "one batch");
    assert_eq!(io.rx_unstamped.get(), 0, "every datagram stamped");
    if first_sent.elapsed() >= MAX_STAMP_AGE {
        // A machine so loaded that this thread was off the CPU for a
        // second: the stamps are clamped by design, and that is all to see.
        eprintln!("read {:?} after sending: clamped", first_sent.elapsed());
        assert!(io.rx_stamp_clamped.get() > 0);
        return;
    }
    assert!(
        io.rx_queue_delay_us.get() >= GAP.as_micros() as u64,
        "queueing delay {} µs, {} clamped",
        io.rx_queue_delay_us.get(),
        io.rx_stamp_clamped.get()
    );

    // The feedback's arrivals are the kernel's, GAP apart.
    core.handle_timeout(Instant::now() + Duration::from_secs(1));
    let mut feedback = Vec::new();
    while let Some(t) = core.poll_transmit() {
        let mut plain = Vec::new();
        if t.dest == from
            && srtp.decrypt_rtcp(&t.data, &mut plain).is_ok()
            && plain[1] == 205
            && plain[0] & 0x1f == 15
        {
            parse_feedback(&plain[12..], &mut feedback).unwrap();
        }
    }
    let arrivals: Vec<(u16, i64)> = feedback
        .iter()
        .filter_map(|s| Some((s.seq, s.arrival_us?)))
        .collect();
    assert_eq!(arrivals.len(), 2, "both reported: {feedback:?}");
    assert_eq!((arrivals[0].0, arrivals[1].0), (700, 701));
    let apart = arrivals[1].1 - arrivals[0].1;
    // Transport-cc deltas are in 250 µs units; the sleep bounds from below.
    assert!(
        apart >= GAP.as_micros() as i64 - 250,
        "arrivals {apart} µs apart, sent {GAP:?} apart"
    );
}

#[test]
fn mmsg_arrivals_are_kernel_stamps() {
    let notify = Notify::new().unwrap();
    stamps_reach_transport_cc(|s, shared| Mmsg::new(s, notify.fd(), shared).unwrap());
}

fn uring(multishot: bool) {
    if let Err(why) = super::uring::probe() {
        eprintln!("skipping io_uring case: {why}");
        return;
    }
    let notify = Notify::new().unwrap();
    stamps_reach_transport_cc(|s, mut shared| {
        shared.multishot_recv = multishot;
        Uring::new(s, notify.fd(), shared).unwrap()
    });
}

#[test]
fn uring_multishot_arrivals_are_kernel_stamps() {
    uring(true);
}

#[test]
fn uring_single_shot_arrivals_are_kernel_stamps() {
    uring(false);
}
