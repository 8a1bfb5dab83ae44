//! Arbitrary sequences of publishes, reads, lookups and pool traffic on a
//! fanout ring and a packet pool: nothing panics, every packet read is the
//! one published under its sequence number, consumers stay in order.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_dataplane::fanout::{Consumer, FanoutRing};
use weir_dataplane::packet_pool::{PacketPool, PacketRef};

fn bytes(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as u8) ^ (i as u8)).collect()
}

fuzz_target!(|data: &[u8]| {
    let (ring, mut producer) = FanoutRing::new(8, 64);
    let mut consumers = [Consumer::new(&ring), Consumer::new(&ring)];
    let mut last = [None::<u64>; 2];
    let mut pool = PacketPool::new(4);
    let mut live: Vec<PacketRef> = Vec::new();
    let mut seq = 0u64;
    let mut last_published = None::<u64>;
    let mut buf = [0u8; 64];
    for pair in data.chunks(2) {
        let (op, arg) = (pair[0], *pair.get(1).unwrap_or(&0));
        match op % 6 {
            0 => {
                seq += u64::from(arg % 4);
                let len = usize::from(arg) % 80;
                let r = producer.publish(seq, [seq, len as u64, 0, 0], &bytes(seq, len));
                let fits = len <= ring.capacity();
                assert_eq!(r.is_ok(), fits && last_published.is_none_or(|l| seq > l));
                if r.is_ok() {
                    last_published = Some(seq);
                }
            }
            1 | 2 => {
                let k = usize::from(op % 2);
                if let Some(e) = consumers[k].read(&mut buf) {
                    assert_eq!(&buf[..e.len], &bytes(e.seq, e.len)[..]);
                    assert_eq!(e.meta[0], e.seq);
                    assert!(last[k].is_none_or(|l| e.seq > l));
                    last[k] = Some(e.seq);
                }
            }
            3 => {
                let want = seq.saturating_sub(u64::from(arg % 16));
                if let Some(e) = ring.get(want, &mut buf) {
                    assert_eq!(e.seq, want);
                    assert_eq!(&buf[..e.len], &bytes(want, e.len)[..]);
                }
            }
            4 => {
                let mut p = pool.take();
                p.data.clear();
                p.data.extend_from_slice(&[arg; 3]);
                p.seq = u16::from(arg);
                live.push(p.share());
            }
            _ => {
                if !live.is_empty() {
                    let i = usize::from(arg) % live.len();
                    if arg & 1 == 0 {
                        let c = live[i].clone();
                        live.push(c);
                    } else {
                        live.swap_remove(i);
                    }
                }
            }
        }
        for p in &live {
            assert_eq!(&p.data[..], &[p.seq as u8; 3][..]);
        }
    }
});
