//! A seeded network emulator for simulated-time tests: one-way links with
//! delay, jitter (which reorders, as netem's does), random loss,
//! duplication and an optional bandwidth cap with a bounded queue.
//!
//! A link never reads a clock: the test passes `now` to [`Link::send`] and
//! drains [`Link::poll`] once [`Link::next_arrival`] has passed, so a run
//! with the same seed is the same run.
#![allow(dead_code)]

pub mod room;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a link does to the datagrams sent into it.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per datagram; datagrams
    /// can overtake each other.
    pub jitter: Duration,
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram arrives twice.
    pub duplicate: f64,
    /// Bottleneck rate in bit/s; `None` is unlimited.
    pub rate_bps: Option<u64>,
    /// Bytes the bottleneck may hold before it drops (tail drop).
    pub queue_bytes: usize,
}

impl LinkConfig {
    /// A clean link with only a fixed delay.
    pub fn delay(delay: Duration) -> Self {
        Self {
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            rate_bps: None,
            queue_bytes: 64 * 1024,
        }
    }

    /// The mean one-way delay.
    pub fn mean_delay(&self) -> Duration {
        self.delay + self.jitter / 2
    }
}

/// What became of one datagram handed to [`Link::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Whether the link dropped it.
    pub dropped: bool,
    /// When it arrives, or would have arrived had it not been dropped.
    pub arrival: Instant,
}

/// Totals of a link, for reporting overheads.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkStats {
    /// Datagrams sent into the link.
    pub sent: u64,
    /// Dropped at random.
    pub lost: u64,
    /// Dropped because the bottleneck queue was full.
    pub overflowed: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Bytes delivered.
    pub delivered_bytes: u64,
}

/// One direction of a path.
pub struct Link {
    cfg: LinkConfig,
    rng: StdRng,
    /// (arrival, order of sending, datagram): the order keeps equal arrival
    /// times first-in first-out.
    queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    order: u64,
    /// When the bottleneck finishes serialising what it holds.
    busy_until: Option<Instant>,
    stats: LinkStats,
}

impl Link {
    /// A link with its own random stream.
    pub fn new(cfg: LinkConfig, seed: u64) -> Self {
        Self {
            cfg,
            rng: StdRng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            order: 0,
            busy_until: None,
            stats: LinkStats::default(),
        }
    }

    /// The link's configuration.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// Changes the configuration from now on (datagrams in flight keep
    /// their arrival time), e.g. to lift a bandwidth cap.
    pub fn set_config(&mut self, cfg: LinkConfig) {
        self.cfg = cfg;
    }

    /// Totals so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Hands a datagram to the link at `now`.
    pub fn send(&mut self, now: Instant, data: Vec<u8>) -> Sent {
        self.stats.sent += 1;
        // Serialisation at the bottleneck comes before propagation.
        let mut departs = now;
        if let Some(rate) = self.cfg.rate_bps.filter(|r| *r > 0) {
            let start = self.busy_until.map_or(now, |b| b.max(now));
            let backlog = start.saturating_duration_since(now).as_secs_f64() * rate as f64 / 8.0;
            if backlog as usize + data.len() > self.cfg.queue_bytes {
                self.stats.overflowed += 1;
                return Sent {
                    dropped: true,
                    arrival: start + self.cfg.delay,
                };
            }
            let tx = Duration::from_secs_f64(data.len() as f64 * 8.0 / rate as f64);
            departs = start + tx;
            self.busy_until = Some(departs);
        }
        let arrival = departs + self.cfg.delay + self.jitter();
        if self.rng.gen::<f64>() < self.cfg.loss {
            self.stats.lost += 1;
            return Sent {
                dropped: true,
                arrival,
            };
        }
        if self.rng.gen::<f64>() < self.cfg.duplicate {
            self.stats.duplicated += 1;
            let again = departs + self.cfg.delay + self.jitter();
            self.push(again, data.clone());
        }
        self.push(arrival, data);
        Sent {
            dropped: false,
            arrival,
        }
    }

    fn jitter(&mut self) -> Duration {
        if self.cfg.jitter.is_zero() {
            return Duration::ZERO;
        }
        let us = self.cfg.jitter.as_micros() as u64;
        Duration::from_micros(self.rng.gen_range(0..=us))
    }

    fn push(&mut self, at: Instant, data: Vec<u8>) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order, data)));
    }

    /// When the next datagram arrives, if any is in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next datagram that has arrived by `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_arrival()? > now {
            return None;
        }
        let Reverse((_, _, data)) = self.queue.pop()?;
        self.stats.delivered_bytes += data.len() as u64;
        Some(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_fate_and_loss_near_its_rate() {
        let t0 = Instant::now();
        let cfg = LinkConfig {
            loss: 0.05,
            jitter: Duration::from_millis(10),
            ..LinkConfig::delay(Duration::from_millis(20))
        };
        let run = |seed| {
            let mut l = Link::new(cfg, seed);
            (0..10_000)
                .map(|i| l.send(t0 + Duration::from_millis(i), vec![0; 10]))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        let lost = a.iter().filter(|s| s.dropped).count();
        assert!((400..600).contains(&lost), "{lost}");
        assert!(a.iter().all(|s| {
            let d = s.arrival - t0;
            d >= Duration::from_millis(20)
        }));
    }

    #[test]
    fn a_cap_spaces_arrivals_and_drops_what_overflows() {
        let t0 = Instant::now();
        let cfg = LinkConfig {
            rate_bps: Some(80_000), // 10 kB/s: 1 ms per 10-byte datagram
            queue_bytes: 100,
            ..LinkConfig::delay(Duration::from_millis(5))
        };
        let mut l = Link::new(cfg, 1);
        let sent: Vec<Sent> = (0..20).map(|_| l.send(t0, vec![0; 10])).collect();
        assert_eq!(sent[0].arrival, t0 + Duration::from_millis(6));
        assert_eq!(sent[1].arrival, t0 + Duration::from_millis(7));
        assert!(sent.iter().any(|s| s.dropped), "the queue overflows");
        assert!(l.stats().overflowed > 0);
    }
}
