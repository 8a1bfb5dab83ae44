//! Command line and server configuration.

use clap::{Parser, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use weir::{IoBackend, WorkerConfig};

/// How the server is run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the HTTP and WebSocket listener. Port 0 picks a free port;
    /// [`crate::Server::local_addr`] tells which.
    pub http: SocketAddr,
    /// The media worker to start. `None` runs signaling alone: every request
    /// is parsed and validated as usual, and `join` fails with `internal`.
    /// Meant for protocol tests and for checking a deployment's HTTP path.
    pub media: Option<WorkerConfig>,
    /// Limits on what one client may send.
    pub limits: Limits,
    /// Rooms spanning servers over the relay. `None`: a server alone.
    pub cluster: Option<ClusterConfig>,
}

/// How this server joins a cluster: rooms with clients on several servers
/// pull each other's tracks over the relay (`weir-relay`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This server's id in the cluster (unique per server).
    pub node_id: String,
    /// UDP address of the relay (QUIC) endpoint. Port 0 picks a free one.
    pub relay_addr: SocketAddr,
    /// The secret every server of the cluster shares.
    pub secret: Vec<u8>,
    /// Peers known up front: node id and relay address. Both servers of a
    /// pair should list each other; the one with the smaller id connects.
    pub peers: Vec<(String, SocketAddr)>,
    /// Redis URL of the room directory (`None`: the static peers only).
    pub redis: Option<String>,
    /// Largest UDP payload of the relay's QUIC connections
    /// (`weir_relay::RelayConfig::max_udp_payload`).
    pub max_udp_payload: u16,
    /// How long a relayed track whose relay connection failed waits, in
    /// its rooms, to be resumed by the reconnected peer (zero: it ends at
    /// once, within the relay's 3 s liveness bound).
    pub resume_window: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            media: Some(WorkerConfig::default()),
            limits: Limits::default(),
            cluster: None,
        }
    }
}

/// Limits on one WebSocket client. Breaking one closes that connection.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted message (and frame), in bytes.
    pub max_message_bytes: usize,
    /// Sustained rate of client messages per second.
    pub messages_per_second: u32,
    /// Messages a client may send at once above the sustained rate.
    pub message_burst: u32,
    /// Server messages queued for a client before it counts as too slow.
    pub outbox_capacity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            messages_per_second: 50,
            message_burst: 200,
            outbox_capacity: 1024,
        }
    }
}

/// The command line of `weir-server`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "weir-server",
    version,
    about = "Weir reference server: WebRTC SFU with WebSocket JSON signaling and a demo page"
)]
pub struct Args {
    /// HTTP and WebSocket listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// IP address the media sockets bind to.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub media_ip: IpAddr,
    /// IP address put in ICE candidates, when clients reach the server
    /// through NAT (defaults to --media-ip).
    #[arg(long, value_name = "IP")]
    pub announced_ip: Option<IpAddr>,
    /// First media UDP port; data-plane core k uses PORT + k.
    #[arg(long, value_name = "PORT", default_value_t = 40000)]
    pub media_port: u16,
    /// Data-plane cores; 0 uses all cores.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub workers: usize,
    /// Data-plane IO backend.
    #[arg(long, value_enum, default_value_t = IoBackendArg::Auto)]
    pub io_backend: IoBackendArg,
    /// Log filter: a level (error, warn, info, debug, trace) or a
    /// tracing-subscriber directive. Defaults to RUST_LOG, else info.
    #[arg(long, value_name = "LEVEL")]
    pub log: Option<String>,
    /// This server's id in a cluster. Needed by the cluster flags below;
    /// without any of them the server runs alone.
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// UDP address of the relay (QUIC) endpoint other servers connect to.
    #[arg(long, value_name = "IP:PORT")]
    pub relay_addr: Option<SocketAddr>,
    /// Secret shared by every server of the cluster.
    #[arg(
        long,
        value_name = "SECRET",
        env = "WEIR_CLUSTER_SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,
    /// Redis room directory, e.g. redis://127.0.0.1:6379.
    #[arg(long, value_name = "URL")]
    pub cluster_redis: Option<String>,
    /// A peer server, `ID=IP:PORT` (its --node-id and --relay-addr);
    /// repeatable. For clusters without Redis.
    #[arg(long = "relay-peer", value_name = "ID=IP:PORT", value_parser = parse_peer)]
    pub relay_peers: Vec<(String, SocketAddr)>,
    /// Milliseconds a relayed track whose relay connection failed stays
    /// in its rooms, subscribers attached, for the peer to come back and
    /// the track to resume (with a keyframe request). 0 (the default):
    /// the track ends as soon as the failure is noticed (≈2.1 s).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub relay_resume_ms: u64,
    /// Largest UDP payload the relay's path MTU discovery may reach; above
    /// about 2,500 bytes one QUIC datagram carries several RTP packets
    /// (jumbo-frame and loopback paths). On a 1,500-byte path discovery
    /// stops at 1,452 whatever this says.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 6_500,
        value_parser = clap::value_parser!(u16).range(1_300..)
    )]
    pub relay_max_udp_payload: u16,
}

fn parse_peer(s: &str) -> Result<(String, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not ID=IP:PORT"))?;
    if id.is_empty() {
        return Err(format!("'{s}': empty node id"));
    }
    let addr = addr
        .parse()
        .map_err(|e| format!("'{s}': bad address: {e}"))?;
    Ok((id.to_owned(), addr))
}

/// `--io-backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoBackendArg {
    /// The best the kernel supports.
    Auto,
    /// io_uring.
    IoUring,
    /// recvmmsg/sendmmsg.
    Mmsg,
}

impl From<IoBackendArg> for IoBackend {
    fn from(a: IoBackendArg) -> Self {
        match a {
            IoBackendArg::Auto => IoBackend::Auto,
            IoBackendArg::IoUring => IoBackend::IoUring,
            IoBackendArg::Mmsg => IoBackend::Mmsg,
        }
    }
}

impl Args {
    /// The server configuration these arguments describe.
    pub fn config(&self) -> Result<Config, crate::Error> {
        let cores = if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        };
        let last = usize::from(self.media_port) + cores - 1;
        if self.media_port == 0 || last > usize::from(u16::MAX) {
            return Err(crate::Error::Config(format!(
                "--media-port {} with {cores} cores needs ports up to {last}; use a base between 1 and {}",
                self.media_port,
                usize::from(u16::MAX) + 1 - cores
            )));
        }
        Ok(Config {
            http: self.http,
            media: Some(WorkerConfig {
                media_ip: self.media_ip,
                announced_ip: self.announced_ip,
                media_port: self.media_port,
                cores: self.workers,
                io_backend: self.io_backend.into(),
                ..WorkerConfig::default()
            }),
            limits: Limits::default(),
            cluster: self.cluster()?,
        })
    }

    fn cluster(&self) -> Result<Option<ClusterConfig>, crate::Error> {
        let any = self.node_id.is_some()
            || self.relay_addr.is_some()
            || self.cluster_redis.is_some()
            || !self.relay_peers.is_empty();
        if !any {
            return Ok(None);
        }
        let missing =
            |flag: &str| crate::Error::Config(format!("clustering needs {flag} (see --help)"));
        let node_id = self.node_id.clone().ok_or_else(|| missing("--node-id"))?;
        let relay_addr = self.relay_addr.ok_or_else(|| missing("--relay-addr"))?;
        let secret = self
            .cluster_secret
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("--cluster-secret or WEIR_CLUSTER_SECRET"))?;
        if let Some((id, _)) = self.relay_peers.iter().find(|(id, _)| *id == node_id) {
            return Err(crate::Error::Config(format!(
                "--relay-peer {id} is this server's own --node-id"
            )));
        }
        Ok(Some(ClusterConfig {
            node_id,
            relay_addr,
            secret: secret.into_bytes(),
            peers: self.relay_peers.clone(),
            redis: self.cluster_redis.clone(),
            resume_window: std::time::Duration::from_millis(self.relay_resume_ms),
            max_udp_payload: self.relay_max_udp_payload,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let a = Args::try_parse_from(["weir-server"]).unwrap();
        let c = a.config().unwrap();
        assert_eq!(c.http, SocketAddr::from(([127, 0, 0, 1], 8080)));
        let w = c.media.unwrap();
        assert_eq!(w.media_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(w.media_port, 40000);
        assert_eq!(w.cores, 0);
        assert_eq!(w.announced_ip, None);
        assert_eq!(w.io_backend, IoBackend::Auto);
    }

    #[test]
    fn every_flag() {
        let a = Args::try_parse_from([
            "weir-server",
            "--http",
            "0.0.0.0:9000",
            "--media-ip",
            "10.0.0.2",
            "--announced-ip",
            "203.0.113.7",
            "--media-port",
            "50000",
            "--workers",
            "3",
            "--io-backend",
            "io-uring",
            "--log",
            "debug",
        ])
        .unwrap();
        let c = a.config().unwrap();
        let w = c.media.unwrap();
        assert_eq!(c.http.port(), 9000);
        assert_eq!(w.announced_ip, Some(IpAddr::from([203, 0, 113, 7])));
        assert_eq!((w.media_port, w.cores), (50000, 3));
        assert_eq!(w.io_backend, IoBackend::IoUring);
        assert_eq!(a.log.as_deref(), Some("debug"));
        let a = Args::try_parse_from(["weir-server", "--io-backend", "mmsg"]).unwrap();
        assert_eq!(
            a.config().unwrap().media.unwrap().io_backend,
            IoBackend::Mmsg
        );
    }

    #[test]
    fn cluster_flags() {
        let a = Args::try_parse_from(["weir-server"]).unwrap();
        assert!(a.config().unwrap().cluster.is_none());
        let a = Args::try_parse_from([
            "weir-server",
            "--node-id",
            "a",
            "--relay-addr",
            "127.0.0.1:7000",
            "--cluster-secret",
            "s3cret",
            "--relay-peer",
            "b=127.0.0.1:7001",
            "--relay-peer",
            "c=127.0.0.2:7000",
            "--cluster-redis",
            "redis://127.0.0.1:6379",
        ])
        .unwrap();
        let c = a.config().unwrap().cluster.unwrap();
        assert_eq!(c.node_id, "a");
        assert_eq!(c.relay_addr, SocketAddr::from(([127, 0, 0, 1], 7000)));
        assert_eq!(c.secret, b"s3cret");
        assert_eq!(
            c.peers,
            vec![
                ("b".to_owned(), SocketAddr::from(([127, 0, 0, 1], 7001))),
                ("c".to_owned(), SocketAddr::from(([127, 0, 0, 2], 7000))),
            ]
        );
        assert_eq!(c.redis.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(c.max_udp_payload, 6_500, "the relay's default");
        let with = |payload: &str| {
            Args::try_parse_from([
                "weir-server",
                "--node-id",
                "a",
                "--relay-addr",
                "127.0.0.1:7000",
                "--cluster-secret",
                "s",
                "--relay-max-udp-payload",
                payload,
            ])
        };
        let c = with("1452").unwrap().config().unwrap().cluster.unwrap();
        assert_eq!(c.max_udp_payload, 1452);
        // Below the first datagram's size (1,300) or not a u16: refused.
        assert!(with("1299").is_err());
        assert!(with("70000").is_err());
        // Half a cluster configuration is an error, not a lone server.
        for args in [
            &["weir-server", "--node-id", "a"][..],
            &["weir-server", "--node-id", "a", "--cluster-secret", "s"][..],
            &[
                "weir-server",
                "--node-id",
                "a",
                "--relay-addr",
                "127.0.0.1:7000",
                "--cluster-secret",
                "s",
                "--relay-peer",
                "a=127.0.0.1:7001",
            ][..],
        ] {
            let parsed = Args::try_parse_from(args).unwrap();
            assert!(parsed.config().is_err(), "{args:?}");
        }
        for bad in ["b", "=127.0.0.1:1", "b=nope"] {
            assert!(Args::try_parse_from(["weir-server", "--relay-peer", bad]).is_err());
        }
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Args::try_parse_from(["weir-server", "--io-backend", "epoll"]).is_err());
        assert!(Args::try_parse_from(["weir-server", "--media-ip", "nope"]).is_err());
        let a = Args::try_parse_from(["weir-server", "--media-port", "65535", "--workers", "2"])
            .unwrap();
        assert!(a.config().is_err());
        let a =
            Args::try_parse_from(["weir-server", "--media-port", "0", "--workers", "1"]).unwrap();
        assert!(a.config().is_err());
    }
}
