//! The client side of one server transport: a UDP socket, ICE checks as
//! the controlling agent, a DTLS client handshake and SRTP.
//!
//! ```text
//! connect():  bind ─▶ checks after 50, 100, 200, 400, 500, 500… ms ─▶ success ─▶ DTLS client ─▶ SRTP keys
//! recv task:  datagram ─┬─ 0..=3    STUN  → success responses wake connect()
//!                       ├─ 20..=63  DTLS  → channel → DtlsConn → dtls crate
//!                       └─ 128..=191 SRTP → decrypt → Inbound handler
//! ice task:   a check every 2.5 s after success (consent freshness, RFC 7675)
//! ```
//! The socket is connected to the server's candidate, so the kernel drops
//! datagrams from anyone else.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dtls::conn::DTLSConn;
use dtls::crypto::Certificate;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_controlplane::FlightBackoff;
use weir_dataplane::ice::stun::{write_binding_request, IceRoleAttr};
use weir_dataplane::ice::{StunClass, StunMessage, StunMethod};
use weir_dataplane::srtp::{SrtpKeys, SrtpSession};

use crate::sdp::RemoteDescription;
use crate::stats::{FailCause, Stage, Stats};

/// The first unanswered check is repeated after this long; each further
/// repeat waits twice as long, up to [`CHECK_INTERVAL_MAX`].
const CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// The longest wait between two checks before one succeeds: RFC 8445
/// §14.3's floor for a check's retransmission timeout. A fixed 50 ms
/// meant that every peer still waiting on a busy server sent it 20
/// checks a second, which made the server busier the longer it was late.
const CHECK_INTERVAL_MAX: Duration = Duration::from_millis(500);
/// Then this often, for consent freshness.
const CONSENT_INTERVAL: Duration = Duration::from_millis(2500);
/// PRIORITY of our (host) candidate, as a browser would compute it.
const PRIORITY: u32 = 2_130_706_431;
/// Receive buffer of each transport's socket. The default (~208 KiB) is
/// 0.3 s of five 1 Mbit/s streams: when this process was short of CPU the
/// kernel dropped at our sockets (the 10-room scenario's loss: 40,763
/// drops at the loadgen's 100 sockets, none at the server's). Memory is
/// only used while datagrams wait.
const RECV_BUFFER: usize = 1 << 20;
/// DTLS records queued between the socket and the handshake.
const DTLS_QUEUE: usize = 64;

/// The process's DTLS certificate, shared by every peer (as a browser
/// shares one per origin), and its SDP fingerprint.
pub(crate) struct Identity {
    certificate: Certificate,
    /// `AB:CD:…` SHA-256 of the DER.
    pub(crate) fingerprint: String,
}

impl Identity {
    /// A fresh self-signed certificate.
    pub(crate) fn generate() -> Result<Self, String> {
        let certificate = Certificate::generate_self_signed(vec!["weir-loadgen".to_owned()])
            .map_err(|e| e.to_string())?;
        let der = certificate
            .certificate
            .first()
            .ok_or("generated certificate is empty")?;
        let fingerprint = weir_controlplane::sha256_fingerprint(der.as_ref());
        Ok(Self {
            certificate,
            fingerprint,
        })
    }
}

/// What a transport does with decrypted media it receives.
pub(crate) trait Inbound: Send + 'static {
    /// A decrypted RTP packet; `wire_len` is its SRTP size, `arrival_us`
    /// when the kernel received it ([`crate::stats::now_us`] time).
    fn on_rtp(&mut self, packet: &[u8], wire_len: usize, arrival_us: u64);
    /// A decrypted RTCP compound packet.
    fn on_rtcp(&mut self, packet: &[u8]);
    /// A packet that failed SRTP authentication or decryption.
    fn on_invalid(&mut self) {}
    /// Sees each SRTP media packet before it is decrypted (its RTP header
    /// is in the clear); `false` drops it, as a lossy downlink would, so
    /// that its SRTP index stays unused and a repair can still decrypt.
    fn keep(&mut self, _packet: &[u8]) -> bool {
        true
    }
    /// Puts a plain RTCP packet to send now (NACKs, receiver reports) in `out`, if one is due.
    fn rtcp_due(&mut self, _now: std::time::Instant, _out: &mut Vec<u8>) -> bool {
        false
    }
}

/// A connected transport. Dropping it stops its tasks.
pub(crate) struct Transport {
    /// The socket, connected to the server's candidate.
    pub(crate) socket: Arc<UdpSocket>,
    /// Outbound SRTP (the receive task owns the inbound half).
    pub(crate) srtp: SrtpSession,
    dtls: Arc<DTLSConn>,
    tasks: Vec<JoinHandle<()>>,
}

impl Transport {
    /// Sends DTLS close_notify (best effort) and stops the tasks.
    pub(crate) async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_millis(500), self.dtls.close()).await;
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Aborts tasks unless disarmed, so that a failed `connect` leaves nothing.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Runs ICE, then DTLS as the client, and returns the transport with SRTP
/// ready. Gives up at `deadline` with the cause of the stage it was in.
pub(crate) async fn connect(
    remote: &RemoteDescription,
    local_ufrag: &str,
    identity: &Identity,
    stats: &Arc<Stats>,
    inbound: impl Inbound,
    deadline: Instant,
) -> Result<Transport, FailCause> {
    let began = Instant::now();
    let socket = UdpSocket::bind(SocketAddr::new(local_ip(remote.candidate), 0))
        .await
        .map_err(|_| FailCause::IceTimeout)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(RECV_BUFFER);
    // Best effort too: without stamps, arrival is when the packet is read.
    let _ = crate::stamp::enable(&socket);
    socket
        .connect(remote.candidate)
        .await
        .map_err(|_| FailCause::IceTimeout)?;
    let socket = Arc::new(socket);
    let (ice_ok_tx, mut ice_ok) = watch::channel(false);
    let (dtls_tx, dtls_rx) = mpsc::channel(DTLS_QUEUE);
    let (srtp_tx, srtp_rx) = oneshot::channel();
    let mut tasks = Tasks(Vec::with_capacity(2));
    tasks.0.push(tokio::spawn(recv_loop(
        socket.clone(),
        remote.pwd.clone(),
        ice_ok_tx,
        dtls_tx,
        srtp_rx,
        inbound,
        stats.clone(),
    )));
    tasks.0.push(tokio::spawn(check_loop(
        socket.clone(),
        format!("{}:{}", remote.ufrag, local_ufrag),
        remote.pwd.clone(),
        ice_ok.clone(),
    )));

    tokio::time::timeout_at(deadline, ice_ok.wait_for(|ok| *ok))
        .await
        .map_err(|_| FailCause::IceTimeout)?
        .map_err(|_| FailCause::IceTimeout)?;
    let ice_done = Instant::now();
    stats.record_stage(Stage::Ice, ice_done - began);

    let conn = Arc::new(DtlsConn {
        socket: socket.clone(),
        rx: Mutex::new(dtls_rx),
        remote: remote.candidate,
        stats: stats.clone(),
        backoff: std::sync::Mutex::new(FlightBackoff::new()),
    });
    let (dtls, keys) =
        tokio::time::timeout_at(deadline, handshake(identity, conn, remote.fingerprint))
            .await
            .map_err(|_| FailCause::Dtls)??;
    let inbound_srtp = SrtpSession::new(&keys).map_err(|_| FailCause::Dtls)?;
    // The receive task's own outbound session, for the feedback it sends
    // (NACKs, receiver reports). Subscribers send nothing else, so no SRTCP index is shared.
    let feedback_srtp = SrtpSession::new(&keys).map_err(|_| FailCause::Dtls)?;
    let srtp = SrtpSession::new(&keys).map_err(|_| FailCause::Dtls)?;
    srtp_tx
        .send((inbound_srtp, feedback_srtp))
        .map_err(|_| FailCause::Dtls)?;
    stats.record_stage(Stage::Dtls, ice_done.elapsed());
    stats.dtls_handshakes.fetch_add(1, Ordering::Relaxed);
    Ok(Transport {
        socket,
        srtp,
        dtls: Arc::new(dtls),
        tasks: std::mem::take(&mut tasks.0),
    })
}

/// The loopback address when the server is on loopback, else any address.
fn local_ip(server: SocketAddr) -> std::net::IpAddr {
    match server {
        SocketAddr::V4(a) if a.ip().is_loopback() => [127, 0, 0, 1].into(),
        SocketAddr::V4(_) => [0, 0, 0, 0].into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// Sends connectivity checks: fast until one succeeds, then for consent.
async fn check_loop(
    socket: Arc<UdpSocket>,
    username: String,
    key: String,
    mut ok: watch::Receiver<bool>,
) {
    let tie_breaker: u64 = rand::random();
    let mut buf = [0u8; 512];
    let mut wait = CHECK_INTERVAL;
    loop {
        let tid: [u8; 12] = rand::random();
        if let Ok(n) = write_binding_request(
            &mut buf,
            tid,
            &username,
            PRIORITY,
            true,
            IceRoleAttr::Controlling(tie_breaker),
            key.as_bytes(),
        ) {
            let _ = socket.send(&buf[..n]).await;
        }
        if *ok.borrow() {
            tokio::time::sleep(CONSENT_INTERVAL).await;
        } else {
            // Wake early if a response arrives; then the next check is consent.
            let _ = tokio::time::timeout(wait, ok.changed()).await;
            wait = (wait * 2).min(CHECK_INTERVAL_MAX);
            if *ok.borrow() {
                tokio::time::sleep(CONSENT_INTERVAL).await;
            }
        }
    }
}

/// Demultiplexes datagrams by their first byte (RFC 7983).
async fn recv_loop(
    socket: Arc<UdpSocket>,
    pwd: String,
    ice_ok: watch::Sender<bool>,
    dtls: mpsc::Sender<Vec<u8>>,
    mut srtp_rx: oneshot::Receiver<(SrtpSession, SrtpSession)>,
    mut inbound: impl Inbound,
    stats: Arc<Stats>,
) {
    let mut buf = vec![0u8; 2048];
    let mut plain = Vec::with_capacity(2048);
    let mut srtp: Option<(SrtpSession, SrtpSession)> = None;
    let mut rtcp_plain = Vec::with_capacity(1500);
    let mut rtcp_sealed = Vec::with_capacity(1500);
    loop {
        let (n, age) = match crate::stamp::recv(&socket, &mut buf).await {
            Ok(r) => r,
            // ICMP unreachable surfaces here on a connected socket; checks
            // keep going, and consent decides.
            Err(_) => continue,
        };
        let packet = &buf[..n];
        match packet.first() {
            Some(0..=3) => {
                if let Ok(msg) = StunMessage::parse(packet) {
                    if msg.class() == StunClass::SuccessResponse
                        && msg.method() == StunMethod::BINDING
                        && msg.verify_integrity(pwd.as_bytes()).is_ok()
                    {
                        ice_ok.send_if_modified(|ok| !std::mem::replace(ok, true));
                    }
                }
            }
            Some(20..=63) => {
                stats.dtls_rx.fetch_add(1, Ordering::Relaxed);
                // A full queue means the handshake is not reading: drop, as UDP would.
                let _ = dtls.try_send(packet.to_vec());
            }
            Some(128..=191) => {
                if srtp.is_none() {
                    srtp = srtp_rx.try_recv().ok();
                }
                let Some((s, feedback)) = srtp.as_mut() else {
                    continue;
                };
                // RTCP packet types 192..=223 (RFC 5761 §4).
                let is_rtcp = packet.get(1).is_some_and(|b| (192..=223).contains(b));
                if is_rtcp {
                    match s.decrypt_rtcp(packet, &mut plain) {
                        Ok(_) => inbound.on_rtcp(&plain),
                        Err(_) => inbound.on_invalid(),
                    }
                } else if inbound.keep(packet) {
                    match s.decrypt_rtp(packet, &mut plain) {
                        Ok(_) => {
                            let now = crate::stats::now_us();
                            if age.is_none() {
                                stats.rx_unstamped.fetch_add(1, Ordering::Relaxed);
                            }
                            let arrival = age.map_or(now, |a| {
                                now.saturating_sub(u64::try_from(a.as_micros()).unwrap_or(u64::MAX))
                            });
                            inbound.on_rtp(&plain, n, arrival)
                        }
                        Err(_) => inbound.on_invalid(),
                    }
                }
                // Feedback goes out as packets arrive: video brings one
                // every few milliseconds, finer than any retry spacing.
                if !is_rtcp
                    && inbound.rtcp_due(std::time::Instant::now(), &mut rtcp_plain)
                    && feedback.encrypt_rtcp(&rtcp_plain, &mut rtcp_sealed).is_ok()
                {
                    let _ = socket.try_send(&rtcp_sealed);
                }
            }
            _ => {}
        }
    }
}

/// A `webrtc_util::Conn` for the dtls crate: reads the DTLS records the
/// receive task forwards, writes straight to the socket.
struct DtlsConn {
    socket: Arc<UdpSocket>,
    rx: Mutex<mpsc::Receiver<Vec<u8>>>,
    remote: SocketAddr,
    stats: Arc<Stats>,
    /// RFC 6347 backoff under the `dtls` crate's fixed one-second resends.
    backoff: std::sync::Mutex<FlightBackoff>,
}

#[async_trait]
impl webrtc_util::Conn for DtlsConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(())
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        let data = self
            .rx
            .lock()
            .await
            .recv()
            .await
            .ok_or(webrtc_util::Error::ErrClosedListener)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        Ok((n, self.remote))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        let admit = self
            .backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(std::time::Instant::now(), buf);
        if !admit {
            // Held back: to the handshake it is sent, as if lost.
            self.stats.dtls_held.fetch_add(1, Ordering::Relaxed);
            return Ok(buf.len());
        }
        self.stats.dtls_tx.fetch_add(1, Ordering::Relaxed);
        Ok(self.socket.send(buf).await?)
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        self.send(buf).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.remote)
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.rx.lock().await.close();
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// The DTLS client handshake (Weir's own, in the client role): checks the
/// server's certificate against the SDP fingerprint and exports SRTP keys.
async fn handshake(
    identity: &Identity,
    conn: Arc<DtlsConn>,
    expected: [u8; 32],
) -> Result<(DTLSConn, SrtpKeys), FailCause> {
    weir_controlplane::dtls_srtp_handshake(&identity.certificate, conn, &expected, true)
        .await
        .map_err(|_| FailCause::Dtls)
}
