//! The relay's per-packet buffer work, previous path against current, in
//! one process so both see the same machine load: building each RTP
//! datagram on the origin and rebuilding the shared packet downstream
//! (QUIC itself left out), with the last 1024 packets kept on another
//! thread as a data-plane core's NACK ring keeps them. Rounds alternate
//! between the two paths.
//!
//! ```text
//! cargo run --release -p weir-relay --example datagram_path -- 2000000 5
//! ```
use weir_relay::bench_support::datagram_path;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut rtp = vec![0u8; 1200];
    rtp[0] = 0x80;
    rtp[1] = 96;
    rtp[8..12].copy_from_slice(&42u32.to_be_bytes());
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        old.push(datagram_path(&rtp, n, 1024, false).as_nanos() as f64 / n as f64);
        new.push(datagram_path(&rtp, n, 1024, true).as_nanos() as f64 / n as f64);
    }
    old.sort_by(f64::total_cmp);
    new.sort_by(f64::total_cmp);
    let med = |v: &[f64]| v[v.len() / 2];
    println!(
        "datagram path, 1200 B RTP, {n} packets x {rounds} rounds: previous {:.0} ns/pkt (min {:.0}), current {:.0} ns/pkt (min {:.0}), ratio {:.2}",
        med(&old),
        old[0],
        med(&new),
        new[0],
        med(&old) / med(&new)
    );
}
