//! RTCP that sessions send on their own schedule: NACKs and transport-cc
//! feedback to publishers, receiver reports to publishers and sender
//! reports to subscribers.
use std::collections::HashMap;
use std::time::Instant;

use super::session::{clock_rate, Inbound, Session, Subscription};
use super::transmit::TxQueue;
use super::{TrackKey, CNAME};
use crate::counters::CoreCounters;
use crate::rtcp::receiver::ReportBlock;
use crate::rtcp::report::{self, rtp_time_at, NtpClock, SenderInfo};
use crate::rtcp::{nack, remb};

/// Sends NACKs for whatever each inbound stream of `s` is missing now.
pub(super) fn send_nacks(s: &mut Session, now: Instant, tx: &mut TxQueue, counters: &CoreCounters) {
    let (Some(srtp), Some(dest)) = (s.srtp.as_mut(), s.ice.selected()) else {
        return;
    };
    for (enc, stats) in s
        .inbound
        .iter_mut()
        .flat_map(|i| i.encodings.iter_mut().map(|e| (e, i.stats.as_ref())))
    {
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
            stats.inspect(|st| st.nacks_sent.inc());
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

/// Sends a REMB to a publisher without transport-cc when its receive-side
/// estimate is due.
pub(super) fn send_remb(s: &mut Session, now: Instant, tx: &mut TxQueue, counters: &CoreCounters) {
    let Some(bps) = s.remb.as_mut().and_then(|r| r.poll_remb(now)) else {
        return;
    };
    let (Some(srtp), Some(dest)) = (s.srtp.as_mut(), s.ice.selected()) else {
        return;
    };
    let mut ssrcs = [0u32; 8];
    let mut n = 0;
    for ssrc in s
        .inbound
        .iter()
        .filter(|i| i.spec.kind == crate::packet::Kind::Video)
        .flat_map(|i| i.encodings.iter().filter_map(|e| e.ssrc))
    {
        if n < ssrcs.len() {
            ssrcs[n] = ssrc;
            n += 1;
        }
    }
    let mut buf = [0u8; 20 + 4 * 8];
    let Some(len) = remb::write_remb(&mut buf, s.rtcp_ssrc, bps, &ssrcs[..n]) else {
        return;
    };
    if tx.seal_rtcp(srtp, dest, &buf[..len], counters).is_ok() {
        counters.remb_sent.inc();
        s.counters.rtcp_tx_packets.inc();
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
    refresh_stream_gauges(&s.inbound, &s.subs);
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
        let rtp_timestamp = rtp_time_at(
            sub.forwarder.last_out_timestamp(),
            sent_at,
            now,
            clock_rate(sub.kind),
        );
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

/// Refreshes the per-stream gauges the control plane reads: reception
/// totals of published streams, layers of subscriptions. Runs with the
/// reports, so about once a second.
fn refresh_stream_gauges(inbound: &[Inbound], subs: &HashMap<TrackKey, Box<Subscription>>) {
    for inbound in inbound {
        let Some(st) = &inbound.stats else { continue };
        let rate = u64::from(clock_rate(inbound.spec.kind));
        let (mut lost, mut jitter, mut rtt, mut recovered, mut abandoned) = (0, 0, 0, 0, 0);
        for enc in &inbound.encodings {
            lost += enc.stats.cumulative_lost().max(0) as u64;
            jitter = jitter.max(u64::from(enc.stats.jitter()) * 1_000_000 / rate);
            if let Some(r) = enc.nack.measured_rtt() {
                rtt = rtt.max(r.as_micros() as u64);
            }
            recovered += enc.nack.recovered;
            abandoned += enc.nack.abandoned;
        }
        st.packets_lost.set(lost);
        st.jitter_us.set(jitter);
        st.rtt_us.set(rtt);
        st.packets_recovered.set(recovered);
        st.packets_abandoned.set(abandoned);
    }
    for sub in subs.values() {
        let (Some(st), Some(v)) = (&sub.stats, &sub.video) else {
            continue;
        };
        let target = v.selector.target();
        st.target_spatial.set(u64::from(target.spatial));
        st.target_temporal.set(u64::from(target.temporal));
        match v.selector.current().filter(|_| !v.paused) {
            Some(c) => {
                st.current_spatial.set(u64::from(c.spatial));
                st.current_temporal.set(u64::from(c.temporal));
                st.paused.set(0);
            }
            None => st.paused.set(1),
        }
    }
}
