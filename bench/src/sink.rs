//! Receivers that drain many UDP sockets on one thread and count datagrams.
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const BATCH: usize = 64;
const BUF: usize = 2048;

/// A thread draining `sockets` until stopped.
pub struct Sink {
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Starts the thread, pinned to core `core`, named `name`.
    pub fn start(sockets: Vec<UdpSocket>, core: usize, name: &str) -> Sink {
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                crate::cpu::pin(core);
                drain(&sockets, &r, &s);
            })
            .expect("spawn sink thread");
        Sink {
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Datagrams received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Stops and joins the thread.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.received()
    }
}

fn drain(sockets: &[UdpSocket], received: &AtomicU64, stop: &AtomicBool) {
    for s in sockets {
        let _ = s.set_nonblocking(true);
    }
    let mut bufs = vec![0u8; BATCH * BUF];
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|i| libc::iovec {
            iov_base: bufs[i * BUF..].as_mut_ptr().cast(),
            iov_len: BUF,
        })
        .collect();
    // SAFETY: all-zero is a valid mmsghdr.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: fds is a live array of pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 10) };
        if n <= 0 {
            continue;
        }
        for p in fds.iter_mut() {
            if p.revents == 0 {
                continue;
            }
            p.revents = 0;
            loop {
                // SAFETY: msgs point at live iovecs over `bufs`.
                let r = unsafe {
                    libc::recvmmsg(
                        p.fd,
                        msgs.as_mut_ptr(),
                        BATCH as u32,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if r <= 0 {
                    break;
                }
                received.fetch_add(r as u64, Ordering::Relaxed);
                if (r as usize) < BATCH {
                    break;
                }
            }
        }
    }
    drop(bufs);
}
