//! The server's own counters, rendered in the Prometheus text format after
//! the SDK's.

use crate::protocol::{ErrorCode, RequestKind, SERVER_TYPES};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Fixed tables of atomics: counting never allocates or locks.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    connections: AtomicI64,
    peers: AtomicI64,
    received: [AtomicU64; RequestKind::ALL.len()],
    sent: [AtomicU64; SERVER_TYPES.len()],
    errors: [AtomicU64; ErrorCode::ALL.len()],
    dropped_slow: AtomicU64,
    dropped_flood: AtomicU64,
}

impl Metrics {
    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Relaxed);
    }
    pub(crate) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Relaxed);
    }
    pub(crate) fn peer_joined(&self) {
        self.peers.fetch_add(1, Relaxed);
    }
    pub(crate) fn peer_left(&self) {
        self.peers.fetch_sub(1, Relaxed);
    }
    pub(crate) fn received(&self, kind: RequestKind) {
        let i = RequestKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(RequestKind::ALL.len() - 1);
        self.received[i].fetch_add(1, Relaxed);
    }
    pub(crate) fn sent(&self, type_index: usize) {
        if let Some(c) = self.sent.get(type_index) {
            c.fetch_add(1, Relaxed);
        }
    }
    pub(crate) fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }
    /// A client that did not read its messages fast enough was disconnected.
    pub(crate) fn dropped_slow(&self) {
        self.dropped_slow.fetch_add(1, Relaxed);
    }
    /// A client that sent too many messages was disconnected.
    pub(crate) fn dropped_flood(&self) {
        self.dropped_flood.fetch_add(1, Relaxed);
    }

    /// Appends the counters to `out`; `rooms` is read by the caller.
    pub(crate) fn render(&self, rooms: usize, out: &mut String) {
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            );
        };
        gauge(
            out,
            "weir_signaling_connections",
            "Open WebSocket connections.",
            self.connections.load(Relaxed),
        );
        gauge(
            out,
            "weir_signaling_peers",
            "Connections that have joined a room.",
            self.peers.load(Relaxed),
        );
        gauge(
            out,
            "weir_signaling_rooms",
            "Open rooms.",
            i64::try_from(rooms).unwrap_or(i64::MAX),
        );

        let head = |out: &mut String, name: &str, help: &str| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
        };
        let name = "weir_signaling_messages_received_total";
        head(out, name, "Client messages received, by type.");
        for (k, c) in RequestKind::ALL.iter().zip(&self.received) {
            let _ = writeln!(out, "{name}{{type=\"{}\"}} {}", k.as_str(), c.load(Relaxed));
        }
        let name = "weir_signaling_messages_sent_total";
        head(out, name, "Server messages sent, by type.");
        for (t, c) in SERVER_TYPES.iter().zip(&self.sent) {
            let _ = writeln!(out, "{name}{{type=\"{t}\"}} {}", c.load(Relaxed));
        }
        let name = "weir_signaling_errors_total";
        head(out, name, "Error replies, by code.");
        for (e, c) in ErrorCode::ALL.iter().zip(&self.errors) {
            let _ = writeln!(out, "{name}{{code=\"{}\"}} {}", e.as_str(), c.load(Relaxed));
        }
        let name = "weir_signaling_disconnects_total";
        head(
            out,
            name,
            "Connections closed by the server for breaking a limit, by reason.",
        );
        let _ = writeln!(
            out,
            "{name}{{reason=\"slow_reader\"}} {}",
            self.dropped_slow.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "{name}{{reason=\"message_rate\"}} {}",
            self.dropped_flood.load(Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series() {
        let m = Metrics::default();
        m.received(RequestKind::Join);
        m.sent(0);
        m.error(ErrorCode::BadRoom);
        m.connection_opened();
        let mut s = String::new();
        m.render(2, &mut s);
        assert!(s.contains("weir_signaling_connections 1\n"), "{s}");
        assert!(s.contains("weir_signaling_rooms 2\n"), "{s}");
        assert!(s.contains("weir_signaling_messages_received_total{type=\"join\"} 1\n"));
        assert!(s.contains("weir_signaling_messages_sent_total{type=\"joined\"} 1\n"));
        assert!(s.contains("weir_signaling_errors_total{code=\"bad_room\"} 1\n"));
        assert!(s.contains("weir_signaling_errors_total{code=\"internal\"} 0\n"));
        for line in s.lines() {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("weir_signaling_"),
                "{line}"
            );
        }
    }
}
