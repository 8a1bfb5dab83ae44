//! End-to-end scenarios: a release `weir-server` loaded by `weir-loadgen`
//! (real ICE, DTLS and SRTP peers over loopback), each scenario repeated
//! for every data-plane core count asked for.
//!
//! ```text
//! for cores in --cores, for scenario, for repeat:
//!     weir-server --workers cores (fresh process, free ports) ─ /healthz ─ RSS baseline
//!     weir-loadgen --server … --server-pid … --json … ─ wait ─ parse the report
//!     SIGTERM the server
//! ```
//! The rows go to `bench/RESULTS.md` as a Markdown table (appended, with
//! date, machine, commit and command) and the 1 → N subscriber rows to an
//! SVG capacity curve ([`crate::plot`]).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One load scenario, in `weir-loadgen` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Short name, used by `--only` and in the tables.
    pub name: &'static str,
    /// Rooms.
    pub rooms: usize,
    /// Publishers per room.
    pub publishers: usize,
    /// Subscribers per room.
    pub subscribers: usize,
    /// Whether publishers send VP8 (they always send Opus).
    pub video: bool,
}

impl Spec {
    /// Subscribers over all rooms.
    pub fn total_subscribers(&self) -> usize {
        self.rooms * self.subscribers
    }

    /// Peers over all rooms.
    pub fn total_peers(&self) -> usize {
        self.rooms * (self.publishers + self.subscribers)
    }

    /// Whether the scenario is a point of the 1 → N capacity curve.
    pub fn on_curve(&self) -> bool {
        self.rooms == 1 && self.publishers == 1 && self.video
    }
}

/// The scenarios of issue 5, in the order they run.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "1x10",
        rooms: 1,
        publishers: 1,
        subscribers: 10,
        video: true,
    },
    Spec {
        name: "1x100",
        rooms: 1,
        publishers: 1,
        subscribers: 100,
        video: true,
    },
    Spec {
        name: "1x500",
        rooms: 1,
        publishers: 1,
        subscribers: 500,
        video: true,
    },
    Spec {
        name: "1x1000",
        rooms: 1,
        publishers: 1,
        subscribers: 1000,
        video: true,
    },
    Spec {
        name: "10rooms-5x5",
        rooms: 10,
        publishers: 5,
        subscribers: 5,
        video: true,
    },
    Spec {
        name: "audio-1x3000",
        rooms: 1,
        publishers: 1,
        subscribers: 3000,
        video: false,
    },
];

/// How to run the scenarios.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `weir-server` binary (release build).
    pub server_bin: PathBuf,
    /// The `weir-loadgen` binary (release build).
    pub loadgen_bin: PathBuf,
    /// Measurement seconds per run (after the ramp).
    pub duration: f64,
    /// Peers started per second.
    pub ramp: f64,
    /// Runs per scenario and core count.
    pub repeats: usize,
    /// Data-plane core counts of the server.
    pub cores: Vec<usize>,
    /// Scenario names to run (all when empty).
    pub only: Vec<String>,
    /// Where server logs and loadgen reports go.
    pub work_dir: PathBuf,
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario.
    pub spec: Spec,
    /// Server data-plane cores.
    pub cores: usize,
    /// Repeat number, from 1.
    pub repeat: usize,
    /// Peers asked for and joined.
    pub requested: u64,
    /// Peers joined.
    pub joined: u64,
    /// Join time p50 and p99, ms.
    pub join_ms: (Option<f64>, Option<f64>),
    /// Packets per second received by all subscribers.
    pub rx_pps: f64,
    /// Loss ratio (0..1) after retransmission.
    pub loss: f64,
    /// Loss ratio (0..1) before retransmission.
    pub loss_before: f64,
    /// p99 of the signaling and DTLS stages of a join, ms.
    pub stage_p99_ms: (Option<f64>, Option<f64>),
    /// Latency p50 and p99, ms (publisher send to subscriber receive, same
    /// process clock; includes both loadgen and server scheduling).
    pub latency_ms: (Option<f64>, Option<f64>),
    /// Server CPU over the window, percent of one core.
    pub server_cpu: Option<f64>,
    /// Server RSS growth per subscriber over its idle baseline, KiB.
    pub server_kib_per_sub: Option<f64>,
    /// Loadgen RSS per requested peer, KiB.
    pub loadgen_kib_per_peer: Option<f64>,
    /// Loadgen CPU over the window, percent of one core.
    pub loadgen_cpu: Option<f64>,
}

/// A server process that is killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first so it can close its sockets; then make sure.
        // SAFETY: kill(2) with a pid we spawned and own.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_tcp_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// A base port with `n` consecutive free UDP ports.
fn free_udp_base(n: usize) -> Result<u16, String> {
    for attempt in 0..200u32 {
        let base = 30000 + ((std::process::id().wrapping_mul(7919) + attempt * 131) % 25000) as u16;
        let ok = (0..n as u16).all(|k| UdpSocket::bind(("127.0.0.1", base + k)).is_ok());
        if ok {
            return Ok(base);
        }
    }
    Err("no free UDP port range".into())
}

fn healthy(url_port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", url_port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    // `HTTP/1.x 200`: the server answers a 1.0 request as 1.0.
    s.read(&mut buf)
        .is_ok_and(|n| n >= 12 && buf.starts_with(b"HTTP/1.") && &buf[9..12] == b"200")
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn start_server(cfg: &Config, cores: usize, tag: &str) -> Result<Server, String> {
    let http = free_tcp_port()?;
    let media = free_udp_base(cores)?;
    let log = std::fs::File::create(cfg.work_dir.join(format!("server-{tag}.log")))
        .map_err(|e| e.to_string())?;
    let child = Command::new(&cfg.server_bin)
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--media-port", &media.to_string()])
        .args(["--workers", &cores.to_string(), "--log", "warn"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cfg.server_bin.display()))?;
    let mut server = Server {
        child,
        url: format!("http://127.0.0.1:{http}"),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !healthy(http) {
        if Instant::now() > deadline {
            return Err("weir-server did not become healthy in 15 s".into());
        }
        if let Ok(Some(st)) = server.child.try_wait() {
            return Err(format!("weir-server exited: {st}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Runs `spec` once against a fresh server with `cores` data-plane cores.
pub fn run_one(cfg: &Config, spec: &Spec, cores: usize, repeat: usize) -> Result<Row, String> {
    let tag = format!("{}-c{cores}-r{repeat}", spec.name);
    let server = start_server(cfg, cores, &tag)?;
    let pid = server.child.id();
    // Let the server settle before its baseline.
    std::thread::sleep(Duration::from_millis(300));
    let baseline = rss_kib(pid);
    let json = cfg.work_dir.join(format!("loadgen-{tag}.json"));
    let _ = std::fs::remove_file(&json);
    let peers = spec.total_peers();
    let join_timeout = 30.0;
    let mut cmd = Command::new(&cfg.loadgen_bin);
    cmd.args(["--server", &server.url])
        .args(["--rooms", &spec.rooms.to_string()])
        .args(["--publishers", &spec.publishers.to_string()])
        .args(["--subscribers", &spec.subscribers.to_string()])
        .args(["--duration", &cfg.duration.to_string()])
        .args(["--ramp", &cfg.ramp.to_string()])
        .args(["--join-timeout", &join_timeout.to_string()])
        .args(["--server-pid", &pid.to_string()])
        .arg("--json")
        .arg(&json)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !spec.video {
        cmd.args(["--video", "none"]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cfg.loadgen_bin.display()))?;
    let limit =
        Duration::from_secs_f64(peers as f64 / cfg.ramp + cfg.duration + join_timeout + 60.0);
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            if !st.success() {
                return Err(format!("weir-loadgen failed: {st}"));
            }
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("weir-loadgen took longer than {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);
    let text = std::fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?;
    let r: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
    let subs = spec.total_subscribers() as f64;
    let server_end_kib = f(&r["server_rss_mb"]).map(|m| m * 1024.0);
    Ok(Row {
        spec: *spec,
        cores,
        repeat,
        requested: r["peers_requested"].as_u64().unwrap_or(0),
        joined: r["peers_joined"].as_u64().unwrap_or(0),
        join_ms: (f(&r["join_ms"]["p50"]), f(&r["join_ms"]["p99"])),
        rx_pps: f(&r["rx_packets_per_s"]).unwrap_or(0.0),
        loss: f(&r["loss_ratio"]).unwrap_or(0.0),
        loss_before: f(&r["loss_ratio_before_retransmission"]).unwrap_or(0.0),
        stage_p99_ms: (
            f(&r["join_stages_ms"]["signaling"]["p99"]),
            f(&r["join_stages_ms"]["dtls"]["p99"]),
        ),
        latency_ms: (f(&r["latency_ms"]["p50"]), f(&r["latency_ms"]["p99"])),
        server_cpu: f(&r["server_cpu_percent"]),
        server_kib_per_sub: server_end_kib
            .zip(baseline)
            .map(|(end, base)| (end - base) / subs),
        loadgen_kib_per_peer: f(&r["loadgen_rss_mb"]).map(|m| m * 1024.0 / peers as f64),
        loadgen_cpu: f(&r["loadgen_cpu_percent"]),
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

/// The Markdown table header of [`Row::markdown`].
pub const TABLE_HEADER: &str = "| scenario | dp cores | run | joined | join p50 / p99 ms | signaling / DTLS p99 ms | rx pkt/s | loss % after / before retx | latency p50 / p99 ms | server CPU % | server KiB / sub | loadgen KiB / peer | loadgen CPU % |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|";

impl Row {
    /// The row as a line of the Markdown table.
    pub fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {}/{} | {} / {} | {} / {} | {:.0} | {:.2} / {:.2} | {} / {} | {} | {} | {} | {} |",
            self.spec.name,
            self.cores,
            self.repeat,
            self.joined,
            self.requested,
            opt(self.join_ms.0, 0),
            opt(self.join_ms.1, 0),
            opt(self.stage_p99_ms.0, 0),
            opt(self.stage_p99_ms.1, 0),
            self.rx_pps,
            self.loss * 100.0,
            self.loss_before * 100.0,
            opt(self.latency_ms.0, 2),
            opt(self.latency_ms.1, 2),
            opt(self.server_cpu, 0),
            opt(self.server_kib_per_sub, 1),
            opt(self.loadgen_kib_per_peer, 1),
            opt(self.loadgen_cpu, 0),
        )
    }
}

/// Facts about the machine for the results header.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!(", {:.0} GiB RAM", kib / 1024.0 / 1024.0)
        });
    format!("{cpus} × {model}{mem}")
}

/// The 1-minute load average.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The short commit of the working tree, with `+dirty` when it has changes.
pub fn commit(repo: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let hash = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{hash}+dirty")
    } else {
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_scenarios_are_there() {
        let subs: Vec<usize> = SPECS
            .iter()
            .filter(|s| s.on_curve())
            .map(Spec::total_subscribers)
            .collect();
        assert_eq!(subs, [10, 100, 500, 1000]);
        let rooms = SPECS.iter().find(|s| s.name == "10rooms-5x5").unwrap();
        assert_eq!(rooms.total_peers(), 100);
        let audio = SPECS.iter().find(|s| !s.video).unwrap();
        assert_eq!(audio.total_subscribers(), 3000);
    }

    #[test]
    fn rows_render_as_table_lines() {
        let row = Row {
            spec: SPECS[0],
            cores: 1,
            repeat: 1,
            requested: 11,
            joined: 11,
            join_ms: (Some(120.0), None),
            rx_pps: 1234.4,
            loss: 0.001,
            loss_before: 0.002,
            stage_p99_ms: (Some(30.0), None),
            latency_ms: (Some(0.5), Some(1.25)),
            server_cpu: Some(12.0),
            server_kib_per_sub: Some(40.0),
            loadgen_kib_per_peer: None,
            loadgen_cpu: None,
        };
        let line = row.markdown();
        assert_eq!(
            line.matches('|').count(),
            TABLE_HEADER.lines().next().unwrap().matches('|').count()
        );
        assert!(
            line.contains("| 11/11 | 120 / – | 30 / – | 1234 | 0.10 / 0.20 | 0.50 / 1.25 |"),
            "{line}"
        );
        assert!(machine().contains('×'));
    }
}
