//! RTCP that sessions send on their own schedule: NACKs and transport-cc
//! feedback to publishers, receiver reports to publishers and sender
//! reports to subscribers.
use std::time::Instant;

use super::session::{clock_rate, Session};
use super::transmit::TxQueue;
use super::CNAME;
use crate::counters::CoreCounters;
use crate::rtcp::nack;
use crate::rtcp::receiver::ReportBlock;
use crate::rtcp::report::{self, NtpClock, SenderInfo};

/// Sends NACKs for whatever each inbound stream of `s` is missing now.
pub(super) fn send_nacks(s: &mut Session, now: Instant, tx: &mut TxQueue, counters: &CoreCounters) {
    let (Some(srtp), Some(dest)) = (s.srtp.as_mut(), s.ice.selected()) else {
        return;
    };
    for enc in s.inbound.iter_mut().flat_map(|i| i.encodings.iter_mut()) {
        let Some(media_ssrc) = enc.ssrc else { continue };
        if !enc.nack.has_missing() {
            continue;
        }
        let mut fci = [0u8; 64];
        let n = enc.nack.poll(now, &mut fci);
        if n == 0 {
            continue;
        }
        let mut pkt = [0u8; 80];
        let Some(len) = nack::write_nack(&mut pkt, s.rtcp_ssrc, media_ssrc, &fci[..n]) else {
            continue;
        };
        if tx.seal_rtcp(srtp, dest, &pkt[..len], counters).is_ok() {
            counters.nack_sent.inc();
            s.counters.rtcp_tx_packets.inc();
        }
    }
}

/// Sends transport-cc feedback to a publisher when it is due.
pub(super) fn send_twcc(s: &mut Session, now: Instant, tx: &mut TxQueue, counters: &CoreCounters) {
    let Some((_, recorder)) = s.twcc.as_mut() else {
        return;
    };
    let (Some(srtp), Some(dest)) = (s.srtp.as_mut(), s.ice.selected()) else {
        return;
    };
    let media_ssrc = s
        .inbound
        .iter()
        .flat_map(|i| &i.encodings)
        .find_map(|e| e.ssrc)
        .unwrap_or(0);
    let mut buf = [0u8; 1200];
    while let Some(n) = recorder.poll_feedback(now, s.rtcp_ssrc, media_ssrc, &mut buf) {
        if tx.seal_rtcp(srtp, dest, &buf[..n], counters).is_ok() {
            counters.twcc_feedback_sent.inc();
            s.counters.rtcp_tx_packets.inc();
        }
        if !recorder.due(now) {
            break;
        }
    }
}

/// Sends a receiver report about the streams `s` publishes and a sender
/// report for each stream it subscribes to.
pub(super) fn send_reports(
    s: &mut Session,
    now: Instant,
    ntp: &NtpClock,
    tx: &mut TxQueue,
    counters: &CoreCounters,
) {
    let (Some(srtp), Some(dest)) = (s.srtp.as_mut(), s.ice.selected()) else {
        return;
    };
    let mut buf = [0u8; 1200];
    // An RR holds at most 31 blocks; a fixed array keeps reports off the heap.
    let mut blocks = [None; 31];
    let mut count = 0;
    for enc in s.inbound.iter_mut().flat_map(|i| i.encodings.iter_mut()) {
        if let (Some(ssrc), true) = (enc.ssrc, count < blocks.len()) {
            if let Some(b) = enc.stats.report(now, ssrc) {
                blocks[count] = Some(b);
                count += 1;
            }
        }
    }
    if let Some(first) = blocks[0] {
        let mut list: [ReportBlock; 31] = [first; 31];
        for (l, b) in list.iter_mut().zip(blocks.iter().flatten()) {
            *l = *b;
        }
        let Some(n) = report::write_rr(&mut buf, s.rtcp_ssrc, &list[..count]) else {
            return;
        };
        let Some(m) = report::write_sdes_cname(&mut buf[n..], s.rtcp_ssrc, CNAME) else {
            return;
        };
        if tx.seal_rtcp(srtp, dest, &buf[..n + m], counters).is_ok() {
            counters.rr_sent.inc();
            s.counters.rtcp_tx_packets.inc();
        }
    }
    for sub in s.subs.values() {
        let Some(sent_at) = sub.last_sent_at else {
            continue;
        };
        // The RTP time "now", extrapolated from the last packet sent.
        let elapsed = now.saturating_duration_since(sent_at).as_secs_f64();
        let rtp_timestamp = sub
            .forwarder
            .last_out_timestamp()
            .wrapping_add((elapsed * f64::from(clock_rate(sub.kind))) as u32);
        let info = SenderInfo {
            ssrc: sub.forwarder.out_ssrc(),
            ntp: ntp.ntp(now),
            rtp_timestamp,
            packets: sub.packets_sent,
            octets: sub.octets_sent,
        };
        let Some(n) = report::write_sr(&mut buf, &info) else {
            continue;
        };
        let Some(m) = report::write_sdes_cname(&mut buf[n..], info.ssrc, CNAME) else {
            continue;
        };
        if tx.seal_rtcp(srtp, dest, &buf[..n + m], counters).is_ok() {
            counters.sr_sent.inc();
            s.counters.rtcp_tx_packets.inc();
        }
    }
}
