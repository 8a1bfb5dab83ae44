//! What publish and subscribe transports share: a session on one data-plane
//! core, its ICE credentials, the DTLS handshake and the event pump that
//! turns data-plane events into state changes and callbacks.
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};
use weir_dataplane::counters::TransportCounters;
use weir_dataplane::ice::IceCredentials;
use weir_dataplane::{CoreInput, SessionEvent, SessionId, TrackKey};

use crate::datachannel::{DataSide, LinkRole};
use crate::dtls::{self, ChannelConn};
use crate::dtls_slot::DtlsSlot;
use crate::error::{Error, Result};
use crate::sdp::{LocalParams, RemoteDescription, Setup};
use crate::types::{ConnectionState, IceCandidate, TransportId};
use crate::worker::WorkerInner;

/// How long a DTLS connection resumed for a record from the peer stays
/// live before it may be parked again (if no data channel took it).
const REPARK_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

type StateCallback = Arc<dyn Fn(ConnectionState) + Send + Sync>;
type CandidateCallback = Arc<dyn Fn(IceCandidate) + Send + Sync>;
type LayersCallback = Arc<dyn Fn(TrackKey, u8, u8) + Send + Sync>;

struct Shared {
    state: ConnectionState,
    on_state: Vec<StateCallback>,
    on_candidate: Vec<CandidateCallback>,
    on_layers: Vec<LayersCallback>,
    /// ICE ufrag and SHA-256 fingerprint of the peer, once its SDP arrived.
    remote: Option<(String, Vec<u8>)>,
    dtls_rx: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    /// The DTLS connection once its handshake finished, live or parked.
    dtls: Option<Arc<DtlsSlot>>,
    /// An SRTP or SRTCP packet from the peer authenticated: its side of the
    /// handshake is done, so the connection may be parked.
    peer_keyed: bool,
    seen_tracks: HashSet<TrackKey>,
    session_version: u64,
}

/// One session on one core, shared by the SDK objects that use it.
pub(crate) struct TransportCore {
    pub(crate) id: TransportId,
    pub(crate) session: SessionId,
    pub(crate) core: usize,
    pub(crate) worker: Arc<WorkerInner>,
    pub(crate) counters: Arc<TransportCounters>,
    ice_ufrag: String,
    ice_pwd: String,
    session_id: u64,
    shared: Mutex<Shared>,
    /// Woken when a first media packet or a state change arrives.
    pub(crate) changed: Notify,
    /// The SCTP association for data channels, once negotiated.
    pub(crate) data: Arc<DataSide>,
    /// Publish or subscribe: placement counts subscribe transports apart.
    role: LinkRole,
}

impl TransportCore {
    /// Places a new session on `core` and starts its event pump.
    pub(crate) fn start(
        worker: Arc<WorkerInner>,
        core: usize,
        prefix: &str,
        role: LinkRole,
    ) -> Result<Arc<Self>> {
        let session = worker.next_id();
        let id = TransportId(format!("{prefix}{session}"));
        let credentials = IceCredentials::generate();
        let counters = Arc::new(TransportCounters::default());
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        let (dtls_tx, dtls_rx) = mpsc::unbounded_channel();
        let this = Arc::new(Self {
            data: Arc::new(DataSide::new(worker.runtime.clone(), id.clone(), role)),
            role,
            id,
            session,
            core,
            counters: counters.clone(),
            ice_ufrag: credentials.ufrag().to_owned(),
            ice_pwd: credentials.pwd().to_owned(),
            session_id: rand::random::<u64>() >> 2,
            shared: Mutex::new(Shared {
                state: ConnectionState::New,
                on_state: Vec::new(),
                on_candidate: Vec::new(),
                on_layers: Vec::new(),
                remote: None,
                dtls_rx: Some(dtls_rx),
                dtls: None,
                peer_keyed: false,
                seen_tracks: HashSet::new(),
                session_version: 1,
            }),
            changed: Notify::new(),
            worker: worker.clone(),
        });
        if role == LinkRole::Subscribe {
            worker.subscribe_transport_placed(core);
        }
        if !worker
            .core(core)
            .add_session(session, credentials, counters, events_tx)
        {
            return Err(Error::DataPlane("data-plane core has stopped".into()));
        }
        let weak = Arc::downgrade(&this);
        worker.runtime.spawn(async move {
            while let Some((_, event)) = events_rx.recv().await {
                let Some(t) = weak.upgrade() else { break };
                match event {
                    SessionEvent::IceConnected(addr) => {
                        tracing::debug!(transport = %t.id, "ICE connected from {}", crate::redact::Addr(addr));
                        t.set_state_if(ConnectionState::New, ConnectionState::Connecting);
                    }
                    SessionEvent::IceSelected(_) => {}
                    SessionEvent::LayersChanged { track, spatial, temporal } => {
                        let callbacks = t.lock().on_layers.clone();
                        for cb in callbacks {
                            cb(track, spatial, temporal);
                        }
                    }
                    SessionEvent::Dtls(data) => {
                        let _ = dtls_tx.send(data);
                        // A record for a parked connection (the peer's SCTP
                        // INIT or an alert): bring it back to read it.
                        t.resume_parked_dtls();
                    }
                    SessionEvent::PeerKeyed => {
                        t.lock().peer_keyed = true;
                        t.park_dtls_soon(std::time::Duration::ZERO);
                    }
                    SessionEvent::ConsentExpired => {
                        tracing::info!(transport = %t.id, "ICE consent expired");
                        t.fail();
                    }
                    SessionEvent::FirstMedia { track } => {
                        t.lock().seen_tracks.insert(track);
                        t.changed.notify_waiters();
                    }
                }
            }
        });
        Ok(this)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // The state holds no invariant a panicking holder could break
        // half-way, so a poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a command to this transport's core.
    pub(crate) fn send(&self, input: CoreInput) -> bool {
        self.worker.core(self.core).send(input)
    }

    /// Our parameters for the next SDP we write (bumps the `o=` version).
    pub(crate) fn local_params(&self) -> LocalParams {
        let mut s = self.lock();
        s.session_version += 1;
        LocalParams {
            ice_ufrag: self.ice_ufrag.clone(),
            ice_pwd: self.ice_pwd.clone(),
            fingerprint: self.worker.identity.fingerprint.clone(),
            candidate: self.worker.candidate_addr(self.core),
            session_id: self.session_id,
            version: s.session_version,
        }
    }

    /// Checks a remote description against what this transport already
    /// agreed to: ICE restarts and certificate changes are not supported.
    pub(crate) fn check_remote(&self, remote: &RemoteDescription) -> Result<()> {
        let s = self.lock();
        if let Some((ufrag, fp)) = &s.remote {
            if *ufrag != remote.ice_ufrag {
                return Err(Error::InvalidSdp(
                    "ICE restart (a new a=ice-ufrag) is not supported".into(),
                ));
            }
            if *fp != remote.fingerprint {
                return Err(Error::InvalidSdp("the DTLS fingerprint changed".into()));
            }
        }
        if s.state == ConnectionState::Closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Records the peer's ICE credentials and fingerprint and, the first
    /// time, starts the DTLS handshake: as the server unless the peer chose
    /// `a=setup:passive`, in which case Weir is the client and starts once
    /// ICE has selected an address to send its ClientHello to.
    pub(crate) fn apply_remote(self: &Arc<Self>, remote: &RemoteDescription) {
        let is_client = remote.setup == Setup::Passive;
        let rx = {
            let mut s = self.lock();
            if s.remote.is_some() {
                return;
            }
            s.remote = Some((remote.ice_ufrag.clone(), remote.fingerprint.clone()));
            s.dtls_rx.take()
        };
        self.send(CoreInput::SetRemoteCredentials {
            id: self.session,
            ufrag: remote.ice_ufrag.clone(),
            pwd: remote.ice_pwd.clone(),
        });
        let Some(rx) = rx else { return };
        let fingerprint = remote.fingerprint.clone();
        let this = self.clone();
        self.worker.runtime.spawn(async move {
            let worker = this.worker.clone();
            let core = this.core;
            let send = Box::new(move |input| worker.core(core).send(input));
            let local = this.worker.core(this.core).local_addr();
            let channel = Arc::new(ChannelConn::new(rx, send, this.session, local));
            if is_client && !this.wait_for_ice().await {
                return;
            }
            let handshake = dtls::handshake(
                &this.worker.identity,
                channel.clone(),
                fingerprint.clone(),
                is_client,
            );
            match handshake.await {
                Ok((conn, keys)) => {
                    this.send(CoreInput::InstallSrtp {
                        id: this.session,
                        keys: Box::new(keys),
                    });
                    let slot = Arc::new(DtlsSlot::new(
                        Arc::new(conn),
                        channel,
                        this.worker.identity.clone(),
                        this.worker.dtls_park.clone(),
                        fingerprint,
                        is_client,
                    ));
                    this.lock().dtls = Some(slot.clone());
                    this.data.dtls_ready(slot, is_client);
                    this.set_state_if(ConnectionState::Connecting, ConnectionState::Connected);
                    this.set_state_if(ConnectionState::New, ConnectionState::Connected);
                    // Read after the state is set: a `PeerKeyed` handled
                    // before that found the transport not yet connected.
                    if this.lock().peer_keyed {
                        this.park_dtls_soon(std::time::Duration::ZERO);
                    }
                }
                Err(e) => {
                    tracing::info!(transport = %this.id, "DTLS failed: {e}");
                    this.fail();
                }
            }
        });
    }

    /// Waits until ICE connected; `false` if the transport ended first or
    /// no check came within the handshake timeout.
    async fn wait_for_ice(&self) -> bool {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                match self.state() {
                    ConnectionState::New => changed.await,
                    ConnectionState::Connecting | ConnectionState::Connected => return true,
                    ConnectionState::Failed | ConnectionState::Closed => return false,
                }
            }
        };
        match tokio::time::timeout(std::time::Duration::from_secs(30), wait).await {
            Ok(ok) => ok,
            Err(_) => {
                self.fail();
                false
            }
        }
    }

    fn set_state_if(&self, from: ConnectionState, to: ConnectionState) {
        let callbacks = {
            let mut s = self.lock();
            if s.state != from {
                return;
            }
            s.state = to;
            s.on_state.clone()
        };
        for cb in callbacks {
            cb(to);
        }
        self.changed.notify_waiters();
    }

    fn set_state(&self, to: ConnectionState) {
        let callbacks = {
            let mut s = self.lock();
            if s.state == to || s.state == ConnectionState::Closed {
                return;
            }
            s.state = to;
            s.on_state.clone()
        };
        for cb in callbacks {
            cb(to);
        }
        self.changed.notify_waiters();
    }

    /// ICE or DTLS failed: the session is removed from its core.
    pub(crate) fn fail(&self) {
        if self.state() != ConnectionState::Closed {
            self.data
                .close("the transport failed (ICE consent or DTLS)");
            self.set_state(ConnectionState::Failed);
            self.worker.core(self.core).remove_session(self.session);
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> ConnectionState {
        self.lock().state
    }

    /// Whether the first media packet of `track` arrived.
    pub(crate) fn has_seen(&self, track: TrackKey) -> bool {
        self.lock().seen_tracks.contains(&track)
    }

    pub(crate) fn on_state(&self, cb: StateCallback) {
        self.lock().on_state.push(cb);
    }

    pub(crate) fn on_layers(&self, cb: LayersCallback) {
        self.lock().on_layers.push(cb);
    }

    pub(crate) fn on_candidate(&self, cb: CandidateCallback) {
        self.lock().on_candidate.push(cb);
    }

    /// Parks the DTLS connection after `delay` if nothing needs it then:
    /// the peer has the keys, the transport is connected and no data
    /// channel m-section was accepted (see [`crate::dtls_slot`]).
    fn park_dtls_soon(self: &Arc<Self>, delay: std::time::Duration) {
        let weak = Arc::downgrade(self);
        self.worker.runtime.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let Some(t) = weak.upgrade() else { return };
            let slot = {
                let s = t.lock();
                if !s.peer_keyed || s.state != ConnectionState::Connected {
                    return;
                }
                s.dtls.clone()
            };
            if let Some(slot) = slot {
                if !t.data.has_sdp() && slot.park().await {
                    tracing::trace!(transport = %t.id, "DTLS connection parked");
                }
            }
        });
    }

    /// Resumes a parked DTLS connection so it reads the records queued for
    /// it, and tries parking it again later.
    fn resume_parked_dtls(self: &Arc<Self>) {
        let Some(slot) = self.lock().dtls.clone().filter(|s| s.is_parked()) else {
            return;
        };
        let this = self.clone();
        self.worker.runtime.spawn(async move {
            if let Err(e) = slot.live().await {
                tracing::info!(transport = %this.id, "DTLS resume failed: {e}");
                this.fail();
                return;
            }
            this.park_dtls_soon(REPARK_AFTER);
        });
    }

    /// Closes the DTLS association and removes the session.
    pub(crate) async fn close(&self) {
        let (was, slot) = {
            let s = self.lock();
            (s.state, s.dtls.clone())
        };
        if was == ConnectionState::Closed {
            return;
        }
        self.data.close("the transport closed");
        if let Some(slot) = slot {
            // Sends close_notify through the core before the session goes.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), slot.close()).await;
        }
        if was != ConnectionState::Failed {
            self.worker.core(self.core).remove_session(self.session);
        }
        self.set_state(ConnectionState::Closed);
    }
}

impl Drop for TransportCore {
    fn drop(&mut self) {
        self.data.close("the transport was dropped");
        if self.role == LinkRole::Subscribe {
            self.worker.subscribe_transport_gone(self.core);
        }
        let state = self
            .shared
            .get_mut()
            .map(|s| s.state)
            .unwrap_or(ConnectionState::Closed);
        if !matches!(state, ConnectionState::Closed | ConnectionState::Failed) {
            self.worker.core(self.core).remove_session(self.session);
        }
    }
}
