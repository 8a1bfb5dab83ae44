//! Helpers for the relay tests: a UDP path the test can cut, and the relay
//! endpoint's counters.

use anyhow::{Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use weir::relay::{RelayConfig, RelayEndpoint};
use weir::{Router, Worker, WorkerConfig};

/// One Weir server of a relay test: a worker on 127.0.0.1 with two cores,
/// its router "room", and its relay endpoint serving that router.
pub struct RelayServer {
    pub worker: Worker,
    pub router: Router,
    pub relay: RelayEndpoint,
}

/// Starts a [`RelayServer`] whose relay endpoint is bound with `config`.
pub async fn relay_server(config: RelayConfig) -> Result<RelayServer> {
    let worker = Worker::new(WorkerConfig {
        media_ip: IpAddr::from([127, 0, 0, 1]),
        media_port: super::free_base_port(4),
        cores: 2,
        ..Default::default()
    })
    .await
    .context("Worker::new")?;
    let router = worker.create_router(weir::RouterConfig {
        id: Some("room".into()),
    });
    let relay = RelayEndpoint::bind(config).await?;
    relay.serve_router(&router);
    Ok(RelayServer {
        worker,
        router,
        relay,
    })
}

/// Forwards UDP between a client and `server` until cut; then drops
/// everything silently, like a dead host or path. Returns the address the
/// client sends to and the switch that cuts (`true`) or restores the path.
pub async fn cuttable_path(server: SocketAddr) -> Result<(SocketAddr, Arc<AtomicBool>)> {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    back.connect(server).await?;
    let addr = front.local_addr()?;
    let cut = Arc::new(AtomicBool::new(false));
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let (f, b, c, cl) = (front.clone(), back.clone(), cut.clone(), client.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *cl.lock().unwrap() = Some(from);
            if !c.load(Ordering::Relaxed) {
                let _ = b.send(&buf[..n]).await;
            }
        }
    });
    let c = cut.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = back.recv(&mut buf).await {
            let to = *client.lock().unwrap();
            if let (false, Some(to)) = (c.load(Ordering::Relaxed), to) {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    Ok((addr, cut))
}

/// The relay endpoint's counter `name`, 0 when it was never counted.
pub fn counter(e: &RelayEndpoint, name: &str) -> u64 {
    e.counters().get(name).unwrap_or(0)
}
