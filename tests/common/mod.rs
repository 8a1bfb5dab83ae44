//! Helpers for the integration tests that drive Weir with an independent
//! WebRTC stack (webrtc-rs): test harness, payload generation and checks,
//! peer helpers and SDP helpers.
#![allow(dead_code)]

pub mod attacker;
pub mod data;
pub mod media;
pub mod metrics;
pub mod peers;
pub mod raw_sctp;
pub mod relay;
pub mod sdp;

use std::future::Future;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

/// Installs a tracing subscriber (which also bridges webrtc-rs's `log`
/// records) when `RUST_LOG` is set.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

/// The tests of one binary run one at a time: the machine has 2 cores and
/// each test runs a worker, two or three peer connections and media timers.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs one async test body on its own multi-thread runtime, one test at a
/// time, bounded by `limit`. An `Err` or an overall timeout fails the test.
pub fn run<Fut>(name: &str, limit: Duration, body: impl FnOnce() -> Fut)
where
    Fut: Future<Output = anyhow::Result<()>>,
{
    init_tracing();
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = std::time::Instant::now();
    let res = rt.block_on(async { tokio::time::timeout(limit, body()).await });
    rt.shutdown_timeout(Duration::from_secs(5));
    match res {
        Ok(Ok(())) => eprintln!("[{name}] passed in {:?}", started.elapsed()),
        Ok(Err(e)) => panic!("[{name}] failed after {:?}: {e:?}", started.elapsed()),
        Err(_) => panic!("[{name}] did not finish within the overall limit of {limit:?}"),
    }
}

/// A base port such that `base .. base + span` are all free UDP ports on
/// 127.0.0.1, chosen in 45000..55000. Successive calls in one process move
/// on so that two workers never get the same range.
pub fn free_base_port(span: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = (std::process::id().wrapping_mul(7919) ^ nanos) as u64;
    let range = 10_000u64 - span as u64;
    for attempt in 0..500u64 {
        let step = NEXT.fetch_add(span, Ordering::Relaxed) as u64;
        let base = 45_000 + ((seed + attempt * 97 + step) % range) as u16;
        let held: Result<Vec<UdpSocket>, _> = (0..span)
            .map(|i| UdpSocket::bind(("127.0.0.1", base + i)))
            .collect();
        if held.is_ok() {
            return base;
        }
    }
    panic!("no free UDP port range of {span} in 45000..55000");
}

/// Waits for `fut` at most `limit`, naming `what` in the error.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {limit:?} waiting for {what}"))
}

/// Waits until `f` holds, polling every 20 ms: for state that has no change
/// event to wait on (counters, listings).
pub async fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    while !f() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The IO backend the tests' workers use: `WEIR_IO_BACKEND` (`auto`,
/// `io-uring` or `mmsg`), so `scripts/test` runs the same tests on both
/// backends. Unknown values fail loudly rather than test the wrong one.
pub fn io_backend_from_env() -> weir::IoBackend {
    match std::env::var("WEIR_IO_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("auto") => weir::IoBackend::Auto,
        Ok("io-uring") => weir::IoBackend::IoUring,
        Ok("mmsg") => weir::IoBackend::Mmsg,
        Ok(other) => panic!("WEIR_IO_BACKEND={other}: expected auto, io-uring or mmsg"),
    }
}
