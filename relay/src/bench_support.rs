//! The relay's per-packet buffer work, old and new, for
//! `examples/datagram_path.rs` to compare in one process (same load, a
//! ratio). Not an API.
use std::time::{Duration, Instant};

use bytes::BytesMut;
use weir_codecs::RtpHeader;
use weir_dataplane::packet::{LayerFacts, MediaPacket};
use weir_dataplane::packet_pool::{PacketPool, PacketRef};

use crate::arena::SendArena;
use crate::peer::media_packet;
use crate::proto::datagram::{write_rtp_header, Datagram, RtpFacts, RTP_HEADER_MAX_LEN};

fn facts() -> RtpFacts {
    RtpFacts {
        encoding: 0,
        spatial: 0,
        temporal: 1,
        keyframe: false,
        frame_start: true,
        frame_end: true,
        switching_point: false,
        retransmission: false,
        sender_report: None,
        svc: None,
    }
}

/// Runs `n` copies of `rtp` through building the datagram on the origin
/// and rebuilding the shared packet downstream; another thread keeps the
/// last `keep` packets as a data-plane core's NACK ring would (so, as in
/// the server, packets are freed on another thread than the one that
/// made them). `pooled` picks the current path (chunk arena + packet
/// pool) or the previous one (a `BytesMut` per datagram, a `Vec` and an
/// `Arc` per received packet). Returns the time until the last packet
/// reached the ring.
pub fn datagram_path(rtp: &[u8], n: usize, keep: usize, pooled: bool) -> Duration {
    let facts = facts();
    let mut arena = SendArena::new();
    // Room for the ring, the batches in flight and the channel.
    let mut pool = PacketPool::new(keep + 4096);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<PacketRef>>(16);
    let ring_thread = std::thread::spawn(move || {
        let mut ring: std::collections::VecDeque<PacketRef> =
            std::collections::VecDeque::with_capacity(keep);
        for batch in rx {
            for packet in batch {
                if ring.len() == keep {
                    ring.pop_front();
                }
                ring.push_back(packet);
            }
        }
    });
    let mut batch = Vec::with_capacity(64);
    let mut sr = None;
    let start = Instant::now();
    for _ in 0..n {
        let packet = if pooled {
            let mut header = [0u8; RTP_HEADER_MAX_LEN];
            let Ok(h) = write_rtp_header(&mut header, 1, &facts) else {
                break;
            };
            let d = arena.datagram(&[&header[..h], rtp]);
            let Ok(Datagram::Rtp(d)) = Datagram::parse(&d) else {
                break;
            };
            let mut p = pool.take();
            if !media_packet(&d.facts, d.rtp, &mut sr, &mut p) {
                break;
            }
            p.share()
        } else {
            let mut buf = BytesMut::zeroed(RTP_HEADER_MAX_LEN);
            let Ok(h) = write_rtp_header(&mut buf, 1, &facts) else {
                break;
            };
            buf.truncate(h);
            buf.extend_from_slice(rtp);
            let d = buf.freeze();
            let Ok(Datagram::Rtp(d)) = Datagram::parse(&d) else {
                break;
            };
            let Ok(hdr) = RtpHeader::parse(d.rtp) else {
                break;
            };
            PacketRef::from(MediaPacket {
                data: d.rtp.to_vec(),
                payload_offset: hdr.header_len(),
                payload_len: hdr.payload().len(),
                seq: hdr.sequence_number(),
                timestamp: hdr.timestamp(),
                ssrc: hdr.ssrc(),
                marker: hdr.marker(),
                keyframe: d.facts.keyframe,
                layers: LayerFacts::default(),
                sender_report: None,
            })
        };
        batch.push(packet);
        if batch.len() == 64 {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(64));
            if tx.send(full).is_err() {
                break;
            }
        }
    }
    drop(tx);
    let _ = ring_thread.join();
    start.elapsed()
}
