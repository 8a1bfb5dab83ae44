//! The run: start peers at the ramp rate, measure for the duration, stop
//! everyone, report.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
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
        stats: Stats::new(),
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
    let started = Instant::now();
    let mut peers = JoinSet::new();
    for (n, (role, room, i)) in order.into_iter().enumerate() {
        if let Some(rate) = s.ramp {
            let at = started + Duration::from_secs_f64(n as f64 / rate);
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = &mut interrupt => { interrupted = true; break; }
            }
        }
        peers.spawn(peer::run(ctx.clone(), role, room, i, stop.clone()));
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
        while peers.join_next().await.is_some() {}
    })
    .await;
    peers.abort_all();
    Ok(report)
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
