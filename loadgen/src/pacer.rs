//! A publisher's pacer, in the manner of libwebrtc's: video leaves at a
//! multiple of its target bitrate in short slices instead of one burst per
//! frame.
//!
//! Browsers never send a 30-packet keyframe in one burst; their pacer
//! spreads it at 2.5 × the target bitrate. A load generator that bursts
//! measures the SFU under a traffic shape no real publisher produces: every
//! packet of a keyframe reaches the server at once and waits behind the
//! fan-out of the ones before it, for every subscriber. Pacing makes the
//! latency figures those of real rooms; `--pacing-factor 0` keeps bursts.
//!
//! Sans-IO: [`Pacer::push`] queues a packet, [`Pacer::poll`] releases the
//! next one the budget allows at `now`, and [`Pacer::next_release`] says
//! when to ask again. Packet buffers are recycled, so a warm pacer does not
//! allocate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Longest burst the budget may save up while idle, like libwebrtc's
/// 5 ms interval budget: a packet queued after a quiet spell leaves at
/// once, but a keyframe does not.
const WINDOW: Duration = Duration::from_millis(5);

/// One queued packet: the plain RTP bytes and whether its payload ends
/// with a measurement trailer whose send stamp is written on release.
#[derive(Debug)]
pub(crate) struct Queued {
    /// Plain RTP packet.
    pub(crate) packet: Vec<u8>,
    /// Whether the last 8 bytes are the trailer's send time.
    pub(crate) trailer: bool,
}

/// A byte budget refilled at `rate` that releases queued packets in order.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// Bytes per second.
    rate: f64,
    /// Bytes that may leave now; negative after a packet larger than
    /// what was left (the next one waits until it is paid back).
    budget: f64,
    /// When `budget` was last refilled.
    refilled: Instant,
    queue: VecDeque<Queued>,
    /// Buffers of released packets, handed out again by [`Pacer::buffer`].
    spare: Vec<Vec<u8>>,
}

impl Pacer {
    /// A pacer releasing `bits_per_second` on average, with an empty queue
    /// and a full window of budget.
    pub(crate) fn new(bits_per_second: f64, now: Instant) -> Self {
        let rate = (bits_per_second / 8.0).max(1.0);
        Pacer {
            rate,
            budget: rate * WINDOW.as_secs_f64(),
            refilled: now,
            queue: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// An empty buffer to write the next packet into (a recycled one when
    /// there is one).
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(1500));
        b.clear();
        b
    }

    /// Gives back a released packet's buffer for reuse.
    pub(crate) fn recycle(&mut self, buffer: Vec<u8>) {
        // Bounded: a pacer holds at most about one keyframe of buffers.
        if self.spare.len() < 256 {
            self.spare.push(buffer);
        }
    }

    /// Queues `packet` behind the ones already waiting.
    pub(crate) fn push(&mut self, packet: Vec<u8>, trailer: bool) {
        self.queue.push_back(Queued { packet, trailer });
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let cap = self.rate * WINDOW.as_secs_f64();
        self.budget = (self.budget + elapsed * self.rate).min(cap);
    }

    /// The next packet allowed to leave at `now`, charged to the budget.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Queued> {
        self.queue.front()?;
        self.refill(now);
        if self.budget <= 0.0 {
            return None;
        }
        let q = self.queue.pop_front()?;
        self.budget -= q.packet.len() as f64;
        Some(q)
    }

    /// When the head of the queue may leave (`None` with nothing queued).
    pub(crate) fn next_release(&self, now: Instant) -> Option<Instant> {
        self.queue.front()?;
        if self.budget > 0.0 {
            return Some(now);
        }
        // Refilled from `refilled`, not from `now`: the debt is paid back
        // at `rate` whether or not anyone asked in between.
        let wait = Duration::from_secs_f64((-self.budget + 1.0) / self.rate);
        Some(self.refilled + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(p: &mut Pacer, len: usize) -> Vec<u8> {
        let mut b = p.buffer();
        b.resize(len, 0);
        b
    }

    /// Releases everything, stepping simulated time to each release; returns
    /// the release times relative to `start`.
    fn drain(p: &mut Pacer, start: Instant) -> Vec<Duration> {
        let mut now = start;
        let mut out = Vec::new();
        while let Some(at) = p.next_release(now) {
            now = now.max(at);
            if let Some(q) = p.poll(now) {
                out.push(now - start);
                p.recycle(q.packet);
            }
        }
        out
    }

    #[test]
    fn a_keyframe_is_spread_at_the_pacing_rate() {
        let start = Instant::now();
        // 2.5 Mbit/s: 312,500 bytes/s; 30 packets of 1,200 bytes = 36 kB,
        // of which 1,562 bytes (one window) leave at once.
        let mut p = Pacer::new(2_500_000.0, start);
        for _ in 0..30 {
            let b = packet(&mut p, 1200);
            p.push(b, true);
        }
        let times = drain(&mut p, start);
        assert_eq!(times.len(), 30);
        assert_eq!(times[0], Duration::ZERO, "the first packet leaves at once");
        let last = times[29].as_secs_f64();
        // Each packet leaves while the budget is positive, so the last one
        // waits for the 29 before it, less the window saved up front.
        let expected = (29.0 * 1200.0 - 1562.5) / 312_500.0;
        assert!(
            (last - expected).abs() < 0.005,
            "last packet at {last:.4} s, expected about {expected:.4} s"
        );
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order");
    }

    #[test]
    fn an_idle_pacer_saves_at_most_one_window() {
        let start = Instant::now();
        let mut p = Pacer::new(1_000_000.0, start);
        // A second of silence, then 10 packets: one window (625 bytes)
        // leaves at once, the rest is paced.
        let later = start + Duration::from_secs(1);
        for _ in 0..10 {
            let b = packet(&mut p, 1000);
            p.push(b, false);
        }
        let times = drain(&mut p, later);
        assert_eq!(times[0], Duration::ZERO);
        assert!(times[1] > Duration::from_millis(2), "{times:?}");
        let at_once = times.iter().filter(|t| t.is_zero()).count();
        assert_eq!(at_once, 1, "{times:?}");
    }

    #[test]
    fn buffers_are_reused() {
        let start = Instant::now();
        let mut p = Pacer::new(1e9, start);
        let b = packet(&mut p, 100);
        let ptr = b.as_ptr();
        p.push(b, false);
        let q = p.poll(start).expect("released");
        p.recycle(q.packet);
        let again = p.buffer();
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
        assert_eq!(p.next_release(start), None);
    }
}
