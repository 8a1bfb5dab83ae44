//! `weir-bench`: the data-plane scenarios.
//!
//! ```text
//! weir-bench raw-ceiling [--receivers N] [--seconds S] [--gso]
//! weir-bench forward [--subscribers N] [--seconds S] [--cores C]
//!                    [--backend auto|io-uring|mmsg] [--gso on|off] [--multishot on|off]
//!                    [--srtp gcm|cm] [--window W]
//! weir-bench core-only [--subscribers N] [--packets P] [--srtp gcm|cm]
//! weir-bench matrix  [--subscribers N] [--seconds S] [--cores C] [--srtp gcm|cm]
//! ```
//! `matrix` measures the raw ceiling, the core's work without sockets and
//! then forwarding with every backend and GSO setting in one run, and prints
//! a Markdown table with the ratios.
use std::process::ExitCode;

use weir_bench::core_only::core_only;
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
        "matrix" => matrix(args, seconds)?,
        other => return Err(format!("unknown command {other:?}")),
    }
    Ok(())
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
