//! Relay connections over real UDP on 127.0.0.1: authentication, the first
//! datagram's size, and detection of a dead peer.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use weir_relay::{RelayConfig, RelayEndpoint, RelayError};

const LIMIT: Duration = Duration::from_secs(10);

async fn endpoint(id: &str, secret: &[u8]) -> RelayEndpoint {
    RelayEndpoint::bind(RelayConfig::new(id, secret.to_vec()))
        .await
        .expect("bind relay endpoint")
}

async fn wait_counter(e: &RelayEndpoint, name: &str, want: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let v = e.counters().get(name).unwrap_or(0);
        if v >= want || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn peers_with_the_same_secret_authenticate_both_ways() {
    let a = endpoint("a", b"right").await;
    let b = endpoint("b", b"right").await;
    let peer = tokio::time::timeout(LIMIT, b.connect(a.local_addr().unwrap()))
        .await
        .expect("connect in time")
        .expect("connect");
    assert_eq!(peer.server_id(), "a");
    let accepted = tokio::time::timeout(LIMIT, a.accept())
        .await
        .expect("accept in time")
        .expect("an accepted peer");
    assert_eq!(accepted.server_id(), "b");
    // A 1200-byte RTP packet and its largest relay header fit from the
    // first datagram on, before any path MTU discovery.
    let max = peer.max_datagram_size().expect("datagrams negotiated");
    assert!(
        max >= 1200 + weir_relay::proto::datagram::RTP_HEADER_MAX_LEN,
        "max_datagram_size {max}"
    );
    assert_eq!(a.counters().get("live_peers"), Some(1));
    assert_eq!(a.counters().get("auth_refused"), Some(0));

    // The connection outlives the application's handles: it ends on
    // close() or failure only.
    drop((peer, accepted));
    let again = b.peers().pop().expect("B still lists its peer");
    assert!(
        tokio::time::timeout(Duration::from_secs(1), again.closed())
            .await
            .is_err(),
        "the connection closed when its handles were dropped"
    );
    assert_eq!(a.peers().len(), 1);
    again.close();
    tokio::time::timeout(LIMIT, again.closed())
        .await
        .expect("closed on request");
    assert_eq!(wait_gauge_zero(&a, "live_peers").await, 0);
    assert!(b.peers().is_empty());
}

async fn wait_gauge_zero(e: &RelayEndpoint, name: &str) -> u64 {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let v = e.counters().get(name).unwrap_or(0);
        if v == 0 || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_peer_with_the_wrong_secret_is_refused() {
    let a = endpoint("a", b"right").await;
    let intruder = endpoint("intruder", b"wrong").await;
    let result = tokio::time::timeout(LIMIT, intruder.connect(a.local_addr().unwrap()))
        .await
        .expect("refusal in time");
    match result {
        Err(RelayError::Refused(reason)) => {
            assert!(reason.contains("unauthorized"), "reason: {reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(wait_counter(&a, "auth_refused", 1).await, 1);
    assert_eq!(a.counters().get("live_peers"), Some(0));
    assert!(a.peers().is_empty());

    // And the other way round: a server that does not know the secret
    // cannot pass itself off as a cluster member to a connecting one.
    let b = endpoint("b", b"right").await;
    let result = tokio::time::timeout(LIMIT, b.connect(intruder.local_addr().unwrap()))
        .await
        .expect("refusal in time");
    assert!(result.is_err(), "connected to an intruder: {result:?}");
    assert_eq!(wait_counter(&intruder, "auth_refused", 1).await, 1);
    assert_eq!(b.counters().get("live_peers"), Some(0));
}

/// Forwards datagrams between a client and `server` until cut: then the
/// path silently drops everything, as a dead host or a partition would.
async fn proxy(server: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
    {
        let (front, back, cut, client) = (front.clone(), back.clone(), cut.clone(), client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                if !cut.load(Ordering::Relaxed) {
                    let _ = back.send(&buf[..n]).await;
                }
            }
        });
    }
    {
        let cut = cut.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = back.recv(&mut buf).await {
                let to = *client.lock().unwrap();
                if let (false, Some(to)) = (cut.load(Ordering::Relaxed), to) {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
    }
    (addr, cut)
}

#[tokio::test]
async fn a_dead_peer_is_detected_within_three_seconds() {
    let a = endpoint("a", b"s").await;
    let b = endpoint("b", b"s").await;
    let (via, cut) = proxy(a.local_addr().unwrap()).await;
    let peer = b.connect(via).await.expect("connect through the proxy");
    let accepted = a.accept().await.expect("accepted");
    // Quiet for longer than the idle timeout: keep-alives hold it up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(peer.is_open() && accepted.is_open(), "keep-alives failed");
    cut.store(true, Ordering::Relaxed);
    let reason = tokio::time::timeout(Duration::from_secs(3), peer.closed())
        .await
        .expect("B noticed the dead peer within 3 s");
    assert!(reason.contains("timed out"), "reason: {reason}");
    tokio::time::timeout(Duration::from_secs(3), accepted.closed())
        .await
        .expect("A noticed the dead peer within 3 s");
    assert_eq!(wait_counter(&b, "peers_timed_out", 1).await, 1);
    assert_eq!(wait_counter(&a, "peers_timed_out", 1).await, 1);
    for e in [&a, &b] {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while e.counters().get("live_peers") != Some(0) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(e.counters().get("live_peers"), Some(0));
        assert!(e.peers().is_empty());
    }
}
