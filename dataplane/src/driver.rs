//! The IO driver: one thread per data-plane core, named `weir-dp-N` and
//! pinned to core N, each with its own UDP socket on port base + N.
//!
//! Each thread runs a plain loop around its [`Core`] and one IO backend
//! ([`crate::io`]: io_uring or recvmmsg/sendmmsg, chosen at start):
//! 1. drain the mailbox (control-plane commands, other cores' messages);
//! 2. read the fanout rings of remote tracks, run the core's timers when
//!    due;
//! 3. hand the core's datagrams to the backend as one batch, pass its
//!    cross-core messages and ring wake-ups on (one wake-up per target core
//!    per turn) and its
//!    events to the control plane;
//! 4. let the backend receive a batch, waiting in the kernel only when there
//!    is nothing else to do, at most until the core's next timer.
//!
//! Senders wake a sleeping core through its eventfd, written at most once
//! between two of the core's resets; a busy core is never woken by syscalls.
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::core::{Core, CoreInput, SessionEvent, SessionId};
use crate::counters::{CoreCounters, TransportCounters};
use crate::ice::IceCredentials;
use crate::io::detect;
use crate::io::mmsg::Mmsg;
use crate::io::uring::Uring;
use crate::io::wake::Notify;
use crate::io::{Backend, BackendShared, IoCounters};

pub use crate::io::{IoBackendChoice, IoOptions};

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
    /// Which IO backend to run; [`IoBackendChoice::Auto`] picks io_uring when
    /// the kernel probe passes, else mmsg.
    pub io_backend: IoBackendChoice,
    /// Switches of the IO backends (GSO, multishot receive).
    pub io_options: IoOptions,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            ip: IpAddr::from([127, 0, 0, 1]),
            base_port: 40000,
            cores: 0,
            consent_timeout: Duration::from_secs(30),
            io_backend: IoBackendChoice::Auto,
            io_options: IoOptions::default(),
        }
    }
}

/// Where events of a session go.
pub type EventSender = UnboundedSender<(SessionId, SessionEvent)>;

enum DriverMsg {
    Input(CoreInput),
    Register { id: SessionId, events: EventSender },
}

impl std::fmt::Debug for DriverMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverMsg::Input(i) => i.fmt(f),
            DriverMsg::Register { id, .. } => write!(f, "Register({id})"),
        }
    }
}

/// The sending side of a core's mailbox: a queue plus the eventfd that
/// wakes the core. `Send + Sync + Clone`.
#[derive(Debug, Clone)]
struct Mailbox {
    tx: Sender<DriverMsg>,
    notify: Arc<Notify>,
}

impl Mailbox {
    /// Queues a message and wakes the core.
    fn send(&self, msg: DriverMsg) -> bool {
        let ok = self.tx.send(msg).is_ok();
        if ok {
            self.notify.wake();
        }
        ok
    }

    /// Queues a message without waking the core; the caller wakes it once
    /// for a whole batch.
    fn push(&self, msg: DriverMsg) -> bool {
        self.tx.send(msg).is_ok()
    }
}

/// A handle on one core: its address and command channel.
#[derive(Debug)]
pub struct CoreHandle {
    index: usize,
    local_addr: SocketAddr,
    tx: Mailbox,
    counters: Arc<CoreCounters>,
    io_counters: Arc<IoCounters>,
    sessions: Arc<AtomicUsize>,
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

    /// Its IO backend's counters (batch sizes, GSO, wake-ups).
    pub fn io_counters(&self) -> &Arc<IoCounters> {
        &self.io_counters
    }

    /// Number of sessions placed on it.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Sends a command; `false` if the core has stopped.
    pub fn send(&self, input: CoreInput) -> bool {
        self.tx.send(DriverMsg::Input(input))
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
        self.tx.send(DriverMsg::Register { id, events })
            && self.send(CoreInput::AddSession {
                id,
                credentials,
                counters,
            })
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
    backend: &'static str,
}

/// The backend a core thread builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Uring,
    Mmsg,
}

/// Picks the backend from the configuration and the kernel probe.
fn choose(config: &DataPlaneConfig) -> io::Result<(Kind, String)> {
    let f = detect::features();
    match (config.io_backend, &f.io_uring) {
        (IoBackendChoice::Mmsg, _) => Ok((Kind::Mmsg, "configured".into())),
        (IoBackendChoice::IoUring, Ok(())) => Ok((Kind::Uring, "configured; probe passed".into())),
        (IoBackendChoice::IoUring, Err(why)) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring backend requested but not usable: {why}"),
        )),
        (IoBackendChoice::Auto, Ok(())) => Ok((Kind::Uring, "auto; io_uring probe passed".into())),
        (IoBackendChoice::Auto, Err(why)) => {
            Ok((Kind::Mmsg, format!("auto; io_uring not usable: {why}")))
        }
    }
}

impl DataPlane {
    /// Binds every core's socket, starts its thread and its IO backend.
    /// Fails (with the address) if a port is taken, and with the probe's
    /// reason if [`IoBackendChoice::IoUring`] is asked for but not usable.
    pub fn start(config: DataPlaneConfig) -> io::Result<DataPlane> {
        let n = if config.cores == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.cores
        };
        let (kind, reason) = choose(&config)?;
        let gso = match (&detect::features().gso, config.io_options.gso) {
            (_, false) => "off (configured)".to_owned(),
            (Ok(()), true) => "on".to_owned(),
            (Err(why), true) => format!("off ({why})"),
        };
        let use_gso = config.io_options.gso && detect::features().gso_available();
        let multishot_recv = config.io_options.multishot_recv;
        let auto = config.io_backend == IoBackendChoice::Auto;
        let mut sockets = Vec::with_capacity(n);
        for i in 0..n {
            let port = if config.base_port == 0 {
                0
            } else {
                u16::try_from(usize::from(config.base_port) + i).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "media port out of range")
                })?
            };
            let addr = SocketAddr::new(config.ip, port);
            let sock = UdpSocket::bind(addr).map_err(|e| {
                io::Error::new(e.kind(), format!("binding media socket {addr}: {e}"))
            })?;
            crate::io::tune_socket(&sock);
            sockets.push(sock);
        }
        let mut mailboxes = Vec::with_capacity(n);
        let mut rxs = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = mpsc::channel();
            mailboxes.push(Mailbox {
                tx,
                notify: Arc::new(Notify::new()?),
            });
            rxs.push(rx);
        }
        let core_ids = core_affinity::get_core_ids().unwrap_or_default();
        let mut cores = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        let mut ready = Vec::with_capacity(n);
        for (i, (sock, rx)) in sockets.into_iter().zip(rxs).enumerate() {
            let local_addr = sock.local_addr()?;
            let counters = Arc::new(CoreCounters::default());
            let io_counters = Arc::new(IoCounters::default());
            let peers = mailboxes.clone();
            let pin = core_ids.get(i % core_ids.len().max(1)).copied();
            let (c, ioc) = (counters.clone(), io_counters.clone());
            let consent = config.consent_timeout;
            let notify = mailboxes[i].notify.clone();
            let (ready_tx, ready_rx) = mpsc::channel::<io::Result<&'static str>>();
            let spawned = std::thread::Builder::new()
                .name(format!("weir-dp-{i}"))
                .spawn(move || {
                    if let Some(id) = pin {
                        core_affinity::set_for_current(id);
                    }
                    let core = Core::new(i, consent, c, Instant::now());
                    let efd = notify.fd();
                    let shared = || BackendShared {
                        io: ioc.clone(),
                        gso: use_gso,
                        multishot_recv,
                    };
                    // Buffers are allocated here, on the pinned thread.
                    if kind == Kind::Uring {
                        // A duplicate of the socket, so the original is still
                        // there for mmsg if the ring cannot be built.
                        let uring = sock.try_clone().and_then(|s| Uring::new(s, efd, shared()));
                        match uring {
                            Ok(b) => {
                                drop(sock);
                                let _ = ready_tx.send(Ok(crate::io::IO_URING));
                                if let Err(e) = run(core, b, rx, notify, peers) {
                                    tracing::error!("data-plane core {i} stopped: {e}");
                                }
                                return;
                            }
                            Err(e) if auto => {
                                tracing::warn!(
                                    "core {i}: io_uring backend failed to start ({e}); using mmsg"
                                );
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    let r = match Mmsg::new(sock, efd, shared()) {
                        Ok(b) => {
                            let _ = ready_tx.send(Ok(crate::io::MMSG));
                            run(core, b, rx, notify, peers)
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    if let Err(e) = r {
                        tracing::error!("data-plane core {i} stopped: {e}");
                    }
                });
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    stop(&mailboxes, threads);
                    return Err(e);
                }
            }
            ready.push(ready_rx);
            cores.push(CoreHandle {
                index: i,
                local_addr,
                tx: mailboxes[i].clone(),
                counters,
                io_counters,
                sessions: Arc::new(AtomicUsize::new(0)),
            });
        }
        let mut backend = crate::io::MMSG;
        for (i, r) in ready.into_iter().enumerate() {
            let r = r
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("data-plane thread died while starting")));
            match r {
                // A core that fell back to mmsg makes the plane report mmsg.
                Ok(name) if i == 0 || name == crate::io::MMSG => backend = name,
                Ok(_) => {}
                Err(e) => {
                    stop(&mailboxes, threads);
                    return Err(io::Error::new(
                        e.kind(),
                        format!("starting IO backend of core {i}: {e}"),
                    ));
                }
            }
        }
        tracing::info!(
            cores = n,
            backend,
            reason = %reason,
            gso = %gso,
            multishot_recv = backend == crate::io::IO_URING && multishot_recv,
            "data plane started"
        );
        Ok(DataPlane {
            cores,
            threads: Mutex::new(threads),
            backend,
        })
    }

    /// The cores.
    pub fn cores(&self) -> &[CoreHandle] {
        &self.cores
    }

    /// The IO backend running: `"io_uring"` or `"mmsg"`.
    pub fn backend_name(&self) -> &'static str {
        self.backend
    }

    /// The core with the fewest sessions.
    pub fn least_loaded(&self) -> usize {
        self.cores
            .iter()
            .min_by_key(|c| c.session_count())
            .map_or(0, |c| c.index)
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

/// Stops the threads started so far (a failed start).
fn stop(mailboxes: &[Mailbox], threads: Vec<JoinHandle<()>>) {
    for m in mailboxes {
        let _ = m.send(DriverMsg::Input(CoreInput::Shutdown));
    }
    for t in threads {
        let _ = t.join();
    }
}

/// Most mailbox messages handled in one turn, so a flood of cross-core
/// media cannot starve the socket.
const MAILBOX_BATCH: usize = 4096;

fn run<B: Backend>(
    mut core: Core,
    mut backend: B,
    rx: Receiver<DriverMsg>,
    notify: Arc<Notify>,
    peers: Vec<Mailbox>,
) -> io::Result<()> {
    tracing::debug!(
        core = core.index(),
        backend = backend.name(),
        "data-plane core running"
    );
    let mut events: HashMap<SessionId, EventSender> = HashMap::new();
    let mut touched = vec![false; peers.len()];
    loop {
        let now = Instant::now();
        let mut backlog = false;
        for k in 0.. {
            if k == MAILBOX_BATCH {
                backlog = true;
                break;
            }
            match rx.try_recv() {
                Ok(DriverMsg::Input(CoreInput::Shutdown)) | Err(TryRecvError::Disconnected) => {
                    return Ok(())
                }
                Ok(DriverMsg::Register { id, events: tx }) => {
                    events.insert(id, tx);
                }
                Ok(DriverMsg::Input(input)) => {
                    if let CoreInput::RemoveSession { id } = &input {
                        events.remove(id);
                    }
                    core.handle_input(now, input);
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        // Packets other cores published into fanout rings since the last
        // turn (the eventfd that woke this core carries no count: reading
        // every ring is how the batch is found).
        core.handle_wake(now);
        // Packets left in the rings: send, then read on without sleeping.
        backlog |= core.ring_backlog();
        if now >= core.poll_timeout() {
            core.handle_timeout(now);
        }
        // Other cores first: a packet this core published into a fanout
        // ring is fanned out there in parallel with this core's own sends,
        // not after them (with io_uring the sends below run inside the
        // submit, ~2 ms for 500 subscribers).
        hand_over(&mut core, &peers, &mut touched);
        backend.send(&mut core);
        // A send may reap received datagrams too, whose fan-out to other
        // cores must not wait for the next turn.
        hand_over(&mut core, &peers, &mut touched);
        while let Some((id, ev)) = core.poll_event() {
            if let Some(tx) = events.get(&id) {
                let _ = tx.send((id, ev));
            }
        }
        let deadline = core.poll_timeout();
        if backend.receive(&mut core, !backlog, deadline)? {
            notify.reset();
        }
    }
}

/// Carries the core's messages for other cores to their mailboxes and
/// wakes each core that got a message or a ring packet, once.
fn hand_over(core: &mut Core, peers: &[Mailbox], touched: &mut [bool]) {
    while let Some((target, input)) = core.poll_cross_core() {
        if let Some(p) = peers.get(target) {
            touched[target] |= p.push(DriverMsg::Input(input));
        }
    }
    while let Some(target) = core.poll_wake() {
        if let Some(t) = touched.get_mut(target) {
            *t = true;
        }
    }
    for (p, t) in peers.iter().zip(touched.iter_mut()) {
        if std::mem::take(t) {
            p.notify.wake();
        }
    }
}
