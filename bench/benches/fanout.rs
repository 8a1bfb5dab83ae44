//! Micro-benchmarks of the per-track fanout ring and the packet pool: one
//! 1200-byte packet published and read back by each consumer, one NACK
//! lookup, and one pooled packet taken, shared, cloned and dropped.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir_dataplane::fanout::{Consumer, FanoutRing};
use weir_dataplane::packet_pool::PacketPool;

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_ring");
    let packet = [0x5au8; 1200];
    for consumers in [1usize, 10] {
        let (ring, mut producer) = FanoutRing::new(1024, 1500);
        let mut readers: Vec<Consumer> = (0..consumers).map(|_| Consumer::new(&ring)).collect();
        let mut buf = [0u8; 1500];
        let mut seq = 0u64;
        g.throughput(Throughput::Elements(consumers as u64));
        g.bench_function(
            BenchmarkId::new("publish_and_read", format!("{consumers}_consumers")),
            |b| {
                b.iter(|| {
                    producer.publish(seq, [seq, 0, 0, 0], &packet).unwrap();
                    seq += 1;
                    let mut n = 0;
                    for r in &mut readers {
                        n += r.read(&mut buf).map_or(0, |e| e.len);
                    }
                    n
                })
            },
        );
    }
    let (ring, mut producer) = FanoutRing::new(1024, 1500);
    for seq in 0..1024u64 {
        producer.publish(seq, [0; 4], &packet).unwrap();
    }
    let mut buf = [0u8; 1500];
    g.throughput(Throughput::Elements(1));
    g.bench_function("nack_get", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k = (k + 7) % 1024;
            ring.get(k, &mut buf).map(|e| e.len)
        })
    });
    g.finish();
}

fn pool(c: &mut Criterion) {
    let mut g = c.benchmark_group("packet_pool");
    let mut pool = PacketPool::new(4096);
    let packet = [0x5au8; 1200];
    g.bench_function("take_fill_share_clone_drop", |b| {
        b.iter(|| {
            let mut p = pool.take();
            p.data.clear();
            p.data.extend_from_slice(&packet);
            let shared = p.share();
            let copy = shared.clone();
            drop(shared);
            copy.data.len()
        })
    });
    g.finish();
}

criterion_group!(benches, ring, pool);
criterion_main!(benches);
