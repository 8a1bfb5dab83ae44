//! A transport's DTLS connection once the handshake is done: live, or
//! parked as its serialized state.
//!
//! A live `dtls::DTLSConn` keeps two tasks, six channels, an 8 KiB read
//! buffer and its handshake cache for as long as it lives: about 18 KB per
//! transport, a fifth of a subscriber's server memory. After the handshake
//! only data channels use it; SRTP runs in the data plane with the exported
//! keys. So once the peer shows it holds those keys (its first SRTP or
//! SRTCP packet that authenticates, after which it will not resend a
//! handshake flight) and no data channel needs the connection, the slot
//! keeps the connection's state (epochs, the next record sequence number,
//! master secret, cipher suite; a few hundred bytes) and drops the
//! connection, which ends its tasks without a close_notify.
//!
//! When data channels come in a later negotiation, a record arrives from
//! the peer, or the transport closes (to send close_notify), the slot
//! resumes a connection from that state over the same channel adapter, as
//! the `dtls` crate's resumption does: no handshake, and the record
//! sequence numbers carry on where they stopped.
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use ::dtls::conn::DTLSConn;
use tokio::sync::Mutex;

use crate::dtls::{self, ChannelConn, DtlsIdentity};
use crate::error::Result;

/// What parking did in one worker, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ParkCounters {
    /// Connections parked now.
    pub(crate) parked: AtomicI64,
    /// Connections parked so far.
    pub(crate) parks: AtomicU64,
    /// Connections resumed from a parked state so far.
    pub(crate) resumes: AtomicU64,
}

enum Held {
    Live(Arc<DTLSConn>),
    Parked(Vec<u8>),
}

/// One transport's DTLS connection after its handshake.
pub(crate) struct DtlsSlot {
    channel: Arc<ChannelConn>,
    identity: Arc<DtlsIdentity>,
    counters: Arc<ParkCounters>,
    remote_fingerprint: Vec<u8>,
    is_client: bool,
    held: Mutex<Held>,
    /// Mirrors `held` for callers that must not wait for the lock.
    parked: AtomicBool,
}

impl DtlsSlot {
    /// A slot holding the connection `conn` just finished its handshake
    /// over `channel`.
    pub(crate) fn new(
        conn: Arc<DTLSConn>,
        channel: Arc<ChannelConn>,
        identity: Arc<DtlsIdentity>,
        counters: Arc<ParkCounters>,
        remote_fingerprint: Vec<u8>,
        is_client: bool,
    ) -> Self {
        Self {
            channel,
            identity,
            counters,
            remote_fingerprint,
            is_client,
            held: Mutex::new(Held::Live(conn)),
            parked: AtomicBool::new(false),
        }
    }

    /// Whether the connection is parked now.
    pub(crate) fn is_parked(&self) -> bool {
        self.parked.load(Ordering::Acquire)
    }

    /// The live connection, resumed from the parked state if need be.
    pub(crate) async fn live(&self) -> Result<Arc<DTLSConn>> {
        let mut held = self.held.lock().await;
        let state = match &*held {
            Held::Live(conn) => return Ok(conn.clone()),
            Held::Parked(state) => state,
        };
        let conn = Arc::new(
            dtls::resume(
                &self.identity,
                self.channel.clone(),
                &self.remote_fingerprint,
                self.is_client,
                state,
            )
            .await?,
        );
        *held = Held::Live(conn.clone());
        self.parked.store(false, Ordering::Release);
        self.counters.parked.fetch_sub(1, Ordering::Relaxed);
        self.counters.resumes.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// Parks the connection if nothing but the slot holds it (a data
    /// channel association keeps its own reference); whether it did.
    pub(crate) async fn park(&self) -> bool {
        let mut held = self.held.lock().await;
        let Held::Live(conn) = &*held else {
            return false;
        };
        // Everyone else gets the connection through `live`, which waits for
        // this lock, so the count cannot rise while it is held.
        if Arc::strong_count(conn) > 1 {
            return false;
        }
        let state = match dtls::park_state(conn).await {
            Ok(state) => state,
            Err(e) => {
                tracing::debug!("DTLS connection not parked: {e}");
                return false;
            }
        };
        // Dropping the connection drops its reader's close channel, which
        // ends both its tasks; nothing goes to the peer.
        *held = Held::Parked(state);
        self.parked.store(true, Ordering::Release);
        self.counters.parked.fetch_add(1, Ordering::Relaxed);
        self.counters.parks.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Sends close_notify (resuming a parked connection for it) and closes
    /// the channel adapter.
    pub(crate) async fn close(&self) {
        match self.live().await {
            Ok(conn) => {
                let _ = conn.close().await;
            }
            Err(e) => tracing::debug!("no close_notify: {e}"),
        }
    }
}

impl Drop for DtlsSlot {
    fn drop(&mut self) {
        if *self.parked.get_mut() {
            self.counters.parked.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::sync::mpsc;
    use weir_dataplane::CoreInput;

    use super::*;

    /// Two channel adapters wired back to back: what one sends, the other
    /// receives, as the data plane would carry it.
    fn pair() -> (Arc<ChannelConn>, Arc<ChannelConn>) {
        let (a_tx, a_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let (b_tx, b_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let to = |tx: mpsc::UnboundedSender<Vec<u8>>| {
            Box::new(move |input| match input {
                CoreInput::SendDtls { data, .. } => tx.send(data).is_ok(),
                _ => true,
            }) as Box<dyn Fn(CoreInput) -> bool + Send + Sync>
        };
        (
            Arc::new(ChannelConn::new(a_rx, to(b_tx), 1, addr)),
            Arc::new(ChannelConn::new(b_rx, to(a_tx), 2, addr)),
        )
    }

    fn fingerprint_bytes(identity: &DtlsIdentity) -> Vec<u8> {
        identity
            .fingerprint
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    async fn read(conn: &DTLSConn) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf, None))
            .await
            .expect("a record within 5 s")
            .expect("application data");
        buf[..n].to_vec()
    }

    /// The server parks after the handshake, the client keeps writing: the
    /// resumed connection decrypts what the client sent while it was
    /// parked and after, and the client accepts what the resumed one
    /// writes (the record sequence numbers carried on, so nothing looks
    /// like a replay).
    #[tokio::test]
    async fn a_parked_connection_resumes_and_carries_on_in_both_directions() {
        let server_id = Arc::new(DtlsIdentity::generate().unwrap());
        let client_id = Arc::new(DtlsIdentity::generate().unwrap());
        let (server_ch, client_ch) = pair();
        let server_fp = fingerprint_bytes(&server_id);
        let client_fp = fingerprint_bytes(&client_id);
        let (server, client) = tokio::join!(
            dtls::handshake(&server_id, server_ch.clone(), client_fp.clone(), false),
            dtls::handshake(&client_id, client_ch.clone(), server_fp, true),
        );
        let (server, server_keys) = server.unwrap();
        let (client, client_keys) = client.unwrap();
        assert_eq!(server_keys.local_key, client_keys.remote_key);

        let server = Arc::new(server);
        server.write(b"before", None).await.unwrap();
        assert_eq!(read(&client).await, b"before");

        let counters = Arc::new(ParkCounters::default());
        let slot = DtlsSlot::new(
            server.clone(),
            server_ch.clone(),
            server_id,
            counters.clone(),
            client_fp,
            false,
        );
        assert!(!slot.park().await, "not while another holder uses it");
        drop(server);
        assert!(slot.park().await);
        assert!(slot.is_parked());
        assert_eq!(counters.parked.load(Ordering::Relaxed), 1);
        // The dropped connection's two tasks ended: only the slot and this
        // test still hold the channel adapter.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while Arc::strong_count(&server_ch) > 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the parked connection's tasks still hold the adapter"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        client.write(b"while parked", None).await.unwrap();
        let resumed = slot.live().await.unwrap();
        assert!(!slot.is_parked());
        assert_eq!(read(&resumed).await, b"while parked");
        client.write(b"after", None).await.unwrap();
        assert_eq!(read(&resumed).await, b"after");
        for msg in [&b"one"[..], b"two"] {
            resumed.write(msg, None).await.unwrap();
            assert_eq!(read(&client).await, msg);
        }
        assert_eq!(counters.resumes.load(Ordering::Relaxed), 1);
        assert_eq!(counters.parked.load(Ordering::Relaxed), 0);
    }
}
