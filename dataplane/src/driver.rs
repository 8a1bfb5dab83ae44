//! The IO driver: one thread per data-plane core, named `weir-dp-N` and
//! pinned to core N, each with its own UDP socket on port base + N.
//!
//! This first driver is a plain readiness loop on a current-thread tokio
//! runtime (one `recvfrom`/`sendto` per datagram). The io_uring and mmsg
//! backends replace only this file; [`Core`] stays as it is.
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::core::{Core, CoreInput, SessionEvent, SessionId};
use crate::counters::{CoreCounters, TransportCounters};
use crate::ice::IceCredentials;

/// How the data plane starts.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// Address the media sockets bind to.
    pub ip: IpAddr,
    /// Core N binds `base_port + N`; 0 lets the OS pick every port (tests).
    pub base_port: u16,
    /// Number of cores (threads); 0 means one per available CPU.
    pub cores: usize,
    /// ICE consent timeout (RFC 7675 suggests 30 s).
    pub consent_timeout: Duration,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            ip: IpAddr::from([127, 0, 0, 1]),
            base_port: 40000,
            cores: 0,
            consent_timeout: Duration::from_secs(30),
        }
    }
}

/// Where events of a session go.
pub type EventSender = UnboundedSender<(SessionId, SessionEvent)>;

enum DriverMsg {
    Input(CoreInput),
    Register { id: SessionId, events: EventSender },
}

/// A handle on one core: its address and command channel.
#[derive(Debug)]
pub struct CoreHandle {
    index: usize,
    local_addr: SocketAddr,
    tx: UnboundedSender<DriverMsg>,
    counters: Arc<CoreCounters>,
    sessions: Arc<AtomicUsize>,
}

impl std::fmt::Debug for DriverMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverMsg::Input(i) => i.fmt(f),
            DriverMsg::Register { id, .. } => write!(f, "Register({id})"),
        }
    }
}

impl CoreHandle {
    /// The core's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The address its socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its counters.
    pub fn counters(&self) -> &Arc<CoreCounters> {
        &self.counters
    }

    /// Number of sessions placed on it.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Sends a command; `false` if the core has stopped.
    pub fn send(&self, input: CoreInput) -> bool {
        self.tx.send(DriverMsg::Input(input)).is_ok()
    }

    /// Places a new session on this core; its events go to `events`.
    pub fn add_session(
        &self,
        id: SessionId,
        credentials: IceCredentials,
        counters: Arc<TransportCounters>,
        events: EventSender,
    ) -> bool {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        self.tx.send(DriverMsg::Register { id, events }).is_ok()
            && self.send(CoreInput::AddSession { id, credentials, counters })
    }

    /// Removes a session.
    pub fn remove_session(&self, id: SessionId) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
        self.send(CoreInput::RemoveSession { id });
    }
}

/// The running data plane: one thread and socket per core.
#[derive(Debug)]
pub struct DataPlane {
    cores: Vec<CoreHandle>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl DataPlane {
    /// Binds every core's socket and starts its thread. Fails (with the
    /// address) if a port is taken.
    pub fn start(config: DataPlaneConfig) -> io::Result<DataPlane> {
        let n = if config.cores == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.cores
        };
        let mut sockets = Vec::with_capacity(n);
        for i in 0..n {
            let port = if config.base_port == 0 {
                0
            } else {
                u16::try_from(usize::from(config.base_port) + i)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "media port out of range"))?
            };
            let addr = SocketAddr::new(config.ip, port);
            let sock = UdpSocket::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("binding media socket {addr}: {e}")))?;
            sock.set_nonblocking(true)?;
            sockets.push(sock);
        }
        let mut txs = Vec::with_capacity(n);
        let mut rxs = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = unbounded_channel();
            txs.push(tx);
            rxs.push(rx);
        }
        let core_ids = core_affinity::get_core_ids().unwrap_or_default();
        let mut cores = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (i, (sock, rx)) in sockets.into_iter().zip(rxs).enumerate() {
            let local_addr = sock.local_addr()?;
            let counters = Arc::new(CoreCounters::default());
            let peers = txs.clone();
            let pin = core_ids.get(i % core_ids.len().max(1)).copied();
            let c = counters.clone();
            let consent = config.consent_timeout;
            let handle = std::thread::Builder::new().name(format!("weir-dp-{i}")).spawn(move || {
                if let Some(id) = pin {
                    core_affinity::set_for_current(id);
                }
                let core = Core::new(i, consent, c, Instant::now());
                if let Err(e) = run(core, sock, rx, peers) {
                    tracing::error!("data-plane core {i} stopped: {e}");
                }
            })?;
            threads.push(handle);
            cores.push(CoreHandle {
                index: i,
                local_addr,
                tx: txs[i].clone(),
                counters,
                sessions: Arc::new(AtomicUsize::new(0)),
            });
        }
        tracing::info!(cores = n, backend = "readiness (tokio)", "data plane started");
        Ok(DataPlane { cores, threads: Mutex::new(threads) })
    }

    /// The cores.
    pub fn cores(&self) -> &[CoreHandle] {
        &self.cores
    }

    /// The core with the fewest sessions.
    pub fn least_loaded(&self) -> usize {
        self.cores.iter().min_by_key(|c| c.session_count()).map_or(0, |c| c.index)
    }

    /// Stops every core and waits for its thread.
    pub fn shutdown(&self) {
        for c in &self.cores {
            let _ = c.tx.send(DriverMsg::Input(CoreInput::Shutdown));
        }
        // A poisoned lock only means a panic elsewhere; the handles are still valid.
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Most datagrams read in one turn before commands get a look in.
const RX_BATCH: usize = 64;

fn run(
    mut core: Core,
    sock: UdpSocket,
    mut rx: UnboundedReceiver<DriverMsg>,
    peers: Vec<UnboundedSender<DriverMsg>>,
) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let sock = tokio::net::UdpSocket::from_std(sock)?;
        let mut events: HashMap<SessionId, EventSender> = HashMap::new();
        let mut buf = vec![0u8; 2048];
        loop {
            flush(&mut core, &sock, &peers, &mut events).await;
            let deadline = tokio::time::Instant::from_std(core.poll_timeout());
            tokio::select! {
                msg = rx.recv() => match msg {
                    None | Some(DriverMsg::Input(CoreInput::Shutdown)) => break,
                    Some(DriverMsg::Register { id, events: tx }) => { events.insert(id, tx); }
                    Some(DriverMsg::Input(input)) => {
                        if let CoreInput::RemoveSession { id } = &input {
                            events.remove(id);
                        }
                        core.handle_input(Instant::now(), input);
                    }
                },
                r = sock.recv_from(&mut buf) => {
                    match r {
                        Ok((n, from)) => {
                            let now = Instant::now();
                            core.handle_datagram(now, from, &buf[..n]);
                            for _ in 1..RX_BATCH {
                                match sock.try_recv_from(&mut buf) {
                                    Ok((n, from)) => core.handle_datagram(now, from, &buf[..n]),
                                    Err(_) => break,
                                }
                            }
                        }
                        // ICMP port unreachable from a departed peer shows up
                        // as an error on the next receive: not fatal.
                        Err(e) => tracing::trace!("recv: {e}"),
                    }
                }
                _ = tokio::time::sleep_until(deadline) => core.handle_timeout(Instant::now()),
            }
        }
        Ok(())
    })
}

async fn flush(
    core: &mut Core,
    sock: &tokio::net::UdpSocket,
    peers: &[UnboundedSender<DriverMsg>],
    events: &mut HashMap<SessionId, EventSender>,
) {
    while let Some(t) = core.poll_transmit() {
        let r = match sock.try_send_to(&t.data, t.dest) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock.send_to(&t.data, t.dest).await,
            r => r,
        };
        match r {
            Ok(n) => {
                core.counters().tx_datagrams.inc();
                core.counters().tx_bytes.add(n as u64);
            }
            Err(_) => core.counters().tx_errors.inc(),
        }
    }
    while let Some((target, input)) = core.poll_cross_core() {
        if let Some(p) = peers.get(target) {
            let _ = p.send(DriverMsg::Input(input));
        }
    }
    while let Some((id, ev)) = core.poll_event() {
        if let Some(tx) = events.get(&id) {
            let _ = tx.send((id, ev));
        }
    }
}
