//! Weir benchmarks: the scenario driver behind the `weir-bench` binary
//! (raw UDP ceiling and data-plane forwarding over loopback) and helpers
//! shared with the criterion micro-benchmarks, and the end-to-end scenario
//! runner (`weir-server` loaded by `weir-loadgen`, see [`scenarios`]).
//!
//! Timings on shared machines are noisy, so every scenario also reports
//! packets per CPU-second of the thread doing the work, read from
//! `/proc/self/task/*/stat`: a rate that does not depend on how much of the
//! core the thread was given.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod core_only;
pub mod cpu;
pub mod forward;
pub mod media;
pub mod plot;
pub mod raw;
pub mod scenarios;
pub mod sink;
