//! Bit rates of a track's layers as they arrive, for the allocator: how
//! much forwarding each (spatial, temporal) choice costs.
use std::time::{Duration, Instant};

use crate::bwe::LayerRate;

/// Spatial layers (or simulcast encodings) measured.
const SPATIAL: usize = 4;
/// Temporal layers measured.
const TEMPORAL: usize = 4;
/// Rates are measured over windows this long (two are kept: the finished
/// one is reported while the next fills).
const WINDOW: Duration = Duration::from_millis(1000);

/// Byte counters per layer over sliding windows. Fixed size: no allocation.
#[derive(Debug, Clone)]
pub struct LayerRates {
    started: Instant,
    current: [[u64; TEMPORAL]; SPATIAL],
    finished: [[u64; TEMPORAL]; SPATIAL],
    finished_len: Duration,
}

impl LayerRates {
    /// Empty counters starting at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            current: [[0; TEMPORAL]; SPATIAL],
            finished: [[0; TEMPORAL]; SPATIAL],
            finished_len: Duration::ZERO,
        }
    }

    /// Counts a packet of `bytes` in layer (`spatial`, `temporal`).
    pub fn on_packet(&mut self, now: Instant, spatial: u8, temporal: u8, bytes: usize) {
        self.roll(now);
        let s = usize::from(spatial).min(SPATIAL - 1);
        let t = usize::from(temporal).min(TEMPORAL - 1);
        self.current[s][t] += bytes as u64;
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= WINDOW {
            self.finished = self.current;
            self.finished_len = elapsed;
            self.current = [[0; TEMPORAL]; SPATIAL];
            self.started = now;
        }
    }

    /// The cost of each layer choice, ascending, as the allocator wants it:
    /// with `cumulative_spatial` (SVC) a spatial layer includes the ones
    /// below it; without (simulcast) each encoding stands alone. Temporal
    /// layers always include the lower ones. Layers never seen are left out.
    pub fn layer_rates(&self, now: Instant, cumulative_spatial: bool, out: &mut Vec<LayerRate>) {
        out.clear();
        let secs = self.finished_len.as_secs_f64();
        if secs <= 0.0 || now.saturating_duration_since(self.started) > WINDOW * 3 {
            return;
        }
        let mut below = 0u64;
        for s in 0..SPATIAL {
            let mut sum = if cumulative_spatial { below } else { 0 };
            for t in 0..TEMPORAL {
                let bytes = self.finished[s][t];
                sum += bytes;
                if bytes > 0 {
                    out.push(LayerRate {
                        spatial: s as u8,
                        temporal: t as u8,
                        bps: (sum as f64 * 8.0 / secs) as u64,
                    });
                }
            }
            below = sum;
        }
        out.sort_by_key(|l| l.bps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulcast_encodings_stand_alone_and_temporal_layers_add_up() {
        let t0 = Instant::now();
        let mut r = LayerRates::new(t0);
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(i * 10);
            r.on_packet(now, 0, 0, 100);
            r.on_packet(now, 0, 1, 50);
            r.on_packet(now, 1, 0, 400);
        }
        let now = t0 + Duration::from_millis(1000);
        r.on_packet(now, 0, 0, 0);
        let mut out = Vec::new();
        r.layer_rates(now, false, &mut out);
        let find = |s, t| {
            out.iter()
                .find(|l| l.spatial == s && l.temporal == t)
                .map(|l| l.bps)
        };
        assert_eq!(find(0, 0), Some(80_000));
        assert_eq!(find(0, 1), Some(120_000));
        assert_eq!(find(1, 0), Some(320_000));
        r.layer_rates(now, true, &mut out);
        let find = |s, t| {
            out.iter()
                .find(|l| l.spatial == s && l.temporal == t)
                .map(|l| l.bps)
        };
        assert_eq!(find(1, 0), Some(440_000), "SVC: spatial 1 needs spatial 0");
        // Stale data is not reported.
        r.layer_rates(now + Duration::from_secs(10), false, &mut out);
        assert!(out.is_empty());
    }
}
