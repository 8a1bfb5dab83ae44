//! Micro-benchmarks of the data plane without sockets: one published SRTP
//! packet through `Core::handle_datagram` (demux, decrypt, parse, forward,
//! encrypt per subscriber) and the drain of its transmits.
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use weir_bench::core_only::room;
use weir_dataplane::srtp::SrtpProfile;

fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_forward");
    for (name, profile) in [
        ("gcm", SrtpProfile::AeadAes128Gcm),
        ("cm_sha1_80", SrtpProfile::Aes128CmHmacSha1_80),
    ] {
        for n in [1usize, 10] {
            let (mut core, mut source, from) = room(n, profile);
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(BenchmarkId::new(name, format!("{n}_subscribers")), |b| {
                b.iter_batched_ref(
                    || {
                        let mut p = Vec::with_capacity(1500);
                        source.next_packet(&mut p);
                        p
                    },
                    |p| {
                        core.handle_datagram(Instant::now(), from, p);
                        let mut out = 0;
                        while let Some(t) = core.poll_transmit() {
                            out += t.data.len();
                            core.recycle_transmit(t);
                        }
                        out
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
