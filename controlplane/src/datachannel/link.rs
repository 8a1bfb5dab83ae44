//! One transport's SCTP association over its DTLS connection, and the
//! channels its peer opens.
//!
//! [`DataSide`] lives in every transport. It starts the association once
//! both halves are known: the DTLS handshake finished, and an SDP accepted a
//! data channel m-section. Weir, like browsers and webrtc-rs, sends INIT
//! whatever its DTLS role; SCTP sorts out the collision (RFC 9260 §5.2).
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dtls::conn::DTLSConn;
use tokio::sync::{watch, Notify};
use webrtc_sctp::association::{Association, Config as SctpConfig};
use webrtc_sctp::chunk::chunk_payload_data::PayloadProtocolIdentifier;
use webrtc_sctp::stream::Stream;
use webrtc_util::Conn;

use super::dcep::{self, Dcep};
use super::packet;
use super::DataChannelParams;
use crate::dtls_slot::DtlsSlot;
use crate::error::{Error, Result};
use crate::sdp::{AcceptedData, MAX_MESSAGE_SIZE};
use crate::types::TransportId;

/// How long the SCTP handshake may take once DTLS is up.
const ASSOCIATION_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a peer may take to send DATA_CHANNEL_OPEN on a stream it opened.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Channels the peer opened that no `data_publish` claimed yet; past this
/// the oldest is closed, so a peer cannot grow the list without bound.
const MAX_UNCLAIMED: usize = 256;

/// Which side of the SFU a transport's data channels are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkRole {
    /// The peer opens channels and publishes on them.
    Publish,
    /// Weir opens channels toward the peer; channels the peer opens are
    /// closed at once.
    Subscribe,
}

/// The association's state as the transport's SDK objects see it.
#[derive(Clone)]
pub(crate) enum LinkState {
    /// Not started (no data m-section or no DTLS yet) or connecting.
    Pending,
    /// Established.
    Up(Arc<Link>),
    /// Ended; the reason.
    Ended(String),
}

#[derive(Default)]
struct Halves {
    sdp: Option<AcceptedData>,
    dtls: Option<(Arc<DtlsSlot>, bool)>,
    started: bool,
}

/// The data channel side of one transport.
pub(crate) struct DataSide {
    runtime: tokio::runtime::Handle,
    transport: TransportId,
    role: LinkRole,
    halves: Mutex<Halves>,
    state: watch::Sender<LinkState>,
}

impl DataSide {
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        transport: TransportId,
        role: LinkRole,
    ) -> Self {
        Self {
            runtime,
            transport,
            role,
            halves: Mutex::new(Halves::default()),
            state: watch::channel(LinkState::Pending).0,
        }
    }

    fn halves(&self) -> std::sync::MutexGuard<'_, Halves> {
        // Plain options; a panicking holder cannot leave them inconsistent.
        self.halves.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An SDP accepted a data channel m-section with these parameters.
    pub(crate) fn sdp_accepted(self: &Arc<Self>, data: AcceptedData) {
        let mut h = self.halves();
        if h.sdp.is_none() {
            h.sdp = Some(data);
        }
        self.maybe_start(h);
    }

    /// Whether an SDP accepted a data channel m-section.
    pub(crate) fn has_sdp(&self) -> bool {
        self.halves().sdp.is_some()
    }

    /// The DTLS handshake finished; `is_client` is Weir's DTLS role.
    pub(crate) fn dtls_ready(self: &Arc<Self>, slot: Arc<DtlsSlot>, is_client: bool) {
        let mut h = self.halves();
        if h.dtls.is_none() {
            h.dtls = Some((slot, is_client));
        }
        self.maybe_start(h);
    }

    /// Weir's DTLS role, once the handshake finished.
    pub(crate) fn is_dtls_client(&self) -> Option<bool> {
        self.halves().dtls.as_ref().map(|(_, c)| *c)
    }

    fn maybe_start(self: &Arc<Self>, mut h: std::sync::MutexGuard<'_, Halves>) {
        let (Some(sdp), Some((slot, _))) = (h.sdp.clone(), h.dtls.clone()) else {
            return;
        };
        if h.started || matches!(*self.state.borrow(), LinkState::Ended(_)) {
            return;
        }
        h.started = true;
        drop(h);
        let this = self.clone();
        self.runtime.spawn(async move {
            // A media-only transport parks its DTLS connection; data
            // channels negotiated later bring it back.
            let dtls = match slot.live().await {
                Ok(conn) => conn,
                Err(e) => return this.end(e.to_string()),
            };
            match Link::connect(&this, dtls, &sdp).await {
                Ok(link) => {
                    tracing::debug!(transport = %this.transport, "SCTP association established");
                    let up = this.state.send_if_modified(|s| {
                        if matches!(s, LinkState::Pending) {
                            *s = LinkState::Up(link.clone());
                            true
                        } else {
                            false
                        }
                    });
                    if up {
                        this.runtime.spawn(link.clone().accept_loop());
                        this.runtime.spawn(link.watch_end(this.clone()));
                    } else {
                        link.fail("the transport closed".into());
                    }
                }
                Err(reason) => this.end(reason),
            }
        });
    }

    /// Records the end of the association (the first reason wins).
    fn end(&self, reason: String) {
        self.state.send_if_modified(|s| {
            if matches!(s, LinkState::Ended(_)) {
                return false;
            }
            tracing::info!(transport = %self.transport, "SCTP association ended: {reason}");
            *s = LinkState::Ended(reason.clone());
            true
        });
    }

    /// Waits until the association is up; fails if it ended (or never can
    /// start because the transport closed).
    pub(crate) async fn link(&self) -> Result<Arc<Link>> {
        let mut rx = self.state.subscribe();
        let state = rx
            .wait_for(|s| !matches!(s, LinkState::Pending))
            .await
            .map_err(|_| Error::Closed)?
            .clone();
        match state {
            LinkState::Up(link) => Ok(link),
            LinkState::Ended(reason) => Err(Error::DataChannel(reason)),
            LinkState::Pending => Err(Error::Closed),
        }
    }

    /// The link if it is up now.
    pub(crate) fn current(&self) -> Option<Arc<Link>> {
        match &*self.state.borrow() {
            LinkState::Up(link) => Some(link.clone()),
            _ => None,
        }
    }

    /// Ends the association (the transport closes or failed).
    pub(crate) fn close(&self, reason: &str) {
        if let Some(link) = self.current() {
            link.fail(reason.to_owned());
        }
        self.end(reason.to_owned());
    }
}

/// A channel the peer opened: its stream and DCEP parameters.
pub(crate) struct Incoming {
    pub(crate) stream: Arc<Stream>,
    pub(crate) params: DataChannelParams,
}

/// An established association.
pub(crate) struct Link {
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) transport: TransportId,
    role: LinkRole,
    association: Arc<Association>,
    conn: Arc<GuardedConn>,
    /// The largest message the peer takes.
    pub(crate) max_send: usize,
    incoming: Mutex<Vec<Incoming>>,
    incoming_changed: Notify,
    /// `Some(reason)` once the association ended.
    ended: watch::Sender<Option<String>>,
}

impl Link {
    async fn connect(
        side: &DataSide,
        dtls: Arc<DTLSConn>,
        sdp: &AcceptedData,
    ) -> Result<Arc<Self>, String> {
        let (ended, _) = watch::channel(None);
        let conn = Arc::new(GuardedConn {
            dtls,
            stopped: watch::channel(false).0,
            ended: ended.clone(),
        });
        let max_send = match sdp.remote_max_message_size {
            0 => MAX_MESSAGE_SIZE,
            n => usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(MAX_MESSAGE_SIZE),
        };
        let config = SctpConfig {
            net_conn: conn.clone(),
            // Room for a few of the largest messages in reassembly.
            max_receive_buffer_size: 4 * MAX_MESSAGE_SIZE as u32,
            max_message_size: max_send as u32,
            mtu: 0,
            name: side.transport.to_string(),
            remote_port: sdp.remote_port,
            local_port: crate::sdp::SCTP_PORT,
        };
        let association =
            match tokio::time::timeout(ASSOCIATION_TIMEOUT, Association::client(config)).await {
                Ok(Ok(a)) => Arc::new(a),
                Ok(Err(e)) => {
                    return Err(ended
                        .borrow()
                        .clone()
                        .unwrap_or_else(|| format!("SCTP handshake failed: {e}")))
                }
                Err(_) => {
                    conn.stop();
                    return Err("SCTP handshake timed out".into());
                }
            };
        Ok(Arc::new(Self {
            runtime: side.runtime.clone(),
            transport: side.transport.clone(),
            role: side.role,
            association,
            conn,
            max_send,
            incoming: Mutex::new(Vec::new()),
            incoming_changed: Notify::new(),
            ended,
        }))
    }

    /// Ends the association with `reason`: its streams stop, every channel
    /// on it closes. The DTLS connection, and so the media, stays up.
    pub(crate) fn fail(&self, reason: String) {
        let first = self.ended.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(reason.clone());
            true
        });
        if first {
            self.conn.stop();
            self.incoming_changed.notify_waiters();
            let association = self.association.clone();
            self.runtime.spawn(async move {
                // Closes the guarded conn (not DTLS) and unregisters every
                // stream: pending reads return end-of-stream.
                let _ = association.close().await;
            });
        }
    }

    /// Why it ended, if it did.
    pub(crate) fn ended_reason(&self) -> Option<String> {
        self.ended.borrow().clone()
    }

    /// Resolves with the reason once the association ended.
    pub(crate) async fn wait_ended(&self) -> String {
        let mut rx = self.ended.subscribe();
        let reason = rx.wait_for(Option::is_some).await.map(|r| r.clone());
        match reason {
            Ok(r) => r.unwrap_or_default(),
            Err(_) => "closed".into(),
        }
    }

    /// Reports the end to the transport, then keeps draining DTLS
    /// application data nobody reads any more.
    async fn watch_end(self: Arc<Self>, side: Arc<DataSide>) {
        let reason = self.wait_ended().await;
        side.end(reason);
        // However it ended (here, or in the guarded conn), waiters learn it
        // and every stream is unregistered.
        self.incoming_changed.notify_waiters();
        let _ = self.association.close().await;
        let dtls = self.conn.dtls.clone();
        drop(self);
        let mut buf = vec![0u8; 2048];
        while dtls.recv(&mut buf).await.is_ok() {}
    }

    /// Accepts the streams the peer opens and runs DCEP on each.
    async fn accept_loop(self: Arc<Self>) {
        let mut ended = self.ended.subscribe();
        loop {
            let stream = tokio::select! {
                s = self.association.accept_stream() => s,
                _ = ended.wait_for(Option::is_some) => None,
            };
            let Some(stream) = stream else {
                self.fail("the SCTP association closed".into());
                return;
            };
            let this = self.clone();
            self.runtime
                .spawn(async move { this.accept_channel(stream).await });
        }
    }

    async fn accept_channel(&self, stream: Arc<Stream>) {
        let id = stream.stream_identifier();
        stream.set_default_payload_type(PayloadProtocolIdentifier::Binary);
        let mut buf = vec![0u8; 2048];
        let first = tokio::time::timeout(OPEN_TIMEOUT, stream.read_sctp(&mut buf)).await;
        let (n, ppi) = match first {
            Ok(Ok((0, PayloadProtocolIdentifier::Unknown))) => return,
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return self.fail(format!(
                    "stream {id}: reading DATA_CHANNEL_OPEN failed: {e}"
                ))
            }
            Err(_) => {
                return self.fail(format!(
                    "stream {id}: no DATA_CHANNEL_OPEN within {OPEN_TIMEOUT:?}"
                ))
            }
        };
        if ppi != PayloadProtocolIdentifier::Dcep {
            return self.fail(format!(
                "stream {id}: first message has PPID {ppi}, not DCEP (RFC 8832 §6)"
            ));
        }
        let params = match dcep::parse(&buf[..n]) {
            Ok(Dcep::Open(p)) => p,
            Ok(Dcep::Ack) => {
                return self.fail(format!(
                    "stream {id}: DATA_CHANNEL_ACK for a channel Weir never opened"
                ))
            }
            Err(e) => return self.fail(format!("stream {id}: {e}")),
        };
        if let Err(e) = stream
            .write_sctp(&dcep::ack(), PayloadProtocolIdentifier::Dcep)
            .await
        {
            return self.fail(format!("stream {id}: sending DATA_CHANNEL_ACK failed: {e}"));
        }
        let (unordered, kind, value) = dcep::stream_reliability(&params);
        stream.set_reliability_params(unordered, kind, value);
        tracing::debug!(transport = %self.transport, stream = id, label = %params.label, "data channel opened by the peer");
        if self.role == LinkRole::Subscribe {
            // Subscribe transports only carry what Weir sends.
            let _ = stream.shutdown(std::net::Shutdown::Both).await;
            return;
        }
        let evicted = {
            let mut incoming = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
            incoming.push(Incoming { stream, params });
            (incoming.len() > MAX_UNCLAIMED).then(|| incoming.remove(0))
        };
        if let Some(old) = evicted {
            let _ = old.stream.shutdown(std::net::Shutdown::Both).await;
        }
        self.incoming_changed.notify_waiters();
    }

    /// Takes the oldest unclaimed channel the peer opened with `label`,
    /// waiting for one if there is none yet.
    pub(crate) async fn take_incoming(&self, label: &str) -> Result<Incoming> {
        loop {
            let changed = self.incoming_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut incoming = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(i) = incoming.iter().position(|c| c.params.label == label) {
                    return Ok(incoming.remove(i));
                }
            }
            if let Some(reason) = self.ended_reason() {
                return Err(Error::DataChannel(reason));
            }
            changed.await;
        }
    }

    /// Opens a channel toward the peer on stream `id`: sends
    /// DATA_CHANNEL_OPEN. Messages may follow at once; they go ordered
    /// until the ACK arrives (RFC 8832 §6.6).
    pub(crate) async fn open(&self, id: u16, params: &DataChannelParams) -> Result<Arc<Stream>> {
        if let Some(reason) = self.ended_reason() {
            return Err(Error::DataChannel(reason));
        }
        let stream = self
            .association
            .open_stream(id, PayloadProtocolIdentifier::Binary)
            .await
            .map_err(|e| Error::DataChannel(format!("opening stream {id}: {e}")))?;
        stream
            .write_sctp(&dcep::open(params), PayloadProtocolIdentifier::Dcep)
            .await
            .map_err(|e| {
                Error::DataChannel(format!("sending DATA_CHANNEL_OPEN on stream {id}: {e}"))
            })?;
        Ok(stream)
    }
}

/// The DTLS connection as the association sees it: every inbound packet is
/// checked first ([`packet::check`]); a malformed one ends the association.
/// Closing it stops the association's IO but leaves DTLS open.
struct GuardedConn {
    dtls: Arc<DTLSConn>,
    stopped: watch::Sender<bool>,
    ended: watch::Sender<Option<String>>,
}

impl GuardedConn {
    fn stop(&self) {
        self.stopped.send_replace(true);
    }

    /// Records why the association ends (the first reason wins) and stops.
    fn end(&self, reason: String) {
        self.ended.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(reason);
            true
        });
        self.stop();
    }

    fn stopped_error() -> webrtc_util::Error {
        webrtc_util::Error::ErrClosedListener
    }
}

#[async_trait]
impl Conn for GuardedConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(())
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        let mut stopped = self.stopped.subscribe();
        if *stopped.borrow() {
            return Err(Self::stopped_error());
        }
        let n = tokio::select! {
            r = self.dtls.recv(buf) => match r {
                Ok(n) => n,
                Err(e) => {
                    self.end(format!("the DTLS connection ended: {e}"));
                    return Err(e);
                }
            },
            _ = stopped.wait_for(|s| *s) => return Err(Self::stopped_error()),
        };
        if let Err(e) = packet::check(&buf[..n]) {
            let reason = e.to_string();
            self.end(reason.clone());
            return Err(webrtc_util::Error::Other(reason));
        }
        Ok(n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        Ok((n, self.dtls.local_addr()?))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        if *self.stopped.borrow() {
            return Err(Self::stopped_error());
        }
        self.dtls.send(buf).await
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        self.send(buf).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        self.dtls.local_addr()
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.dtls.remote_addr()
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.stop();
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Message payload type for `is_text` and `len` (RFC 8831 §6.6: empty
/// messages travel as one byte with the "empty" PPIDs).
pub(crate) fn ppi_for(is_text: bool, len: usize) -> PayloadProtocolIdentifier {
    match (is_text, len) {
        (true, 0) => PayloadProtocolIdentifier::StringEmpty,
        (true, _) => PayloadProtocolIdentifier::String,
        (false, 0) => PayloadProtocolIdentifier::BinaryEmpty,
        (false, _) => PayloadProtocolIdentifier::Binary,
    }
}

/// The bytes to send for a message (one zero byte for an empty one).
pub(crate) fn wire_payload(data: &Bytes) -> Bytes {
    if data.is_empty() {
        Bytes::from_static(&[0])
    } else {
        data.clone()
    }
}
