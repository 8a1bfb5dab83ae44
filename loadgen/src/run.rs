//! The run: start peers at the ramp rate, measure for the duration, stop
//! everyone, report.
//!
//! Peers live on thread-per-core runtimes: one OS thread per `threads`,
//! each driving a single-threaded tokio runtime, with peers dealt to them
//! round-robin. A peer's tasks (signaling, ICE, DTLS, media) then stay on
//! one thread, no work-stealing moves them, and the only state shared
//! across threads is the run's atomic counters. The caller's runtime only
//! paces the ramp, samples and reports.

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle as ThreadHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Scenario;
use crate::peer::{self, Ctx, Role};
use crate::report::{ProcSample, Report, Window};
use crate::stats::{self, Stats};
use crate::transport::Identity;

/// How long peers get to say goodbye after the run.
const TEARDOWN: Duration = Duration::from_secs(3);

/// Runs `scenario` until its duration has passed after the last peer was
/// started, or until `interrupt` completes (the report is then partial).
/// Failures of single peers never stop the run.
pub async fn run(
    scenario: Scenario,
    interrupt: impl Future<Output = ()> + Send,
) -> Result<Report, String> {
    let _ = stats::epoch();
    let identity = Identity::generate().map_err(|e| format!("DTLS certificate: {e}"))?;
    let ctx = Arc::new(Ctx {
        scenario,
        stats: Arc::new(Stats::new()),
        identity,
    });
    let s = &ctx.scenario;
    let (stop_tx, stop) = watch::channel(false);
    let progress = s.progress.then(|| tokio::spawn(progress(ctx.clone())));
    tokio::pin!(interrupt);
    let mut interrupted = false;

    // Publishers first, so that subscribers find tracks to subscribe to.
    let mut order = Vec::with_capacity(s.peers());
    for (role, per_room) in [
        (Role::Publisher, s.publishers),
        (Role::Subscriber, s.subscribers),
    ] {
        for i in 0..per_room {
            for r in 0..s.rooms {
                order.push((role, format!("{}-{r}", s.room_prefix), i));
            }
        }
    }
    let cores = Cores::start(s.threads)?;
    let started = Instant::now();
    let mut peers: Vec<JoinHandle<()>> = Vec::with_capacity(order.len());
    for (n, (role, room, i)) in order.into_iter().enumerate() {
        if let Some(rate) = s.ramp {
            let at = started + Duration::from_secs_f64(n as f64 / rate);
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = &mut interrupt => { interrupted = true; break; }
            }
        }
        peers.push(cores.spawn(n, peer::run(ctx.clone(), role, room, i, stop.clone())));
    }

    let server_pid = s.server_pid.map(|p| p.to_string());
    let sample = || {
        (
            server_pid.as_deref().and_then(ProcSample::read),
            ProcSample::read("self"),
        )
    };
    let start = ctx.stats.snapshot();
    let (server_start, me_start) = sample();
    if !interrupted {
        tokio::select! {
            _ = tokio::time::sleep(s.duration) => {}
            _ = &mut interrupt => interrupted = true,
        }
    }
    let end = ctx.stats.snapshot();
    let (server_end, me_end) = sample();
    let window = Window {
        start,
        end,
        server: server_start.zip(server_end),
        me: me_start.zip(me_end),
        interrupted,
    };
    let report = Report::build(s, &ctx.stats, &window);

    let _ = stop_tx.send(true);
    if let Some(p) = progress {
        p.abort();
    }
    let _ = tokio::time::timeout(TEARDOWN, async {
        for p in &mut peers {
            let _ = p.await;
        }
    })
    .await;
    for p in &peers {
        p.abort();
    }
    // Joining the threads blocks; it is quick once every task is aborted.
    tokio::task::spawn_blocking(move || cores.stop())
        .await
        .map_err(|e| format!("peer threads: {e}"))?;
    Ok(report)
}

/// The peer threads: one single-threaded runtime each.
struct Cores {
    handles: Vec<Handle>,
    threads: Vec<(oneshot::Sender<()>, ThreadHandle<()>)>,
}

impl Cores {
    /// Starts `n` (at least one) threads and waits until their runtimes run.
    fn start(n: usize) -> Result<Self, String> {
        let mut cores = Cores {
            handles: Vec::new(),
            threads: Vec::new(),
        };
        for k in 0..n.max(1) {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("loadgen-core-{k}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stop_rx.await;
                    });
                    // Tasks still alive (aborted peers) drop with `rt` here.
                })
                .map_err(|e| format!("cannot start a peer thread: {e}"))?;
            let handle = handle_rx
                .recv()
                .map_err(|_| "a peer thread died at start".to_owned())??;
            cores.handles.push(handle);
            cores.threads.push((stop_tx, thread));
        }
        Ok(cores)
    }

    /// Spawns peer number `n` on its thread.
    fn spawn<F>(&self, n: usize, fut: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handles[n % self.handles.len()].spawn(fut)
    }

    /// Ends every thread's runtime and joins the threads.
    fn stop(self) {
        for (stop, thread) in self.threads {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// A progress line on stderr every second.
async fn progress(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let started = Instant::now();
    let mut last = ctx.stats.snapshot();
    let total = ctx.scenario.peers();
    loop {
        tick.tick().await;
        let now = ctx.stats.snapshot();
        let r = now.since(&last);
        let st = &ctx.stats;
        let p50 = st
            .latency_us
            .quantile(0.5)
            .map_or(0.0, |v| v as f64 / 1000.0);
        eprintln!(
            "[{:>4.0}s] peers {}/{} joined, {} failed | tx {:.0} pkt/s {:.1} Mbit/s | rx {:.0} pkt/s {:.1} Mbit/s | loss {:.2} % | latency p50 {:.2} ms",
            started.elapsed().as_secs_f64(),
            st.joined.load(std::sync::atomic::Ordering::Relaxed),
            total,
            st.failed_total(),
            r.tx_packets_per_s,
            r.tx_kbps / 1000.0,
            r.rx_packets_per_s,
            r.rx_kbps / 1000.0,
            r.loss_ratio * 100.0,
            p50,
        );
        last = now;
    }
}
