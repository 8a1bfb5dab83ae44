//! `weir-bench`: the data-plane scenarios.
//!
//! ```text
//! weir-bench raw-ceiling [--receivers N] [--seconds S] [--gso]
//! weir-bench forward [--subscribers N] [--seconds S] [--cores C]
//!                    [--backend auto|io-uring|mmsg] [--gso on|off] [--multishot on|off]
//!                    [--srtp gcm|cm] [--window W]
//! weir-bench core-only [--subscribers N] [--packets P] [--srtp gcm|cm]
//! weir-bench core-scaling [--subscribers N] [--packets P] [--srtp gcm|cm] [--cores C] [--rounds R]
//! weir-bench matrix  [--subscribers N] [--seconds S] [--cores C] [--srtp gcm|cm]
//! weir-bench scenarios [--duration S] [--repeat N] [--cores 1,2] [--ramp R]
//!                      [--only 1x10,1x100,…] [--server-bin P] [--loadgen-bin P]
//!                      [--results FILE] [--svg FILE] [--no-write]
//! ```
//! `matrix` measures the raw ceiling, the core's work without sockets and
//! then forwarding with every backend and GSO setting in one run, and prints
//! a Markdown table with the ratios.
use std::process::ExitCode;

use weir_bench::core_only::{core_only, core_only_after};
use weir_bench::forward::{self, ForwardConfig, ForwardResult};
use weir_bench::raw::{self, RawConfig, RawResult};
use weir_dataplane::driver::IoBackendChoice;
use weir_dataplane::io::detect;
use weir_dataplane::srtp::SrtpProfile;

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("{name}: cannot parse {v:?}")),
        }
    }

    fn on_off(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.value(name) {
            None => Ok(default),
            Some("on") => Ok(true),
            Some("off") => Ok(false),
            Some(v) => Err(format!("{name}: expected on or off, got {v:?}")),
        }
    }

    fn profile(&self) -> Result<SrtpProfile, String> {
        match self.value("--srtp") {
            None | Some("gcm") => Ok(SrtpProfile::AeadAes128Gcm),
            Some("cm") => Ok(SrtpProfile::Aes128CmHmacSha1_80),
            Some(v) => Err(format!("--srtp: expected gcm or cm, got {v:?}")),
        }
    }
}

fn print_raw(r: &RawResult, receivers: usize, gso: bool) {
    println!(
        "raw-ceiling receivers={receivers} gso={gso}: {:.0} pkt/s wall, {:.0} pkt/s per sender CPU-second \
         (sender load {:.2}), receivers got {:.0} pkt/s",
        r.pps_wall(),
        r.pps_cpu(),
        r.cpu.as_secs_f64() / r.wall.as_secs_f64(),
        r.received as f64 / r.wall.as_secs_f64()
    );
}

fn print_forward(r: &ForwardResult, cfg: &ForwardConfig) {
    println!(
        "forward backend={} gso={} multishot={} cores={} subscribers={} srtp={:?}: {:.0} pkt/s out per core (wall), \
         {:.0} pkt/s out per dp CPU-second, dp load {:.2}, in {:.0} pkt/s (published {:.0}), delivered {:.0} pkt/s, \
         rx batch {:.1}, GSO {} msgs/{} segs, {} fallbacks, drops {:?}",
        r.backend,
        cfg.gso,
        cfg.multishot,
        cfg.cores,
        cfg.subscribers,
        cfg.profile,
        r.pps_per_core_wall(),
        r.pps_cpu(),
        r.load(),
        r.rx as f64 / r.wall.as_secs_f64(),
        r.published as f64 / r.wall.as_secs_f64(),
        r.delivered as f64 / r.wall.as_secs_f64(),
        r.rx_batch,
        r.gso_messages,
        r.gso_segments,
        r.gso_fallbacks,
        r.drops,
    );
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("usage: weir-bench raw-ceiling|forward|matrix [options] (see the crate docs)");
        return ExitCode::from(2);
    };
    let args = Args(argv);
    match run(&cmd, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: &str, args: &Args) -> Result<(), String> {
    let seconds: f64 = args.num("--seconds", 3.0)?;
    match cmd {
        "raw-ceiling" => {
            let receivers = args.num("--receivers", 10)?;
            let cfg = RawConfig {
                receivers,
                seconds,
                gso: args.flag("--gso"),
                sender_core: 0,
            };
            print_raw(&raw::run(&cfg), receivers, cfg.gso);
        }
        "forward" => {
            let backend: IoBackendChoice = args.value("--backend").unwrap_or("auto").parse()?;
            let cfg = ForwardConfig {
                subscribers: args.num("--subscribers", 10)?,
                seconds,
                cores: args.num("--cores", 1)?,
                backend,
                gso: args.on_off("--gso", true)?,
                multishot: args.on_off("--multishot", true)?,
                profile: args.profile()?,
                window: args.num("--window", 1024)?,
            };
            let r = forward::run(&cfg).map_err(|e| e.to_string())?;
            print_forward(&r, &cfg);
            println!(
                "whole run: {} datagrams out; core 0 IO counters {:?}",
                r.total_out, r.io_totals
            );
        }
        "core-only" => {
            let subscribers = args.num("--subscribers", 10)?;
            weir_bench::cpu::pin(0);
            let (out, cpu) =
                core_only(subscribers, args.profile()?, args.num("--packets", 50_000)?);
            println!(
                "core-only subscribers={subscribers}: {out} datagrams in {cpu:?} CPU: {:.0} pkt/s out per CPU-second",
                out as f64 / cpu.as_secs_f64()
            );
        }
        "core-scaling" => core_scaling(args)?,
        "matrix" => matrix(args, seconds)?,
        "scenarios" => scenarios(args)?,
        other => return Err(format!("unknown command {other:?}")),
    }
    Ok(())
}

/// How the cores' own work scales with the number of cores: 1, then up
/// to `--cores` threads, each pinned to its own CPU and running its own
/// room through a `Core` without sockets, started together. Kernel
/// sending and the clients are left out on purpose: on a machine with as
/// many CPUs as data-plane cores they would share the CPUs being measured.
/// Rounds alternate the core counts so that load from elsewhere hits both.
fn core_scaling(args: &Args) -> Result<(), String> {
    let subscribers: usize = args.num("--subscribers", 10)?;
    let packets: usize = args.num("--packets", 30_000)?;
    let max_cores: usize = args.num("--cores", 2)?;
    let rounds: usize = args.num("--rounds", 3)?;
    let profile = args.profile()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if max_cores > cpus {
        return Err(format!("--cores {max_cores}: this machine has {cpus} CPUs"));
    }
    println!(
        "| round | cores | out pkt/s (wall, all cores) | wall ratio to 1 core | out pkt/s per CPU-s (each core) | CPU-s efficiency vs 1 core |"
    );
    println!("|---|---|---|---|---|---|");
    for round in 1..=rounds {
        let mut one = None;
        let mut one_cpu = None;
        for cores in 1..=max_cores {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(cores));
            let threads: Vec<_> = (0..cores)
                .map(|c| {
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        weir_bench::cpu::pin(c);
                        core_only_after(subscribers, profile, packets, Some(&barrier))
                    })
                })
                .collect();
            let mut out = 0u64;
            let mut slowest = std::time::Duration::ZERO;
            let mut cpu = std::time::Duration::ZERO;
            for t in threads {
                let r = t.join().map_err(|_| "core-scaling thread panicked")?;
                out += r.out;
                slowest = slowest.max(r.wall);
                cpu += r.cpu;
            }
            let pps = out as f64 / slowest.as_secs_f64();
            let per_cpu = out as f64 / cpu.as_secs_f64();
            let base = *one.get_or_insert(pps);
            let base_cpu = *one_cpu.get_or_insert(per_cpu);
            println!(
                "| {round} | {cores} | {pps:.0} | {:.2} | {per_cpu:.0} | {:.2} |",
                pps / base,
                per_cpu / base_cpu
            );
        }
    }
    Ok(())
}

/// Runs the end-to-end scenarios, prints each row, appends the table to
/// RESULTS.md and draws the capacity curve.
fn scenarios(args: &Args) -> Result<(), String> {
    use weir_bench::scenarios::{self as sc, Config, SPECS, TABLE_HEADER};
    let bench_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = bench_dir.parent().unwrap_or(bench_dir);
    // Next to this binary: `cargo build --release -p weir-bench -p weir-signaling -p weir-loadgen`.
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default();
    let path_arg = |name: &str, default: std::path::PathBuf| {
        args.value(name).map_or(default, std::path::PathBuf::from)
    };
    let cores: Vec<usize> = args
        .value("--cores")
        .unwrap_or("1,2")
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .map_err(|_| format!("--cores: bad core count {c:?}"))
        })
        .collect::<Result<_, _>>()?;
    let only: Vec<String> = args
        .value("--only")
        .map(|o| o.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(bad) = only
        .iter()
        .find(|o| !SPECS.iter().any(|s| s.name == o.as_str()))
    {
        return Err(format!(
            "--only: no scenario {bad:?} (have {})",
            SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        ));
    }
    let work_dir =
        std::env::temp_dir().join(format!("weir-bench-scenarios-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).map_err(|e| e.to_string())?;
    let cfg = Config {
        server_bin: path_arg("--server-bin", exe_dir.join("weir-server")),
        loadgen_bin: path_arg("--loadgen-bin", exe_dir.join("weir-loadgen")),
        duration: args.num("--duration", 10.0)?,
        ramp: args.num("--ramp", 200.0)?,
        repeats: args.num("--repeat", 2)?,
        cores,
        only,
        work_dir,
    };
    let results = path_arg("--results", bench_dir.join("RESULTS.md"));
    let svg = path_arg("--svg", bench_dir.join("capacity.svg"));
    let started = date_utc();
    let load_start = sc::load_average();
    let commit = sc::commit(repo);
    eprintln!("logs and reports in {}", cfg.work_dir.display());
    println!("{TABLE_HEADER}");
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for &c in &cfg.cores {
        for spec in SPECS
            .iter()
            .filter(|s| cfg.only.is_empty() || cfg.only.iter().any(|o| o == s.name))
        {
            for repeat in 1..=cfg.repeats {
                match sc::run_one(&cfg, spec, c, repeat) {
                    Ok(row) => {
                        println!("{}", row.markdown());
                        rows.push(row);
                    }
                    Err(e) => {
                        eprintln!("{} cores={c} run {repeat}: {e}", spec.name);
                        failures.push(format!("{} cores={c} run {repeat}: {e}", spec.name));
                    }
                }
            }
        }
    }
    let load_end = sc::load_average();
    if args.flag("--no-write") {
        return Ok(());
    }
    let command: Vec<String> = std::env::args().skip(1).collect();
    let caption = format!(
        "weir-server capacity, {started}, commit {commit}, {} s windows",
        cfg.duration
    );
    let plotted = weir_bench::plot::capacity_svg(&rows, &svg, &caption);
    let mut md = String::new();
    if !std::fs::read_to_string(&results)
        .unwrap_or_default()
        .contains(SCENARIOS_HEADING)
    {
        md.push_str(SCENARIOS_INTRO);
    }
    md.push_str(&format!(
        "\n### {started} · commit `{commit}` · {}\n\n`weir-bench {}` ({} s measured per run after the ramp at {} peers/s; {} run(s) per scenario and core count). \
**Shared machine**: other engineers were building and testing on the same cores (1-minute load average {load_start} at the start, {load_end} at the end), and weir-loadgen itself runs on them too, so CPU, latency and loss are upper bounds of what the server needs.\n\n{TABLE_HEADER}\n",
        sc::machine(),
        command.join(" "),
        cfg.duration,
        cfg.ramp,
        cfg.repeats,
    ));
    for r in &rows {
        md.push_str(&r.markdown());
        md.push('\n');
    }
    for f in &failures {
        md.push_str(&format!("\nFailed: {f}\n"));
    }
    match &plotted {
        Ok(()) => {
            let name = svg
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            md.push_str(&format!(
                "\nCapacity curve of this run: [`{name}`]({name}).\n"
            ));
        }
        Err(e) => md.push_str(&format!("\nNo capacity curve: {e}.\n")),
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&results)
        .map_err(|e| format!("{}: {e}", results.display()))?;
    std::io::Write::write_all(&mut file, md.as_bytes()).map_err(|e| e.to_string())?;
    eprintln!(
        "appended {} rows to {}; curve: {}",
        rows.len(),
        results.display(),
        svg.display()
    );
    Ok(())
}

const SCENARIOS_HEADING: &str = "## End-to-end scenarios: weir-server loaded by weir-loadgen";
const SCENARIOS_INTRO: &str = "
## End-to-end scenarios: weir-server loaded by weir-loadgen

`weir-bench scenarios` starts a fresh release `weir-server --workers C` per run
and loads it with a release `weir-loadgen` (real ICE, DTLS 1.2 and SRTP peers
on 127.0.0.1, VP8 ~1 Mbit/s + Opus publishers): 1 publisher → 10 / 100 / 500 /
1,000 subscribers, 10 rooms × (5 publishers + 5 subscribers), and 1 audio-only
publisher → 3,000 subscribers. Each run appends a table here.

- *joined*: peers whose media flowed / peers asked for; *join*: WebSocket
  connect to media flowing. *loss*: 1 − received / expected over the whole run
  (no retransmission). *latency*: publisher send to subscriber receive, on the
  loadgen's one clock: it includes the loadgen's own scheduling, so it bounds
  the SFU-added latency from above.
- *server KiB / sub*: server RSS at the end of the window minus its idle RSS
  before the run, over the subscribers asked for (publishers' share
  included). *loadgen KiB / peer*: the loadgen's whole RSS over the peers
  asked for.
- CPU is percent of one core over the measurement window (`/proc/PID/stat`).
";

/// `YYYY-MM-DD HH:MM UTC` from the system clock (civil-from-days).
fn date_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn matrix(args: &Args, seconds: f64) -> Result<(), String> {
    let subscribers = args.num("--subscribers", 10)?;
    let cores = args.num("--cores", 1)?;
    let profile = args.profile()?;
    let window = args.num("--window", 1024)?;
    let f = detect::features();
    println!("detected: io_uring {:?}; gso {:?}", f.io_uring, f.gso);
    let raw_cfg = RawConfig {
        receivers: subscribers,
        seconds,
        gso: false,
        sender_core: 0,
    };
    let raw = raw::run(&raw_cfg);
    print_raw(&raw, subscribers, false);
    let raw_gso = raw::run(&RawConfig {
        gso: true,
        ..raw_cfg.clone()
    });
    print_raw(&raw_gso, subscribers, true);
    let core_pps = {
        let pinned = std::thread::spawn(move || {
            weir_bench::cpu::pin(0);
            core_only(subscribers, profile, 30_000)
        });
        let (out, cpu) = pinned.join().map_err(|_| "core-only panicked")?;
        out as f64 / cpu.as_secs_f64()
    };
    println!("core-only: {core_pps:.0} pkt/s out per CPU-second (no sockets)");
    let mut rows = Vec::new();
    let mut variants = vec![(IoBackendChoice::Mmsg, true)];
    if f.io_uring_available() {
        variants.push((IoBackendChoice::IoUring, true));
        variants.push((IoBackendChoice::IoUring, false));
    }
    for (backend, multishot) in variants {
        for gso in [false, true] {
            let cfg = ForwardConfig {
                subscribers,
                seconds,
                cores,
                backend,
                gso,
                multishot,
                profile,
                window,
            };
            let r = forward::run(&cfg).map_err(|e| e.to_string())?;
            print_forward(&r, &cfg);
            rows.push((cfg, r));
        }
    }
    println!();
    println!(
        "| backend | GSO | dp cores | out pkt/s per core (wall) | out pkt/s per dp CPU-s | dp load | \
         ratio to raw ceiling (wall) | ratio to raw ceiling (CPU-s) | delivered pkt/s | GSO segs/msg | \
         IO ns/pkt (CPU-s, minus core-only) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| raw sendmmsg ×64 | off | 1 sender | {:.0} | {:.0} | {:.2} | 1.00 | 1.00 | {:.0} | – | {:.0} |",
        raw.pps_wall(),
        raw.pps_cpu(),
        raw.cpu.as_secs_f64() / raw.wall.as_secs_f64(),
        raw.received as f64 / raw.wall.as_secs_f64(),
        1e9 / raw.pps_cpu()
    );
    println!(
        "| raw sendmmsg ×64 | on | 1 sender | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {:.0} |",
        raw_gso.pps_wall(),
        raw_gso.pps_cpu(),
        raw_gso.cpu.as_secs_f64() / raw_gso.wall.as_secs_f64(),
        raw_gso.pps_wall() / raw.pps_wall(),
        raw_gso.pps_cpu() / raw.pps_cpu(),
        raw_gso.received as f64 / raw_gso.wall.as_secs_f64(),
        64 / subscribers.clamp(1, 64),
        1e9 / raw_gso.pps_cpu()
    );
    println!(
        "| core only (no sockets) | – | 1 | – | {core_pps:.0} | – | – | {:.2} | – | – | 0 |",
        core_pps / raw.pps_cpu()
    );
    for (cfg, r) in &rows {
        let segs = if r.gso_messages > 0 {
            format!("{:.1}", r.gso_segments as f64 / r.gso_messages as f64)
        } else {
            "–".into()
        };
        let label = if r.backend == "io_uring" && !cfg.multishot {
            "io_uring, single-shot recv"
        } else {
            r.backend
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {:.0} |",
            label,
            if cfg.gso { "on" } else { "off" },
            cfg.cores,
            r.pps_per_core_wall(),
            r.pps_cpu(),
            r.load(),
            r.pps_per_core_wall() / raw.pps_wall(),
            r.pps_cpu() / raw.pps_cpu(),
            r.delivered as f64 / r.wall.as_secs_f64(),
            segs,
            1e9 / r.pps_cpu() - 1e9 / core_pps
        );
    }
    Ok(())
}
