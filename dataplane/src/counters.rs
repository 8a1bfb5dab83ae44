//! Counters, written by one data-plane core and read by anyone.
//!
//! Each counter has a single writer (the core that owns the object), so a
//! relaxed load-add-store would do; `fetch_add(Relaxed)` is used for clarity
//! and costs the same on x86 for uncontended lines.
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Sets a gauge-like value (estimates, not totals).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! counter_struct {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: Counter,)*
        }

        impl $name {
            /// Every counter with its name, for exporters.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field.get()),)*]
            }
        }
    };
}

counter_struct!(
    /// Per-core counters.
    CoreCounters {
        /// Datagrams received on the core's socket.
        rx_datagrams,
        /// Bytes received.
        rx_bytes,
        /// Datagrams sent.
        tx_datagrams,
        /// Bytes sent.
        tx_bytes,
        /// Send errors from the socket.
        tx_errors,
        /// STUN binding requests answered.
        stun_answered,
        /// STUN packets rejected (bad integrity, unknown ufrag, malformed).
        drop_stun_rejected,
        /// DTLS or SRTP from a 5-tuple that passed no ICE check.
        drop_unchecked_source,
        /// Datagrams whose first byte matches no protocol.
        drop_unknown_class,
        /// SRTP/SRTCP that failed authentication, replay or parsing.
        drop_srtp,
        /// Media datagrams not queued because the core's transmit queue
        /// was full (the core or its socket could not keep up).
        drop_tx_backlog,
        /// Turns in which the core left other cores' packets in the fanout
        /// rings because its transmit queue was long.
        ring_reads_deferred,
        /// RTP whose SSRC maps to no track.
        drop_unknown_ssrc,
        /// Malformed RTP or RTCP after decryption.
        drop_malformed,
        /// Media that reached a subscriber before its keyframe.
        drop_waiting_keyframe,
        /// Padding-only packets not forwarded.
        drop_padding,
        /// Published video packets received twice (a retransmission nobody
        /// asked for, such as the RTX payload padding browsers probe
        /// with), not forwarded again.
        drop_duplicate,
        /// Packets of layers a subscriber does not get.
        drop_layer_filtered,
        /// Video packets not sent because the subscriber's track is paused
        /// (its lowest layer does not fit the bandwidth estimate).
        drop_paused,
        /// Video subscriptions paused for lack of bandwidth.
        video_paused,
        /// Paused video subscriptions resumed (from a keyframe).
        video_resumed,
        /// Keyframe requests (PLI) sent to publishers.
        pli_sent,
        /// FIRs sent to publishers that negotiated `ccm fir` (instead of PLIs).
        fir_sent,
        /// Keyframe requests (PLI/FIR) received from subscribers.
        keyframe_requests_received,
        /// Packets handed to other cores (one per packet and subscribing
        /// core, whether through the fanout ring or the mailbox).
        cross_core_sent,
        /// Packets a subscribing core's ring reader skipped because it fell
        /// more than a ring behind the publisher (counted on the reader's
        /// core).
        fanout_ring_lost,
        /// NACK packets sent to publishers.
        nack_sent,
        /// NACK packets received from subscribers.
        nack_received,
        /// Sequence numbers asked for by subscribers' NACKs.
        nacked_packets_received,
        /// Packets retransmitted from the ring.
        retransmits_sent,
        /// Of those, sent as RTX (RFC 4588) rather than plain.
        retransmits_rtx,
        /// RTX repairs received from publishers (and unwrapped).
        rtx_repairs_received,
        /// NACKed packets no longer (or never) in the ring.
        retransmit_misses,
        /// NACKed packets not retransmitted: over the subscriber's budget
        /// (its bandwidth estimate minus what its media is given).
        retransmits_limited,
        /// NACKed packets not retransmitted because they can no longer
        /// help: sent before the latest keyframe, or of a layer the
        /// subscriber has left or is leaving.
        retransmits_stale,
        /// Receiver reports sent to publishers.
        rr_sent,
        /// Sender reports sent to subscribers.
        sr_sent,
        /// transport-cc feedback packets sent to publishers.
        twcc_feedback_sent,
        /// REMB packets sent to publishers without transport-cc.
        remb_sent,
        /// transport-cc feedback packets received from subscribers.
        twcc_feedback_received,
        /// Published packets that found the core's packet pool empty and
        /// were allocated on the heap instead.
        packet_pool_misses,
        /// Transmit buffers allocated because none was free to reuse.
        tx_pool_misses,
        /// Free transmit buffers given back to the allocator because they
        /// went unused for a trim period (what a burst left behind).
        tx_pool_trimmed,
        /// Bandwidth probe clusters started toward subscribers.
        probe_clusters,
        /// Padding-only RTX packets sent in probe clusters.
        probe_packets_sent,
    }
);

counter_struct!(
    /// Per-transport counters, shared with the control plane.
    TransportCounters {
        /// RTP packets received and authenticated.
        rtp_rx_packets,
        /// RTP bytes received (encrypted size).
        rtp_rx_bytes,
        /// RTP packets sent.
        rtp_tx_packets,
        /// RTP bytes sent (encrypted size).
        rtp_tx_bytes,
        /// RTCP packets received and authenticated.
        rtcp_rx_packets,
        /// RTCP packets sent.
        rtcp_tx_packets,
        /// SRTP/SRTCP packets rejected.
        srtp_rejected,
        /// STUN binding requests answered.
        stun_answered,
        /// Latest bandwidth estimate toward this subscriber, bit/s (a gauge).
        bwe_estimate_bps,
    }
);

counter_struct!(
    /// Per published stream (one m-section of a publish transport, all its
    /// simulcast encodings together), shared with the control plane. Totals
    /// are counters; the fields documented as gauges are refreshed with
    /// each receiver report (about once a second).
    InboundStreamCounters {
        /// RTP packets received (repairs included).
        packets,
        /// RTP bytes received (decrypted size).
        bytes,
        /// Packets lost so far: expected minus received (a gauge).
        packets_lost,
        /// Interarrival jitter in microseconds, worst encoding (a gauge).
        jitter_us,
        /// Round trip to the publisher learned from NACK repairs, in
        /// microseconds; 0 until measured (a gauge).
        rtt_us,
        /// NACK packets sent to the publisher.
        nacks_sent,
        /// Missing packets that arrived after all, repaired or late (a gauge).
        packets_recovered,
        /// Missing packets given up on (a gauge).
        packets_abandoned,
        /// RTX repairs received.
        rtx_received,
        /// PLIs sent to the publisher.
        plis_sent,
        /// FIRs sent to the publisher.
        firs_sent,
    }
);

counter_struct!(
    /// Per subscription (one track sent to one subscribe transport), shared
    /// with the control plane. Totals are counters; gauges are refreshed
    /// as the subscriber's reports and the housekeeping tick come.
    OutboundStreamCounters {
        /// RTP packets sent (retransmissions included).
        packets,
        /// RTP bytes sent (encrypted size).
        bytes,
        /// Packets lost, cumulative, from the subscriber's receiver
        /// reports (a gauge).
        packets_lost,
        /// Fraction lost in the last report interval, in 1/256 (a gauge).
        fraction_lost,
        /// The subscriber's interarrival jitter in microseconds (a gauge).
        jitter_us,
        /// Round trip from the subscriber's receiver reports, in
        /// microseconds; 0 until measured (a gauge).
        rtt_us,
        /// NACK packets received from the subscriber.
        nacks_received,
        /// Packets retransmitted (plain or RTX).
        retransmissions,
        /// NACKed packets that could not be retransmitted.
        retransmit_misses,
        /// PLIs and FIRs received from the subscriber.
        keyframe_requests,
        /// The transport's bandwidth estimate toward the subscriber, bit/s
        /// (a gauge; 0 without transport-cc).
        bandwidth_estimate_bps,
        /// The share of that estimate allocated to this track, bit/s (a
        /// gauge; 0 when not allocated).
        allocated_bps,
        /// Spatial layer forwarded now (a gauge; video).
        current_spatial,
        /// Temporal layer forwarded now (a gauge; video).
        current_temporal,
        /// Spatial layer aimed at (a gauge; video).
        target_spatial,
        /// Temporal layer aimed at (a gauge; video).
        target_temporal,
        /// 1 while video is paused or waits for its first keyframe (a gauge).
        paused,
    }
);
