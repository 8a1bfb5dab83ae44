//! Compound RTCP, report blocks, NACK FCI and REMB parsing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_dataplane::rtcp::{self, nack, remb, RtcpItem};

fuzz_target!(|data: &[u8]| {
    for item in rtcp::walk(data) {
        match item {
            Ok(RtcpItem::SenderReport { blocks, .. }) | Ok(RtcpItem::ReceiverReport { blocks, .. }) => {
                for block in rtcp::report_blocks(blocks) {
                    let _ = block;
                }
            }
            Ok(RtcpItem::Nack { fci, .. }) => {
                for seq in nack::nacked_seqs(fci) {
                    let _ = seq;
                }
            }
            Ok(RtcpItem::Fir { entries }) => {
                for ssrc in rtcp::fir_ssrcs(entries) {
                    let _ = ssrc;
                }
            }
            _ => {}
        }
    }
    // REMB is not a typed item: its FCI follows a 12-byte PSFB header.
    let _ = remb::parse_remb(data);
    if let Some(fci) = data.get(12..) {
        let _ = remb::parse_remb(fci);
    }
});
