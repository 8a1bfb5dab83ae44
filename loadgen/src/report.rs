//! The final report: JSON for scripts, a summary for people, and the
//! server's CPU and memory from /proc.

use std::fmt;
use std::time::Instant;

use serde::Serialize;

use crate::config::{AudioCodec, Scenario, VideoCodec};
use crate::stats::{loss_ratio, percentile, FailCause, Snapshot, Stage, Stats};

/// p50, p99 and max of a distribution; `null`s when it is empty.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Quantiles {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
}

/// Peers that did not join, by cause.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct FailedByCause {
    /// WebSocket or protocol failures.
    pub signaling: u64,
    /// No ICE success response in time.
    pub ice_timeout: u64,
    /// DTLS handshake failures.
    pub dtls: u64,
    /// Connected, but no media in time.
    pub media_timeout: u64,
}

/// Where join time went: each stage's distribution over the peers that
/// completed it, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct JoinStages {
    /// WebSocket connect until the server's description is in hand.
    pub signaling: Quantiles,
    /// Socket bound until the first successful connectivity check.
    pub ice: Quantiles,
    /// ICE success until SRTP keys (the DTLS handshake).
    pub dtls: Quantiles,
    /// SRTP ready until joined (first packet, or every track `published`).
    pub media: Quantiles,
}

/// DTLS handshakes of the run, to tell retransmission storms from slow peers.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct DtlsSummary {
    /// Handshakes completed.
    pub handshakes: u64,
    /// DTLS datagrams peers sent (3 per handshake without retransmission).
    pub datagrams_tx: u64,
    /// DTLS datagrams peers received (3 per handshake without retransmission).
    pub datagrams_rx: u64,
    /// Resends the exponential backoff (RFC 6347 §4.2.4.1) kept off the
    /// wire: the `dtls` crate resends every second.
    pub resends_held: u64,
}

/// What was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioSummary {
    /// Publisher WebSocket URL.
    pub publish_ws: String,
    /// Subscriber WebSocket URL.
    pub subscribe_ws: String,
    /// Rooms.
    pub rooms: usize,
    /// Publishers per room.
    pub publishers: usize,
    /// Subscribers per room.
    pub subscribers: usize,
    /// Measurement seconds asked for.
    pub duration_s: f64,
    /// Video codec.
    pub video: VideoCodec,
    /// Audio codec.
    pub audio: AudioCodec,
    /// Ramp (peers per second), `null` for all at once.
    pub ramp_peers_per_s: Option<f64>,
    /// Injected uplink loss, percent.
    pub loss_percent: f64,
    /// Video bitrate per publisher, kbit/s (all simulcast encodings).
    pub video_kbps: u32,
    /// Video pacing, as a multiple of `video_kbps` (0: a burst per frame).
    pub pacing_factor: f64,
    /// Publishers send three simulcast encodings.
    pub simulcast: bool,
    /// Where VP8 frames came from.
    pub vp8_frames: crate::config::Vp8Frames,
    /// Peer threads (one runtime each).
    pub threads: usize,
    /// Spatial layer subscribers ask for (`null`: the server's default).
    pub prefer_layer: Option<u8>,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// rooms × (publishers + subscribers).
    pub peers_requested: u64,
    /// Peers whose media flowed.
    pub peers_joined: u64,
    /// Peers that did not join, by cause.
    pub peers_failed: FailedByCause,
    /// Peers still joining when the run ended.
    pub peers_pending: u64,
    /// Joined peers whose signaling ended during the run.
    pub peers_disconnected: u64,
    /// From WebSocket connect to media flowing, milliseconds.
    pub join_ms: Quantiles,
    /// `join_ms` split by stage.
    pub join_stages_ms: JoinStages,
    /// DTLS handshake counts.
    pub dtls: DtlsSummary,
    /// Media packets per second received by all subscribers (measurement window).
    pub rx_packets_per_s: f64,
    /// Media packets per second sent by all publishers (measurement window).
    pub tx_packets_per_s: f64,
    /// Received SRTP bitrate, kbit/s (measurement window).
    pub rx_bitrate_kbps: f64,
    /// Sent SRTP bitrate, kbit/s (measurement window).
    pub tx_bitrate_kbps: f64,
    /// 1 − received / expected over the whole run, from trailer counters
    /// (injected loss included), after retransmissions: a repaired packet
    /// counts as received.
    pub loss_ratio: f64,
    /// The same before retransmission: packets that arrived after a later
    /// one of their stream (repairs, or plain reordering, which loopback
    /// does not do) count as lost.
    pub loss_ratio_before_retransmission: f64,
    /// NACK packets publishers received from the server.
    pub nacks_received: u64,
    /// Packets publishers sent again because of a NACK.
    pub packets_retransmitted: u64,
    /// Of those, sent as RTX (RFC 4588), where the answer accepted it.
    pub packets_retransmitted_rtx: u64,
    /// Media packets subscribers dropped on arrival (`--rx-loss`).
    pub rx_dropped: u64,
    /// NACK packets subscribers sent to the server.
    pub nacks_sent: u64,
    /// Receiver reports (RTCP RR) subscribers sent to the server.
    pub receiver_reports_sent: u64,
    /// Transport-wide congestion control feedback packets subscribers sent
    /// (with `--twcc`).
    pub twcc_feedback_sent: u64,
    /// Padding-only packets subscribers received: the server's bandwidth
    /// probes, not media.
    pub rx_padding_packets: u64,
    /// Sender reports (RTCP SR, one per stream) publishers sent.
    pub sender_reports_sent: u64,
    /// RTX packets (RFC 4588 retransmissions) subscribers received.
    pub rx_rtx_packets: u64,
    /// Packets subscribers found missing (RTP sequence gap) that arrived
    /// later: repaired by a retransmission, or only late.
    pub packets_recovered: u64,
    /// Packets received after a later packet of their stream.
    pub rx_reordered: u64,
    /// Media packets without a kernel receive stamp (latency measured at
    /// read time for those).
    pub rx_unstamped: u64,
    /// Packets that failed SRTP or had no trailer.
    pub rx_invalid: u64,
    /// Media packets received in total.
    pub rx_packets: u64,
    /// Media packets sent in total.
    pub tx_packets: u64,
    /// Packets dropped on purpose by `--loss`.
    pub tx_dropped: u64,
    /// PLI/FIR received by publishers.
    pub keyframe_requests: u64,
    /// VP8 keyframes sent (periodic and requested).
    pub tx_keyframes: u64,
    /// Media packets received per simulcast encoding, lowest first (audio
    /// and single-encoding video count as encoding 0).
    pub rx_layer_packets: [u64; 4],
    /// `layersChanged` messages subscribers received.
    pub layers_changed: u64,
    /// Publisher send to subscriber receive, milliseconds.
    pub latency_ms: Quantiles,
    /// Interarrival jitter (RFC 3550 smoothing, send time for the RTP
    /// timestamp) of each stream after each packet, milliseconds.
    pub jitter_ms: Quantiles,
    /// Server CPU over the measurement window, percent of one core
    /// (`null` without `--server-pid`).
    pub server_cpu_percent: Option<f64>,
    /// Server resident memory at the end, MB (`null` without `--server-pid`).
    pub server_rss_mb: Option<f64>,
    /// Server resident memory when the measurement started, MB.
    pub server_rss_start_mb: Option<f64>,
    /// This process's resident memory at the end, MB.
    pub loadgen_rss_mb: Option<f64>,
    /// This process's CPU over the measurement window, percent of one core.
    pub loadgen_cpu_percent: Option<f64>,
    /// Length of the measurement window, seconds.
    pub measured_s: f64,
    /// Whether Ctrl-C (or the caller) ended the run early.
    pub interrupted: bool,
    /// Requested options this version ignores.
    pub unsupported: Vec<String>,
    /// The scenario.
    pub scenario: ScenarioSummary,
}

/// CPU time and RSS of a process at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcSample {
    at: Instant,
    /// utime + stime, in clock ticks.
    ticks: u64,
    rss_kb: u64,
}

/// Clock ticks per second of /proc/PID/stat. Linux has reported USER_HZ =
/// 100 on every mainstream architecture for decades.
const CLK_TCK: f64 = 100.0;

impl ProcSample {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (`pid` may be `self`).
    pub(crate) fn read(pid: &str) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which may itself contain spaces.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15; `rest` starts at field 3.
        let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(Self {
            at: Instant::now(),
            ticks,
            rss_kb,
        })
    }

    pub(crate) fn rss_mb(&self) -> f64 {
        self.rss_kb as f64 / 1024.0
    }

    /// Percent of one core used between `earlier` and `self`.
    pub(crate) fn cpu_percent_since(&self, earlier: &ProcSample) -> f64 {
        let secs = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        self.ticks.saturating_sub(earlier.ticks) as f64 / CLK_TCK / secs * 100.0
    }
}

/// Inputs of [`Report::build`].
pub(crate) struct Window {
    pub(crate) start: Snapshot,
    pub(crate) end: Snapshot,
    pub(crate) server: Option<(ProcSample, ProcSample)>,
    pub(crate) me: Option<(ProcSample, ProcSample)>,
    pub(crate) interrupted: bool,
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

impl Report {
    pub(crate) fn build(s: &Scenario, stats: &Stats, w: &Window) -> Report {
        use std::sync::atomic::Ordering::Relaxed;
        let rates = w.end.since(&w.start);
        let joins = stats.join_ms();
        let lat = &stats.latency_us;
        let ms = |us: Option<u64>| us.map(|v| round(v as f64 / 1000.0, 3));
        let joined = stats.joined.load(Relaxed);
        let failed = stats.failed_total();
        let requested = s.peers() as u64;
        Report {
            peers_requested: requested,
            peers_joined: joined,
            peers_failed: FailedByCause {
                signaling: stats.failed(FailCause::Signaling),
                ice_timeout: stats.failed(FailCause::IceTimeout),
                dtls: stats.failed(FailCause::Dtls),
                media_timeout: stats.failed(FailCause::MediaTimeout),
            },
            peers_pending: requested.saturating_sub(joined + failed),
            peers_disconnected: stats.disconnected.load(Relaxed),
            join_ms: Quantiles {
                p50: percentile(&joins, 50.0).map(|v| round(v, 1)),
                p99: percentile(&joins, 99.0).map(|v| round(v, 1)),
                max: joins.last().map(|v| round(*v, 1)),
            },
            join_stages_ms: {
                let q = |h: &crate::stats::Histogram| Quantiles {
                    p50: ms(h.quantile(0.5)),
                    p99: ms(h.quantile(0.99)),
                    max: ms((h.count() > 0).then(|| h.max())),
                };
                JoinStages {
                    signaling: q(&stats.stage_us[Stage::Signaling as usize]),
                    ice: q(&stats.stage_us[Stage::Ice as usize]),
                    dtls: q(&stats.stage_us[Stage::Dtls as usize]),
                    media: q(&stats.stage_us[Stage::Media as usize]),
                }
            },
            dtls: DtlsSummary {
                handshakes: stats.dtls_handshakes.load(Relaxed),
                datagrams_tx: stats.dtls_tx.load(Relaxed),
                datagrams_rx: stats.dtls_rx.load(Relaxed),
                resends_held: stats.dtls_held.load(Relaxed),
            },
            rx_packets_per_s: round(rates.rx_packets_per_s, 1),
            tx_packets_per_s: round(rates.tx_packets_per_s, 1),
            rx_bitrate_kbps: round(rates.rx_kbps, 1),
            tx_bitrate_kbps: round(rates.tx_kbps, 1),
            loss_ratio: round(loss_ratio(w.end.rx_expected, w.end.rx_packets), 6),
            loss_ratio_before_retransmission: round(
                loss_ratio(
                    w.end.rx_expected,
                    w.end
                        .rx_packets
                        .saturating_sub(stats.rx_reordered.load(Relaxed)),
                ),
                6,
            ),
            nacks_received: stats.nacks_received.load(Relaxed),
            packets_retransmitted: stats.retransmitted.load(Relaxed),
            packets_retransmitted_rtx: stats.retransmitted_rtx.load(Relaxed),
            rx_dropped: stats.rx_dropped.load(Relaxed),
            nacks_sent: stats.nacks_sent.load(Relaxed),
            receiver_reports_sent: stats.reports_sent.load(Relaxed),
            twcc_feedback_sent: stats.twcc_feedback_sent.load(Relaxed),
            rx_padding_packets: stats.rx_padding.load(Relaxed),
            sender_reports_sent: stats.sender_reports_sent.load(Relaxed),
            rx_rtx_packets: stats.rx_rtx.load(Relaxed),
            packets_recovered: stats.nack_recovered.load(Relaxed),
            rx_reordered: stats.rx_reordered.load(Relaxed),
            rx_unstamped: stats.rx_unstamped.load(Relaxed),
            rx_invalid: stats.rx_invalid.load(Relaxed),
            rx_packets: w.end.rx_packets,
            tx_packets: w.end.tx_packets,
            tx_dropped: stats.tx_dropped.load(Relaxed),
            keyframe_requests: stats.keyframe_requests.load(Relaxed),
            tx_keyframes: stats.tx_keyframes.load(Relaxed),
            rx_layer_packets: std::array::from_fn(|i| stats.rx_layer_packets[i].load(Relaxed)),
            layers_changed: stats.layers_changed.load(Relaxed),
            latency_ms: Quantiles {
                p50: ms(lat.quantile(0.5)),
                p99: ms(lat.quantile(0.99)),
                max: ms((lat.count() > 0).then(|| lat.max())),
            },
            jitter_ms: Quantiles {
                p50: ms(stats.jitter_us.quantile(0.5)),
                p99: ms(stats.jitter_us.quantile(0.99)),
                max: ms((stats.jitter_us.count() > 0).then(|| stats.jitter_us.max())),
            },
            server_cpu_percent: w.server.map(|(a, b)| round(b.cpu_percent_since(&a), 1)),
            server_rss_mb: w.server.map(|(_, b)| round(b.rss_mb(), 1)),
            server_rss_start_mb: w.server.map(|(a, _)| round(a.rss_mb(), 1)),
            loadgen_rss_mb: w.me.map(|(_, b)| round(b.rss_mb(), 1)),
            loadgen_cpu_percent: w.me.map(|(a, b)| round(b.cpu_percent_since(&a), 1)),
            measured_s: round(rates.secs, 3),
            interrupted: w.interrupted,
            unsupported: s.unsupported.clone(),
            scenario: ScenarioSummary {
                publish_ws: s.publish_ws.clone(),
                subscribe_ws: s.subscribe_ws.clone(),
                rooms: s.rooms,
                publishers: s.publishers,
                subscribers: s.subscribers,
                duration_s: s.duration.as_secs_f64(),
                video: s.video,
                audio: s.audio,
                ramp_peers_per_s: s.ramp,
                loss_percent: s.loss * 100.0,
                video_kbps: s.video_bps / 1000,
                pacing_factor: s.pacing_factor,
                simulcast: s.simulcast,
                vp8_frames: s.vp8_frames,
                threads: s.threads,
                prefer_layer: s.prefer_layer,
            },
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Plain data with string keys serializes without error.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v}{unit}"))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.peers_failed;
        writeln!(
            f,
            "weir-loadgen: {} rooms × ({} publishers + {} subscribers), {:.1} s measured{}",
            self.scenario.rooms,
            self.scenario.publishers,
            self.scenario.subscribers,
            self.measured_s,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  peers     {} joined of {} ({} pending, {} disconnected); failed: signaling {}, ice_timeout {}, dtls {}, media_timeout {}",
            self.peers_joined,
            self.peers_requested,
            self.peers_pending,
            self.peers_disconnected,
            p.signaling,
            p.ice_timeout,
            p.dtls,
            p.media_timeout
        )?;
        writeln!(
            f,
            "  join      p50 {}  p99 {}  max {}",
            opt(self.join_ms.p50, " ms"),
            opt(self.join_ms.p99, " ms"),
            opt(self.join_ms.max, " ms")
        )?;
        let st = &self.join_stages_ms;
        let pair = |q: &Quantiles| format!("{} / {}", opt(q.p50, ""), opt(q.p99, " ms"));
        writeln!(
            f,
            "  stages    p50 / p99: signaling {}, ice {}, dtls {}, media {}; {} DTLS handshakes, {} datagrams out, {} in, {} resends held",
            pair(&st.signaling),
            pair(&st.ice),
            pair(&st.dtls),
            pair(&st.media),
            self.dtls.handshakes,
            self.dtls.datagrams_tx,
            self.dtls.datagrams_rx,
            self.dtls.resends_held
        )?;
        writeln!(
            f,
            "  tx        {:.0} pkt/s  {:.0} kbit/s  ({} dropped by --loss, {} keyframes, {} keyframe requests, {} sender reports)",
            self.tx_packets_per_s,
            self.tx_bitrate_kbps,
            self.tx_dropped,
            self.tx_keyframes,
            self.keyframe_requests,
            self.sender_reports_sent
        )?;
        writeln!(
            f,
            "  rx        {:.0} pkt/s  {:.0} kbit/s  loss {:.4} % ({:.4} % before retransmission; {} NACKs to publishers, {} resent ({} as RTX); {} dropped by --rx-loss, {} NACKs, {} receiver reports and {} transport-cc feedbacks sent, {} RTX and {} probe padding in, {} recovered)  reordered {}  invalid {}",
            self.rx_packets_per_s,
            self.rx_bitrate_kbps,
            self.loss_ratio * 100.0,
            self.loss_ratio_before_retransmission * 100.0,
            self.nacks_received,
            self.packets_retransmitted,
            self.packets_retransmitted_rtx,
            self.rx_dropped,
            self.nacks_sent,
            self.receiver_reports_sent,
            self.twcc_feedback_sent,
            self.rx_rtx_packets,
            self.rx_padding_packets,
            self.packets_recovered,
            self.rx_reordered,
            self.rx_invalid
        )?;
        writeln!(
            f,
            "  latency   p50 {}  p99 {}  max {}",
            opt(self.latency_ms.p50, " ms"),
            opt(self.latency_ms.p99, " ms"),
            opt(self.latency_ms.max, " ms")
        )?;
        writeln!(
            f,
            "  jitter    p50 {}  p99 {}  max {}",
            opt(self.jitter_ms.p50, " ms"),
            opt(self.jitter_ms.p99, " ms"),
            opt(self.jitter_ms.max, " ms")
        )?;
        writeln!(
            f,
            "  server    cpu {}  rss {} (start {})",
            opt(self.server_cpu_percent, " %"),
            opt(self.server_rss_mb, " MB"),
            opt(self.server_rss_start_mb, " MB")
        )?;
        write!(
            f,
            "  loadgen   cpu {}  rss {}",
            opt(self.loadgen_cpu_percent, " %"),
            opt(self.loadgen_rss_mb, " MB")
        )?;
        if !self.unsupported.is_empty() {
            write!(
                f,
                "\n  not yet supported (ignored): {}",
                self.unsupported.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_proc() {
        let a = ProcSample::read("self").unwrap();
        assert!(a.rss_mb() > 0.0);
        let b = ProcSample::read("self").unwrap();
        assert!(b.cpu_percent_since(&a) >= 0.0);
        assert!(ProcSample::read("0").is_none());
    }
}
