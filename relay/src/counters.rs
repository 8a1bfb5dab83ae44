//! Counters of a relay endpoint, across all its peers.
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters of a relay endpoint (monotonic, except the `live_*`
        /// gauges).
        #[derive(Debug, Default)]
        pub struct RelayCounters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl RelayCounters {
            /// Every counter by name.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters!(
    /// Peers connected (gauge).
    live_peers,
    /// Tracks this endpoint sends to peers (gauge).
    live_served_tracks,
    /// Tracks this endpoint pulls from peers (gauge).
    live_pulled_tracks,
    /// Peers refused: wrong cluster secret or protocol version.
    auth_refused,
    /// Connections that ended by idle timeout (a dead peer).
    peers_timed_out,
    /// RTP datagrams sent (first transmissions).
    rtp_sent,
    /// RTP datagrams received.
    rtp_received,
    /// RTP bytes sent (datagram payloads).
    rtp_bytes_sent,
    /// RTP datagrams larger than the connection's `max_datagram_size`:
    /// not sent. A path MTU below what media needs shows here, not as
    /// silent loss.
    datagram_too_large,
    /// Datagrams quinn refused for another reason (connection closing,
    /// datagrams unsupported by the peer).
    datagram_send_failed,
    /// RTP datagrams dropped on purpose by the test-mode loss emulation.
    emulated_drops,
    /// Feedback datagrams sent toward origins.
    feedback_sent,
    /// Feedback datagrams received from downstream servers.
    feedback_received,
    /// Sequence numbers NACKed by downstream servers.
    nacks_received,
    /// Packets sent again in answer to a NACK.
    retransmits_sent,
    /// NACKed packets no longer in the origin's relay ring.
    retransmit_misses,
    /// Keyframe requests passed to publishers.
    keyframe_requests,
    /// Datagrams or frames that did not parse, or named an unknown track.
    malformed,
    /// Packets the data plane dropped because a relay task fell behind.
    tap_dropped,
    /// 64 KiB chunks allocated for outgoing datagrams: 4 per served track
    /// at its start, then one each time quinn still held a datagram of a
    /// chunk due for reuse (a send backlog). Steady state adds none.
    send_chunk_allocations,
    /// Received RTP packets that found no free buffer in the connection's
    /// pool and were heap-allocated (downstream rings holding more than
    /// the pool).
    recv_pool_misses,
    /// Pulled tracks taken over by a new pull after their connection
    /// failed (resume window).
    tracks_resumed,
    /// Data channels this endpoint sends to peers (gauge).
    live_served_data,
    /// Data channels this endpoint pulls from peers (gauge).
    live_pulled_data,
    /// Data channel messages sent to peers.
    data_messages_sent,
    /// Data channel messages received from peers.
    data_messages_received,
    /// Messages of partially reliable channels dropped because a relay
    /// stream fell behind (a reliable channel's relay ends instead).
    data_dropped,
    /// Datagrams sent carrying several RTP packets (bundles).
    bundles_sent,
    /// Bundles received.
    bundles_received,
    /// Packets the origin did not relay because no downstream subscriber
    /// wants their layer (or, after a layer was turned back on, because
    /// they came before its keyframe).
    layers_filtered,
    /// Wanted-layer updates sent toward origins.
    layer_updates_sent,
    /// Wanted-layer updates received from downstream servers.
    layer_updates_received,
);

impl RelayCounters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(c: &AtomicU64) {
        c.fetch_sub(1, Ordering::Relaxed);
    }

    /// One counter's value.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.snapshot()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}
