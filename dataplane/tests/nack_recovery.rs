//! Loss recovery through one core under a seeded network emulator: 5 %
//! random loss on every link, in both directions, with jitter that
//! reorders. Per hop (publisher → Weir, Weir → subscriber), at least 99 %
//! of the lost first transmissions must be repaired within two round trips
//! of when they would have arrived.
mod common;
mod netem;

use std::time::{Duration, Instant};

use netem::room::Room;
use netem::LinkConfig;

/// 20 ms one way plus up to 10 ms of jitter: a 50 ms mean round trip.
fn lossy_link() -> LinkConfig {
    LinkConfig {
        jitter: Duration::from_millis(10),
        loss: 0.05,
        ..LinkConfig::delay(Duration::from_millis(20))
    }
}

struct Outcome {
    lost: usize,
    within: usize,
    never: usize,
    worst: Duration,
}

fn judge(delays: &[Option<Duration>], budget: Duration) -> Outcome {
    Outcome {
        lost: delays.len(),
        within: delays
            .iter()
            .filter(|d| d.is_some_and(|d| d <= budget))
            .count(),
        never: delays.iter().filter(|d| d.is_none()).count(),
        worst: delays.iter().flatten().max().copied().unwrap_or_default(),
    }
}

/// Sends `seconds` of 200 packet/s video (about 1.7 Mbit/s) and lets
/// repairs finish.
fn run(room: &mut Room, seconds: u64) -> Instant {
    let start = room.now;
    let interval = Duration::from_millis(5);
    let packets = seconds * 200;
    for i in 0..packets {
        room.publish(i == 0, 1000);
        room.run_until(start + interval * (i as u32 + 1));
    }
    let end = room.now;
    room.run_until(end + Duration::from_secs(2));
    end
}

#[test]
fn five_percent_loss_is_repaired_within_two_round_trips() {
    let link = lossy_link();
    let rtt = 2 * link.mean_delay();
    let mut failures = Vec::new();
    for seed in [1u64, 2, 3] {
        let mut room = Room::new(link, link, seed * 1000);
        let end = run(&mut room, 20);
        let until = end - Duration::from_secs(1);
        for (hop, log) in [("publisher", &room.hop_pub), ("subscriber", &room.hop_sub)] {
            let o = judge(&log.repair_delays(until), 2 * rtt);
            let share = o.within as f64 / o.lost as f64;
            println!(
                "seed {seed} {hop} hop: {} lost, {} repaired within {:?} ({:.2} %), {} never, worst {:?}, {} repeated transmissions",
                o.lost,
                o.within,
                2 * rtt,
                share * 100.0,
                o.never,
                o.worst,
                log.repeats,
            );
            assert!(o.lost > 100, "the emulator lost packets on the {hop} hop");
            if share < 0.99 {
                failures.push(format!("seed {seed} {hop} hop: {:.2} %", share * 100.0));
            }
        }
        assert!(room.counters.nack_sent.get() > 0);
        assert!(room.counters.retransmits_sent.get() > 0);
    }
    assert!(
        failures.is_empty(),
        "under 99 % repaired within 2 RTT: {failures:?}"
    );
}
