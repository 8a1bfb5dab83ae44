//! The `Worker`: the data-plane cores, the DTLS identity and id allocation.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_dataplane::driver::{CoreHandle, IoBackendChoice};
use weir_dataplane::{DataPlane, DataPlaneConfig};

use crate::datachannel::LinkRole;
use crate::dtls::DtlsIdentity;
use crate::dtls_slot::ParkCounters;
use crate::error::{Error, Result};
use crate::router::{Router, RouterConfig, RouterInner};
use crate::stats::StreamRegistry;
use crate::types::RouterId;

/// How a worker places transports on data-plane cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// The core with the fewest transports.
    #[default]
    LeastLoaded,
    /// All transports of a router on one core, chosen least-loaded when the
    /// router gets its first transport (no cross-core hop for its media).
    RoomAffine,
}

/// The data-plane IO backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackend {
    /// The best one this build and kernel offer.
    #[default]
    Auto,
    /// io_uring with multishot receive and batched sends.
    IoUring,
    /// recvmmsg/sendmmsg.
    Mmsg,
}

/// Configuration of a [`Worker`].
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Address the media sockets bind to.
    pub media_ip: IpAddr,
    /// Address put in ICE candidates, for servers behind NAT (defaults to
    /// `media_ip`).
    pub announced_ip: Option<IpAddr>,
    /// Core N listens on `media_port + N`; 0 lets the OS choose (tests).
    pub media_port: u16,
    /// Number of data-plane cores; 0 means one per CPU.
    pub cores: usize,
    /// A transport with no valid ICE check for this long is closed.
    pub consent_timeout: Duration,
    /// Transport placement.
    pub placement: Placement,
    /// IO backend.
    pub io_backend: IoBackend,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            media_ip: IpAddr::from([127, 0, 0, 1]),
            announced_ip: None,
            media_port: 40000,
            cores: 0,
            consent_timeout: Duration::from_secs(30),
            placement: Placement::default(),
            io_backend: IoBackend::default(),
        }
    }
}

pub(crate) struct WorkerInner {
    pub(crate) dataplane: DataPlane,
    pub(crate) identity: Arc<DtlsIdentity>,
    /// DTLS connections parked after their handshake (see [`crate::dtls_slot`]).
    pub(crate) dtls_park: Arc<ParkCounters>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) config: WorkerConfig,
    next_id: AtomicU64,
    room_cores: Mutex<HashMap<RouterId, usize>>,
    /// Live subscribe transports per core (see [`WorkerInner::place`]).
    subscribe_transports: Box<[AtomicUsize]>,
    pub(crate) routers: Mutex<Vec<std::sync::Weak<RouterInner>>>,
    /// Every live published stream and subscription, for metrics.
    pub(crate) streams: StreamRegistry,
}

impl WorkerInner {
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn core(&self, index: usize) -> &CoreHandle {
        &self.dataplane.cores()[index]
    }

    /// The address our candidates name for `core`.
    pub(crate) fn candidate_addr(&self, core: usize) -> SocketAddr {
        let local = self.core(core).local_addr();
        SocketAddr::new(self.config.announced_ip.unwrap_or(local.ip()), local.port())
    }

    /// The core a new transport (or relayed track) of `router` with
    /// `role` goes to.
    ///
    /// Least-loaded placement balances subscribe transports among
    /// themselves and the rest among themselves: a room's cost is its
    /// fan-out, which subscribe transports carry. Counting all sessions
    /// alike fails for the common case of a peer that gets a publish and a
    /// subscribe transport on joining: created in that order, every publish
    /// transport lands on one core and every subscribe transport on the
    /// other, so one core did all the sending.
    pub(crate) fn place(&self, router: &RouterId, role: LinkRole) -> usize {
        match self.config.placement {
            Placement::LeastLoaded => self.least_loaded(role),
            Placement::RoomAffine => {
                let mut map = self.room_cores.lock().unwrap_or_else(|e| e.into_inner());
                *map.entry(router.clone())
                    .or_insert_with(|| self.dataplane.least_loaded())
            }
        }
    }

    fn least_loaded(&self, role: LinkRole) -> usize {
        let cores = self.dataplane.cores();
        let load = |c: &CoreHandle| {
            let all = c.session_count();
            let subs = self
                .subscribe_transports
                .get(c.index())
                .map_or(0, |n| n.load(Ordering::Relaxed));
            match role {
                LinkRole::Subscribe => (subs, all),
                LinkRole::Publish => (all.saturating_sub(subs), all),
            }
        };
        cores
            .iter()
            .min_by_key(|c| load(c))
            .map_or(0, |c| c.index())
    }

    /// Counts a subscribe transport placed on `core` (until
    /// [`WorkerInner::subscribe_transport_gone`]).
    pub(crate) fn subscribe_transport_placed(&self, core: usize) {
        if let Some(n) = self.subscribe_transports.get(core) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A subscribe transport on `core` was dropped.
    pub(crate) fn subscribe_transport_gone(&self, core: usize) {
        if let Some(n) = self.subscribe_transports.get(core) {
            let _ = n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    pub(crate) fn forget_router(&self, router: &RouterId) {
        self.room_cores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(router);
    }
}

/// The pool of data-plane cores. Create one per process; cheap to clone.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<WorkerInner>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("media", &self.media_addrs())
            .finish()
    }
}

impl Worker {
    /// Binds one UDP socket per core and starts the data-plane threads.
    /// Must be called inside a tokio runtime, which then runs the control
    /// plane's tasks (DTLS handshakes, events).
    pub async fn new(config: WorkerConfig) -> Result<Worker> {
        let io_backend = match config.io_backend {
            IoBackend::Auto => IoBackendChoice::Auto,
            IoBackend::IoUring => IoBackendChoice::IoUring,
            IoBackend::Mmsg => IoBackendChoice::Mmsg,
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("Worker::new must run inside a tokio runtime".into()))?;
        let identity = DtlsIdentity::generate()?;
        let dataplane = DataPlane::start(DataPlaneConfig {
            ip: config.media_ip,
            base_port: config.media_port,
            cores: config.cores,
            consent_timeout: config.consent_timeout,
            io_backend,
            ..DataPlaneConfig::default()
        })
        .map_err(|e| Error::DataPlane(e.to_string()))?;
        let cores = dataplane.cores().len();
        Ok(Worker {
            inner: Arc::new(WorkerInner {
                dataplane,
                identity: Arc::new(identity),
                dtls_park: Arc::default(),
                runtime,
                config,
                next_id: AtomicU64::new(1),
                room_cores: Mutex::new(HashMap::new()),
                subscribe_transports: (0..cores).map(|_| AtomicUsize::new(0)).collect(),
                routers: Mutex::new(Vec::new()),
                streams: StreamRegistry::default(),
            }),
        })
    }

    /// Creates a router (a room).
    pub fn create_router(&self, config: RouterConfig) -> Router {
        let id = config
            .id
            .unwrap_or_else(|| RouterId(format!("r{}", self.inner.next_id())));
        let router = Router::new(self.inner.clone(), id);
        let mut routers = self.inner.routers.lock().unwrap_or_else(|e| e.into_inner());
        routers.retain(|r| r.strong_count() > 0);
        routers.push(router.downgrade());
        router
    }

    /// The media socket address of every core.
    pub fn media_addrs(&self) -> Vec<SocketAddr> {
        self.inner
            .dataplane
            .cores()
            .iter()
            .map(|c| c.local_addr())
            .collect()
    }

    /// Counters in the Prometheus text exposition format.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let cores = self.inner.dataplane.cores();
        let names = cores
            .first()
            .map(|c| c.counters().snapshot())
            .unwrap_or_default();
        for (i, (name, _)) in names.iter().enumerate() {
            let _ = writeln!(out, "# TYPE weir_core_{name}_total counter");
            for c in cores {
                let v = c.counters().snapshot()[i].1;
                let _ = writeln!(out, "weir_core_{name}_total{{core=\"{}\"}} {v}", c.index());
            }
        }
        let io_names = cores
            .first()
            .map(|c| c.io_counters().snapshot())
            .unwrap_or_default();
        for (i, (name, _)) in io_names.iter().enumerate() {
            let _ = writeln!(out, "# TYPE weir_io_{name}_total counter");
            for c in cores {
                let v = c.io_counters().snapshot()[i].1;
                let _ = writeln!(out, "weir_io_{name}_total{{core=\"{}\"}} {v}", c.index());
            }
        }
        let _ = writeln!(out, "# TYPE weir_core_sessions gauge");
        for c in cores {
            let _ = writeln!(
                out,
                "weir_core_sessions{{core=\"{}\"}} {}",
                c.index(),
                c.session_count()
            );
        }
        let routers: Vec<_> = {
            let r = self.inner.routers.lock().unwrap_or_else(|e| e.into_inner());
            r.iter().filter_map(|w| w.upgrade()).collect()
        };
        let _ = writeln!(
            out,
            "# TYPE weir_routers gauge\nweir_routers {}",
            routers.len()
        );
        let tracks: usize = routers.iter().map(|r| r.track_count()).sum();
        let _ = writeln!(out, "# TYPE weir_tracks gauge\nweir_tracks {tracks}");
        let park = &self.inner.dtls_park;
        let _ = writeln!(
            out,
            "# TYPE weir_dtls_parked gauge\nweir_dtls_parked {}\n\
             # TYPE weir_dtls_parks_total counter\nweir_dtls_parks_total {}\n\
             # TYPE weir_dtls_resumes_total counter\nweir_dtls_resumes_total {}",
            park.parked.load(Ordering::Relaxed),
            park.parks.load(Ordering::Relaxed),
            park.resumes.load(Ordering::Relaxed),
        );
        self.inner.streams.write_metrics(&mut out);
        out
    }

    /// Stops the data plane. Transports still open stop forwarding.
    pub async fn close(&self) {
        self.inner.dataplane.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::TransportConfig;

    /// What weir-server does for each joining peer: a publish transport,
    /// then a subscribe transport. The subscribe transports, which carry
    /// the room's fan-out, must be spread over the cores, not all put on
    /// the core left emptier by the publish transport just placed.
    #[tokio::test]
    async fn subscribe_transports_are_balanced_apart_from_publish_transports() {
        let worker = Worker::new(WorkerConfig {
            media_port: 0,
            cores: 2,
            ..WorkerConfig::default()
        })
        .await
        .unwrap();
        let router = worker.create_router(RouterConfig::default());
        let mut kept = Vec::new();
        let mut subscribe_cores = [0usize; 2];
        let mut publish_cores = [0usize; 2];
        for _ in 0..10 {
            let p = router
                .create_publish_transport(TransportConfig::default())
                .await
                .unwrap();
            let s = router
                .create_subscribe_transport(TransportConfig::default())
                .await
                .unwrap();
            publish_cores[p.core_index()] += 1;
            subscribe_cores[s.core_index()] += 1;
            kept.push((p, s));
        }
        assert_eq!(subscribe_cores, [5, 5], "subscribe transports spread");
        assert_eq!(publish_cores, [5, 5], "publish transports spread");
        // Dropped transports no longer count: the next one goes where
        // subscribe transports are fewest.
        kept.retain(|(_, s)| s.core_index() != 0);
        tokio::task::yield_now().await;
        let s = router
            .create_subscribe_transport(TransportConfig::default())
            .await
            .unwrap();
        assert_eq!(s.core_index(), 0);
    }
}
