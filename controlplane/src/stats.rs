//! Per-stream statistics: the counters a core keeps for each published
//! stream and each subscription, read by the SDK (`Publisher::stats`,
//! `Subscriber::stats`) and exported by [`crate::Worker::metrics_text`].
//!
//! The worker lists every stream weakly: a stream leaves the metrics once
//! its transport and every handle to it are gone, with no bookkeeping on
//! the paths that end streams.
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Weak};

use weir_dataplane::counters::{InboundStreamCounters, OutboundStreamCounters};

/// Which side of Weir a stream is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamDirection {
    /// Published: Weir receives it.
    Inbound,
    /// Subscribed: Weir sends it.
    Outbound,
}

impl StreamDirection {
    fn label(self) -> &'static str {
        match self {
            Self::Inbound => "in",
            Self::Outbound => "out",
        }
    }
}

/// A snapshot of one stream's statistics: `(name, value)` pairs, names as
/// in [`InboundStreamCounters`] / [`OutboundStreamCounters`] (durations in
/// microseconds, rates in bit/s).
pub type StreamStats = Vec<(&'static str, u64)>;

/// The fields that are gauges (everything else only grows).
const GAUGES: &[&str] = &[
    "packets_lost",
    "fraction_lost",
    "jitter_us",
    "rtt_us",
    "packets_recovered",
    "packets_abandoned",
    "bandwidth_estimate_bps",
    "allocated_bps",
    "current_spatial",
    "current_temporal",
    "target_spatial",
    "target_temporal",
    "paused",
];

enum Source {
    Inbound(Weak<InboundStreamCounters>),
    Outbound(Weak<OutboundStreamCounters>),
}

struct Entry {
    transport: String,
    track: String,
    kind: &'static str,
    source: Source,
}

impl Entry {
    fn snapshot(&self) -> Option<(StreamDirection, StreamStats)> {
        match &self.source {
            Source::Inbound(w) => Some((StreamDirection::Inbound, w.upgrade()?.snapshot())),
            Source::Outbound(w) => Some((StreamDirection::Outbound, w.upgrade()?.snapshot())),
        }
    }

    fn alive(&self) -> bool {
        match &self.source {
            Source::Inbound(w) => w.strong_count() > 0,
            Source::Outbound(w) => w.strong_count() > 0,
        }
    }
}

/// Every live stream of a worker.
#[derive(Default)]
pub(crate) struct StreamRegistry {
    entries: Mutex<Vec<Entry>>,
}

impl StreamRegistry {
    fn push(&self, entry: Entry) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.retain(Entry::alive);
        e.push(entry);
    }

    /// Lists a published stream.
    pub(crate) fn add_inbound(
        &self,
        transport: &str,
        track: &str,
        kind: &'static str,
        counters: &Arc<InboundStreamCounters>,
    ) {
        self.push(Entry {
            transport: transport.to_owned(),
            track: track.to_owned(),
            kind,
            source: Source::Inbound(Arc::downgrade(counters)),
        });
    }

    /// Lists a subscription.
    pub(crate) fn add_outbound(
        &self,
        transport: &str,
        track: &str,
        kind: &'static str,
        counters: &Arc<OutboundStreamCounters>,
    ) {
        self.push(Entry {
            transport: transport.to_owned(),
            track: track.to_owned(),
            kind,
            source: Source::Outbound(Arc::downgrade(counters)),
        });
    }

    /// Appends the Prometheus text of every live stream to `out`:
    /// `weir_stream_<name>{direction, transport, track, kind}`, counters
    /// with a `_total` suffix.
    pub(crate) fn write_metrics(&self, out: &mut String) {
        let rows: Vec<(StreamDirection, StreamStats, String)> = {
            let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            e.retain(Entry::alive);
            e.iter()
                .filter_map(|entry| {
                    let (dir, stats) = entry.snapshot()?;
                    let labels = format!(
                        "direction=\"{}\",transport=\"{}\",track=\"{}\",kind=\"{}\"",
                        dir.label(),
                        escape_label(&entry.transport),
                        escape_label(&entry.track),
                        entry.kind
                    );
                    Some((dir, stats, labels))
                })
                .collect()
        };
        // One TYPE line per metric name, then its samples.
        let mut names: Vec<&'static str> = Vec::new();
        for (_, stats, _) in &rows {
            for (name, _) in stats {
                if !names.contains(name) {
                    names.push(name);
                }
            }
        }
        for name in names {
            let gauge = GAUGES.contains(&name);
            let metric = if gauge {
                format!("weir_stream_{name}")
            } else {
                format!("weir_stream_{name}_total")
            };
            let kind = if gauge { "gauge" } else { "counter" };
            let _ = writeln!(out, "# TYPE {metric} {kind}");
            for (_, stats, labels) in &rows {
                if let Some((_, v)) = stats.iter().find(|(n, _)| *n == name) {
                    let _ = writeln!(out, "{metric}{{{labels}}} {v}");
                }
            }
        }
    }
}

/// Escapes a Prometheus label value (backslash, double quote, newline).
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_live_streams_with_types_and_forgets_dropped_ones() {
        let r = StreamRegistry::default();
        let i = Arc::new(InboundStreamCounters::default());
        let o = Arc::new(OutboundStreamCounters::default());
        i.packets.add(5);
        o.rtt_us.set(1234);
        r.add_inbound("t1", "t1-0", "video", &i);
        r.add_outbound("t2", "t1-0", "video", &o);
        let mut text = String::new();
        r.write_metrics(&mut text);
        assert!(text.contains("# TYPE weir_stream_packets_total counter\n"));
        assert!(text.contains(
            "weir_stream_packets_total{direction=\"in\",transport=\"t1\",track=\"t1-0\",kind=\"video\"} 5\n"
        ));
        assert!(text.contains("# TYPE weir_stream_rtt_us gauge\n"));
        assert!(text.contains(
            "weir_stream_rtt_us{direction=\"out\",transport=\"t2\",track=\"t1-0\",kind=\"video\"} 1234\n"
        ));
        assert_eq!(text.matches("# TYPE weir_stream_packets_total").count(), 1);
        drop(i);
        let mut text = String::new();
        r.write_metrics(&mut text);
        assert!(!text.contains("direction=\"in\""));
        assert!(text.contains("direction=\"out\""));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
