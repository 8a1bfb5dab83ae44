//! Server memory per subscribe transport (issue 4): a counting global
//! allocator measures the heap bytes Weir keeps for each subscribe transport
//! with one video and one audio subscription, after real ICE and DTLS with
//! webrtc-rs peers over 127.0.0.1, and after the transport parked its DTLS
//! connection (`controlplane/src/dtls_slot.rs`), as it does once the peer's
//! first RTCP packet shows it holds the SRTP keys: webrtc-rs peers send
//! receiver reports on their own, and [`key`] has each send one at once.
//!
//! The webrtc-rs peers live in the same process, so their threads are
//! marked and their allocations are not counted: the peers run on a runtime
//! of their own whose threads set [`EXCLUDED`], while the Weir worker (its
//! tokio tasks and its data-plane threads) and the SDK calls run on counted
//! threads. Values that cross between the two (SDP strings) are copied on
//! the counted side and dropped on the peers' side, so neither side's
//! counter sees the other's memory.
//!
//! The bound is on bytes, not time: live heap after the subscribers joined
//! minus live heap before, over the number of subscribers. The publisher's
//! media runs until its tracks are published and stops before the
//! subscribers join, so the shared packet rings and the transmit buffer
//! pool (sized by traffic, not by transports) stay out of the figure.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::metrics::wait_total;
use common::peers::{new_api, MediaConfig, PubPeer, SubPeer};
use common::{free_base_port, within};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use weir::{
    ConnectionState, MediaKind, Publisher, SubscribeTransport, Subscriber, Worker, WorkerConfig,
};

/// A subscribe transport with one video and one audio track, beyond the
/// shared rings: measured 24,300 B (29,300-29,450 B before SRTP's
/// per-stream tables started empty and its cipher states and the core's
/// subscriptions were boxed). Issue 4's target
/// is 64 KiB; the bound sits just above the measurement so that a change
/// that brings the DTLS connection's ~20 KB back fails here.
const BOUND_PER_TRANSPORT: i64 = 30 * 1024;
/// The same with transport-cc negotiated (every browser does), which adds
/// the send-side bandwidth estimator: its send-record ring starts at 128
/// records of 16 B and grows only when feedback lags behind the send rate
/// (`dataplane/src/bwe/history.rs`), its per-feedback scratch lists start
/// at 16 entries. Measured 30,000 B in all (35,050-35,300 B before the
/// SRTP tables shrank, 57,600-57,700 B before the DTLS connection was
/// parked; 176,705 B with a fixed ring of 2,048 records of 56 B and
/// 512-entry scratch lists).
const BOUND_PER_TRANSPORT_WITH_TWCC: i64 = 36 * 1024;
/// Subscribers joined before the first sample: they warm the worker's
/// pools, tables and the allocator's arenas.
const WARM_UP: usize = 4;
/// Subscribers measured.
const MEASURED: usize = 16;
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

struct Counting;

/// Heap bytes allocated and not yet freed by counted threads.
static LIVE: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// Set on the webrtc-rs peers' threads: their allocations are not Weir's.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

fn add(n: i64) {
    LIVE.fetch_add(n, Ordering::Relaxed);
}

fn counted() -> bool {
    // `try_with` because the allocator also runs while thread-locals are
    // torn down.
    !EXCLUDED.try_with(Cell::get).unwrap_or(true)
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() && counted() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() && counted() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        if counted() {
            add(-(layout.size() as i64));
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() && counted() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs the future `make` returns on the peers' (uncounted) runtime and
/// waits for it. The future is built and boxed over there: webrtc-rs
/// futures are large, and a task spawned from here would be allocated here
/// and freed there, which the counter would book as Weir's.
async fn on_peers<T, F>(
    peers: &tokio::runtime::Handle,
    make: impl FnOnce() -> F + Send + 'static,
) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    peers
        .spawn(async move { Box::pin(make()).await })
        .await
        .context("peer task panicked")?
}

/// Copies a string the peers made onto the counted side and drops the
/// original over there.
async fn take_string(peers: &tokio::runtime::Handle, s: String) -> String {
    let mine = s.clone();
    let _ = peers.spawn(async move { drop(s) }).await;
    mine
}

/// One subscriber: its Weir transport and subscriptions (counted) and its
/// webrtc-rs peer (not counted).
struct Joined {
    _transport: SubscribeTransport,
    _subs: (Subscriber, Subscriber),
    _peer: SubPeer,
}

/// Subscribes one webrtc-rs peer to `video` and `audio` and waits until
/// the Weir side reports the transport connected (ICE and DTLS done, SRTP
/// keys installed).
async fn join(
    peers: &tokio::runtime::Handle,
    router: &weir::Router,
    video: &weir::TrackId,
    audio: &weir::TrackId,
    twcc: bool,
) -> Result<Joined> {
    let transport = router
        .create_subscribe_transport(Default::default())
        .await
        .context("create_subscribe_transport")?;
    let (connected_tx, mut connected) = watch::channel(false);
    transport.on_connection_state(move |s| {
        if s == ConnectionState::Connected {
            let _ = connected_tx.send(true);
        }
    });
    let peer = on_peers(peers, || async {
        let api = new_api()?;
        SubPeer::new(&api, "memory").await
    })
    .await?;
    let pc = peer.pc.clone();
    let (video_sub, offer) = transport
        .subscribe(video)
        .await
        .context("subscribe(video)")?;
    let answer = answer_on_peers(peers, &pc, offer, twcc).await?;
    transport
        .set_answer(&answer)
        .await
        .context("set_answer 1")?;
    let (audio_sub, offer) = transport
        .subscribe(audio)
        .await
        .context("subscribe(audio)")?;
    let answer = answer_on_peers(peers, &pc, offer, twcc).await?;
    transport
        .set_answer(&answer)
        .await
        .context("set_answer 2")?;
    within(STEP_TIMEOUT, "the subscribe transport to connect", async {
        connected.wait_for(|c| *c).await.map(|_| ())
    })
    .await?
    .context("state watch closed")?;
    Ok(Joined {
        _transport: transport,
        _subs: (video_sub, audio_sub),
        _peer: peer,
    })
}

/// The peer's answer to `offer`, made on the peers' runtime; without
/// `twcc`, with transport-cc (its header extension and feedback) removed,
/// as a client that does not support it would answer.
async fn answer_on_peers(
    peers: &tokio::runtime::Handle,
    pc: &std::sync::Arc<webrtc::peer_connection::RTCPeerConnection>,
    offer: String,
    twcc: bool,
) -> Result<String> {
    let pc = pc.clone();
    let answer = on_peers(peers, move || async move {
        use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
        pc.set_remote_description(RTCSessionDescription::offer(offer)?)
            .await?;
        let answer = pc.create_answer(None).await?;
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(answer).await?;
        let _ = gathered.recv().await;
        Ok(pc
            .local_description()
            .await
            .context("no local description")?
            .sdp)
    })
    .await?;
    let answer = take_string(peers, answer).await;
    if twcc {
        return Ok(answer);
    }
    Ok(answer
        .split_inclusive('\n')
        .filter(|l| !l.contains("transport-wide-cc") && !l.contains("transport-cc"))
        .collect())
}

fn runtime(threads: usize, excluded: bool) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .on_thread_start(move || EXCLUDED.with(|e| e.set(excluded)))
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn subscribe_transport_heap_stays_under_the_issue_4_bound() {
    common::init_tracing();
    let peers_rt = runtime(1, true);
    let weir_rt = runtime(1, false);
    let peers = peers_rt.handle().clone();
    let res = weir_rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(240), measure(&peers)).await });
    match res {
        Ok(Ok((plain, twcc))) => {
            eprintln!("heap per subscribe transport: {plain} bytes, {twcc} bytes with transport-cc")
        }
        Ok(Err(e)) => panic!("{e:?}"),
        Err(_) => panic!("the measurement did not finish within 240 s"),
    }
    weir_rt.shutdown_timeout(Duration::from_secs(5));
    peers_rt.shutdown_timeout(Duration::from_secs(5));
}

async fn measure(peers: &tokio::runtime::Handle) -> Result<(i64, i64)> {
    let config = WorkerConfig {
        media_ip: IpAddr::from([127, 0, 0, 1]),
        media_port: free_base_port(4),
        cores: 1,
        io_backend: common::io_backend_from_env(),
        ..Default::default()
    };
    let worker = Worker::new(config).await.context("Worker::new")?;
    let router = worker.create_router(Default::default());

    // One publisher with VP8 and Opus.
    let transport = router
        .create_publish_transport(Default::default())
        .await
        .context("create_publish_transport")?;
    let mut publisher = on_peers(peers, || async {
        let api = new_api()?;
        PubPeer::new(&api).await
    })
    .await?;
    let pc = publisher.pc.clone();
    let offer = on_peers(peers, move || async move {
        let offer = pc.create_offer(None).await?;
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(offer).await?;
        let _ = gathered.recv().await;
        Ok(pc.local_description().await.context("no offer")?.sdp)
    })
    .await?;
    let offer = take_string(peers, offer).await;
    let answer = transport.get_answer(&offer).await.context("get_answer")?;
    let pc = publisher.pc.clone();
    on_peers(peers, move || async move {
        use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
        pc.set_remote_description(RTCSessionDescription::answer(answer)?)
            .await?;
        Ok(())
    })
    .await?;
    let publisher = on_peers(peers, move || async move {
        publisher.start_media(MediaConfig::default());
        Ok(publisher)
    })
    .await?;
    let mut published: Vec<Publisher> = Vec::new();
    for t in transport.offered_tracks() {
        let p = within(STEP_TIMEOUT, "publish", transport.publish(&t.mid))
            .await?
            .context("publish")?;
        published.push(p);
    }
    let id = |kind| {
        published
            .iter()
            .find(|p| p.info().kind == kind)
            .map(|p| p.id().clone())
    };
    // Media made the tracks publishable; stopped now, it leaves the
    // transmit pool and packet rings alone during the measurement, so what
    // grows is the transports' own state.
    publisher.stop_media();
    let video = id(MediaKind::Video).context("no video track")?;
    let audio = id(MediaKind::Audio).context("no audio track")?;

    // The publisher's transport parked its DTLS connection on its first
    // SRTP packet; the subscribers' do once `key` has them send RTCP.
    wait_total(&worker, "weir_dtls_parked", 1, STEP_TIMEOUT).await?;
    let mut joined = Vec::new();
    let mut figures = Vec::new();
    let mut parked = 1;
    for (twcc, bound) in [
        (false, BOUND_PER_TRANSPORT),
        (true, BOUND_PER_TRANSPORT_WITH_TWCC),
    ] {
        let mut before = 0;
        for i in 0..WARM_UP + MEASURED {
            if i == WARM_UP {
                before = LIVE.load(Ordering::Relaxed);
            }
            let j = join(peers, &router, &video, &audio, twcc).await?;
            key(peers, &j._peer).await?;
            parked += 1;
            wait_total(&worker, "weir_dtls_parked", parked, STEP_TIMEOUT).await?;
            joined.push(j);
        }
        let after = LIVE.load(Ordering::Relaxed);
        let per_transport = (after - before) / MEASURED as i64;
        eprintln!(
            "transport-cc {twcc}: live heap {before} → {after} bytes \
             over {MEASURED} subscribe transports: {per_transport} bytes each"
        );
        ensure!(
            per_transport > 0,
            "a subscribe transport costs nothing? ({before} → {after}): the counter is broken"
        );
        ensure!(
            per_transport <= bound,
            "a subscribe transport (transport-cc {twcc}) keeps \
             {per_transport} bytes of heap, over the bound of {bound} bytes"
        );
        figures.push(per_transport);
    }

    // Drop the subscribers' peers on their own runtime (uncounted), then
    // the rest.
    let peers_of: Vec<SubPeer> = joined.into_iter().map(|j| j._peer).collect();
    let _ = peers
        .spawn(async move {
            for p in peers_of {
                p.close().await;
            }
        })
        .await;
    let _ = peers
        .spawn(async move {
            let p = publisher;
            let _ = p.pc.close().await;
        })
        .await;
    worker.close().await;
    Ok((figures[0], figures[1]))
}

/// Has `peer` send one RTCP receiver report, as a browser does within a
/// second of receiving media: Weir's first authenticated packet from it.
async fn key(peers: &tokio::runtime::Handle, peer: &SubPeer) -> Result<()> {
    let pc = peer.pc.clone();
    on_peers(peers, move || async move {
        let rr = webrtc::rtcp::receiver_report::ReceiverReport {
            ssrc: 1,
            ..Default::default()
        };
        pc.write_rtcp(&[Box::new(rr)]).await?;
        Ok(())
    })
    .await
}
