//! Kernel receive timestamps (`SO_TIMESTAMPNS`) for the loadgen's sockets.
//!
//! The latency a subscriber reports is the publisher's send stamp to the
//! packet's arrival. Taking the arrival after the receive task has been
//! scheduled adds the loadgen's own queueing to what the SFU added; with
//! thousands of peers on two CPUs that queueing dominates. The kernel
//! stamps each datagram as it reaches the socket, before any of that.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use weir_dataplane::io::stamp::parse_rx_stamp;

/// Asks the kernel to stamp every datagram `socket` receives. Best effort:
/// without it [`recv`] reports no age and arrival is the time of reading.
pub(crate) fn enable(socket: &UdpSocket) -> io::Result<()> {
    weir_dataplane::io::stamp::enable(socket)
}

/// Receives one datagram into `buf`: its length, and how long ago the
/// kernel received it (`None` without a timestamp).
pub(crate) async fn recv(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, Option<Duration>)> {
    let fd = socket.as_raw_fd();
    socket
        .async_io(Interest::READABLE, || {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // Room for one SCM_TIMESTAMPNS (a timespec) and its header, aligned.
            let mut control = [0u64; 8];
            // SAFETY: all-zero is a valid msghdr; the pointers set below
            // outlive the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            // SAFETY: a valid socket and a msghdr whose buffers are live.
            let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            // The data plane's parser: bounds-checked and fuzzed.
            let len = (msg.msg_controllen as usize).min(size_of_val(&control));
            // SAFETY: `control` is plain memory; the kernel wrote `len`
            // bytes of it, and any byte pattern is a valid u8.
            let bytes = unsafe { std::slice::from_raw_parts(control.as_ptr().cast::<u8>(), len) };
            let age = parse_rx_stamp(bytes)
                .ok()
                .flatten()
                .map(|s| age(s.since_epoch()));
            Ok((n as usize, age))
        })
        .await
}

/// How long before now (wall clock, as the kernel stamps) `stamped` was.
fn age(stamped: Duration) -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(Duration::ZERO, |now| now.saturating_sub(stamped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_datagrams_come_with_a_recent_kernel_stamp() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        enable(&rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = [0u8; 64];
        // The kernel turns arrival stamping on through a deferred work
        // item after the first socket asks for it; until then a datagram
        // is stamped when it is read. So a few tries: one must be stamped
        // on arrival, not when read.
        let mut ages = Vec::new();
        for _ in 0..20 {
            tx.send_to(b"stamped", rx.local_addr().unwrap())
                .await
                .unwrap();
            // Read it a little later: the age covers the wait.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (n, age) = recv(&rx, &mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"stamped");
            let age = age.expect("SO_TIMESTAMPNS is on");
            if age >= Duration::from_millis(15) {
                return;
            }
            ages.push(age);
        }
        panic!("no stamp covers the 20 ms wait: {ages:?}");
    }
}
