//! `weir-loadgen`: see the crate documentation and README.md.

use std::process::ExitCode;

use clap::Parser;
use weir_loadgen::Args;

fn main() -> ExitCode {
    let argv = match weir_loadgen::expand_scenario_file(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("weir-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let args = Args::parse_from(argv);
    let scenario = match args.scenario() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weir-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    // This runtime only paces the run and reports; the peers live on
    // their own thread-per-core runtimes (see `run`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let report = match runtime.block_on(weir_loadgen::run(scenario, interrupt)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{report}");
    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, report.to_json() + "\n") {
            eprintln!("weir-loadgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    // Peer tasks that did not finish in time are not waited for.
    runtime.shutdown_background();
    ExitCode::SUCCESS
}
