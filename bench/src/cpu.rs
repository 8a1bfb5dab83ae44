//! CPU time of named threads of this process, from `/proc`.
use std::time::Duration;

/// CPU time used so far by the first thread of this process whose name is
/// `name`; `None` if there is none. Read from `schedstat` (the scheduler's
/// nanosecond run time, the same clock as `CLOCK_THREAD_CPUTIME_ID`), not
/// from the tick-sampled `utime`/`stime` of `stat`.
pub fn thread_cpu(name: &str) -> Option<Duration> {
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        let sched = std::fs::read_to_string(entry.path().join("schedstat")).ok()?;
        let ns: u64 = sched.split_whitespace().next()?.parse().ok()?;
        return Some(Duration::from_nanos(ns));
    }
    None
}

/// Pins the calling thread to the `i`-th core (modulo the number of cores).
pub fn pin(i: usize) {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    if let Some(id) = ids.get(i % ids.len().max(1)) {
        core_affinity::set_for_current(*id);
    }
}

/// Number of cores this process may run on.
pub fn cores() -> usize {
    core_affinity::get_core_ids().map_or(1, |v| v.len().max(1))
}
