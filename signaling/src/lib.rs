//! `weir-server`, the reference server of the Weir SFU.
//!
//! It speaks the WebSocket JSON protocol of `signaling/PROTOCOL.md` at
//! `/ws`, serves the demo page and the `weir-client` bundle, and exports
//! Prometheus metrics. Each WebSocket is one participant with one publish
//! and one subscribe transport in one room; a room is a [`weir::Router`],
//! created by its first `join` and closed when its last member leaves.
//!
//! ```text
//! socket ─ read loop ─┬─ requests, one at a time ──▶ SDK (transports, publish, subscribe)
//!                     ├─ session events ◀── publish resolved, negotiation needed, room changes
//!                     └─ outbox (bounded) ◀── replies, and SDK callbacks on their own threads
//! ```
//!
//! Run it in-process (tests do) with [`serve`], or [`Server::bind`] then
//! [`Server::run`] to learn the address first:
//!
//! ```no_run
//! # async fn f() -> Result<(), weir_signaling::Error> {
//! let config = weir_signaling::Config {
//!     http: "127.0.0.1:0".parse().unwrap(),
//!     ..Default::default()
//! };
//! let server = weir_signaling::Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod cluster;
mod config;
mod http;
mod metrics;
mod peer;
mod protocol;
mod redis_directory;
mod room;

pub use config::{Args, ClusterConfig, Config, IoBackendArg, Limits};

/// Entry points for the fuzz targets in `signaling/fuzz`; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::protocol::{self, ServerMessage};

    /// Takes one client text frame as a session's read loop does before it
    /// dispatches anything: the request's `type` if the frame parses, or
    /// else the `error` reply the client is sent, as JSON.
    pub fn request(text: &str) -> Result<&'static str, String> {
        match protocol::parse(text) {
            Ok(envelope) => Ok(envelope.request.kind().as_str()),
            Err(e) => Err(ServerMessage::error(e.id, e.failure).to_json()),
        }
    }
}

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long sessions get to wind down at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The HTTP listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The media worker did not start.
    #[error("media worker: {0}")]
    Worker(#[from] weir::Error),
    /// Invalid configuration.
    #[error("{0}")]
    Config(String),
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

/// State shared by the HTTP handlers and the sessions.
pub(crate) struct App {
    pub(crate) rooms: room::Rooms,
    /// This server's part of a cluster, if any.
    pub(crate) cluster: Option<Arc<cluster::Cluster>>,
    pub(crate) worker: Option<weir::Worker>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) limits: Limits,
    /// Turns true when the server stops.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Live sessions; shutdown waits for zero.
    sessions: watch::Sender<usize>,
}

/// Counts a session (and a connection) for as long as it lives.
pub(crate) struct SessionGuard(Arc<App>);

impl SessionGuard {
    pub(crate) fn new(app: &Arc<App>) -> Self {
        app.sessions.send_modify(|n| *n += 1);
        app.metrics.connection_opened();
        Self(app.clone())
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.metrics.connection_closed();
        self.0.sessions.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    app: Arc<App>,
    stop: watch::Sender<bool>,
}

impl Server {
    /// Binds the HTTP listener and starts the media worker.
    pub async fn bind(config: Config) -> Result<Server, Error> {
        let listener = TcpListener::bind(config.http)
            .await
            .map_err(|source| Error::Bind {
                addr: config.http,
                source,
            })?;
        let local_addr = listener.local_addr()?;
        let worker = match config.media {
            Some(wc) => Some(weir::Worker::new(wc).await?),
            None => None,
        };
        let cluster = match (&config.cluster, &worker) {
            (Some(c), Some(_)) => Some(cluster::Cluster::start(c).await?),
            (Some(_), None) => {
                return Err(Error::Config("clustering needs the media worker".into()))
            }
            (None, _) => None,
        };
        let (stop, shutdown) = watch::channel(false);
        let app = Arc::new(App {
            rooms: room::Rooms::new(worker.clone(), cluster.clone()),
            cluster,
            worker,
            metrics: Arc::default(),
            limits: config.limits,
            shutdown,
            sessions: watch::Sender::new(0),
        });
        Ok(Server {
            listener,
            local_addr,
            app,
            stop,
        })
    }

    /// The address the HTTP listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting, closes every
    /// session, room and the media worker, and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Server {
            listener,
            app,
            stop,
            ..
        } = self;
        let routes = http::router(app.clone());
        let served = axum::serve(listener, routes)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down");
                // Sessions watch this and close their sockets.
                let _ = stop.send(true);
            })
            .await;

        let mut sessions = app.sessions.subscribe();
        if tokio::time::timeout(SHUTDOWN_GRACE, sessions.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            tracing::warn!("sessions did not end in time");
        }
        for router in app.rooms.drain() {
            router.close().await;
        }
        if let Some(cluster) = &app.cluster {
            cluster.close().await;
        }
        if let Some(worker) = &app.worker {
            worker.close().await;
        }
        served.map_err(Error::Io)
    }
}

/// Binds and serves until `shutdown` completes; see [`Server::run`].
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Server::bind(config).await?.run(shutdown).await
}
