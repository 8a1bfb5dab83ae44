//! Offer/answer tests with browser-shaped SDP.
use super::*;
use std::net::SocketAddr;

/// An offer shaped like Chromium's: audio + video sendonly, a data channel,
/// several codecs with RTX, SSRC lines and the mid extension.
pub(crate) const BROWSER_OFFER: &str = "v=0\r
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0 1 2\r
a=extmap-allow-mixed\r
a=msid-semantic: WMS stream1\r
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r
c=IN IP4 0.0.0.0\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=ice-ufrag:Ab3d\r
a=ice-pwd:aaaabbbbccccddddeeeeffff\r
a=ice-options:trickle\r
a=fingerprint:sha-256 01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF\r
a=setup:actpass\r
a=mid:0\r
a=extmap:1 urn:ietf:params:audio-level\r
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=sendonly\r
a=msid:stream1 audio-track-1\r
a=rtcp-mux\r
a=rtcp-rsize\r
a=rtpmap:111 opus/48000/2\r
a=rtcp-fb:111 transport-cc\r
a=fmtp:111 minptime=10;useinbandfec=1\r
a=rtpmap:63 red/48000/2\r
a=fmtp:63 111/111\r
a=rtpmap:9 G722/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:13 CN/8000\r
a=rtpmap:110 telephone-event/48000\r
a=rtpmap:126 telephone-event/8000\r
a=ssrc:1001 cname:abc\r
a=ssrc:1001 msid:stream1 audio-track-1\r
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103 45 46\r
c=IN IP4 0.0.0.0\r
a=ice-ufrag:Ab3d\r
a=ice-pwd:aaaabbbbccccddddeeeeffff\r
a=fingerprint:sha-256 01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF\r
a=setup:actpass\r
a=mid:1\r
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=sendonly\r
a=msid:stream1 video-track-1\r
a=rtcp-mux\r
a=rtcp-rsize\r
a=rtpmap:96 VP8/90000\r
a=rtcp-fb:96 goog-remb\r
a=rtcp-fb:96 transport-cc\r
a=rtcp-fb:96 ccm fir\r
a=rtcp-fb:96 nack\r
a=rtcp-fb:96 nack pli\r
a=rtpmap:97 rtx/90000\r
a=fmtp:97 apt=96\r
a=rtpmap:98 VP9/90000\r
a=rtcp-fb:98 nack pli\r
a=fmtp:98 profile-id=0\r
a=rtpmap:99 rtx/90000\r
a=fmtp:99 apt=98\r
a=rtpmap:102 H264/90000\r
a=rtcp-fb:102 nack pli\r
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r
a=rtpmap:103 rtx/90000\r
a=fmtp:103 apt=102\r
a=rtpmap:45 AV1/90000\r
a=rtcp-fb:45 nack pli\r
a=fmtp:45 level-idx=5;profile=0;tier=0\r
a=rtpmap:46 rtx/90000\r
a=fmtp:46 apt=45\r
a=ssrc-group:FID 2001 2002\r
a=ssrc:2001 cname:abc\r
a=ssrc:2002 cname:abc\r
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r
c=IN IP4 0.0.0.0\r
a=ice-ufrag:Ab3d\r
a=ice-pwd:aaaabbbbccccddddeeeeffff\r
a=fingerprint:sha-256 01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF\r
a=setup:actpass\r
a=mid:2\r
a=sctp-port:5000\r
a=max-message-size:262144\r
";

fn local() -> LocalParams {
    LocalParams {
        ice_ufrag: "srvU".into(),
        ice_pwd: "serverpasswordserverpass".into(),
        fingerprint: "AA:BB".into(),
        candidate: SocketAddr::from(([127, 0, 0, 1], 40000)),
        session_id: 42,
        version: 2,
    }
}

#[test]
fn parses_a_browser_offer() {
    let d = parse(BROWSER_OFFER).unwrap();
    assert_eq!(d.ice_ufrag, "Ab3d");
    assert_eq!(d.fingerprint.len(), 32);
    assert_eq!(d.setup, Setup::ActPass);
    assert_eq!(d.media.len(), 3);
    let video = &d.media[1];
    assert_eq!(video.mid, "1");
    assert_eq!(video.ssrcs, vec![2001, 2002]);
    assert_eq!(video.fid_groups, vec![(2001, 2002)]);
    assert_eq!(video.msid, Some(("stream1".into(), "video-track-1".into())));
    assert_eq!(
        video.extmap_id("urn:ietf:params:rtp-hdrext:sdes:mid"),
        Some(4)
    );
    let h264 = video.formats.iter().find(|f| f.pt == 102).unwrap();
    assert_eq!(h264.fmtp_param("profile-level-id"), Some("42e01f"));
    assert_eq!(h264.codec(), Some(weir_codecs::Codec::H264));
}

#[test]
fn answer_accepts_first_codec_and_the_data_channel() {
    let d = parse(BROWSER_OFFER).unwrap();
    let (answer, accepted, data) = publish_answer_with_data(&d, &local()).unwrap();
    assert_eq!(
        data,
        Some(AcceptedData {
            mid: "2".into(),
            remote_port: 5000,
            remote_max_message_size: 262144
        })
    );
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0].format.name, "opus");
    assert_eq!(accepted[1].format.name, "VP8");
    assert_eq!(accepted[1].mid_ext_id, Some(4));
    assert!(answer.contains("a=group:BUNDLE 0 1 2\r\n"));
    assert!(answer.contains("a=ice-lite\r\n"));
    assert!(answer.contains("a=setup:passive\r\n"));
    assert!(answer.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"));
    assert!(
        answer.contains("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n")
    );
    assert!(answer.contains("a=mid:2\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"));
    assert!(answer.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"));
    assert!(answer.contains("a=rtcp-fb:96 nack pli\r\n"));
    assert!(answer.contains("a=rtcp-fb:96 nack\r\n"));
    // RTX for the chosen codec only, its SSRC paired by the FID group.
    assert!(answer.contains("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"));
    assert_eq!(answer.matches("rtx/90000").count(), 1);
    assert_eq!(accepted[1].rtx.as_ref().map(|f| f.pt), Some(97));
    assert_eq!(accepted[1].rtx_ssrcs, vec![(2002, 2001)]);
    assert_eq!(accepted[1].ssrcs, vec![2001], "the RTX SSRC is no stream");
    assert_eq!(accepted[0].rtx, None, "no RTX for audio");
    // Our own parser reads our answer back: the m-lines line up.
    let back = parse(&answer.replace("AA:BB", &["00"; 32].join(":"))).unwrap();
    assert_eq!(back.media.len(), 3);
    assert!(back.media[2].is_datachannel());
    assert_eq!(back.media[2].max_message_size, Some(262144));
}

#[test]
fn data_channel_only_offers_are_answered() {
    let start = BROWSER_OFFER.find("m=application").unwrap();
    let header = &BROWSER_OFFER[..BROWSER_OFFER.find("m=audio").unwrap()];
    let offer = format!(
        "{}{}",
        header.replace("BUNDLE 0 1 2", "BUNDLE 2"),
        &BROWSER_OFFER[start..]
    );
    let no_limit = offer.replace("a=max-message-size:262144\r\n", "");
    let (answer, media, data) =
        publish_answer_with_data(&parse(&no_limit).unwrap(), &local()).unwrap();
    assert!(media.is_empty());
    assert!(answer.contains("a=group:BUNDLE 2\r\n"));
    // RFC 8841 §6.1: no attribute means 64 KiB.
    assert_eq!(data.unwrap().remote_max_message_size, 65536);
    // The pre-standard form is refused with port 0.
    let old = offer
        .replace("UDP/DTLS/SCTP webrtc-datachannel", "DTLS/SCTP 5000")
        .replace(
            "a=sctp-port:5000\r\n",
            "a=sctpmap:5000 webrtc-datachannel 1024\r\n",
        );
    let e = publish_answer_with_data(&parse(&old).unwrap(), &local())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no data channel"), "{e}");
    let bad_port = offer.replace("a=sctp-port:5000", "a=sctp-port:x");
    assert!(parse(&bad_port)
        .unwrap_err()
        .to_string()
        .contains("sctp-port"));
}

#[test]
fn codec_preference_follows_the_offer_order() {
    let offer = BROWSER_OFFER.replace(
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103 45 46",
        "m=video 9 UDP/TLS/RTP/SAVPF 45 46 98 99 96 97 102 103",
    );
    let (_, accepted) = publish_answer(&parse(&offer).unwrap(), &local()).unwrap();
    assert_eq!(accepted[1].format.name, "AV1");
}

#[test]
fn bad_offers_say_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("hello", "unparsable"),
        (
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
            "m= sections",
        ),
    ];
    for (sdp, needle) in cases {
        let e = parse(sdp).unwrap_err().to_string();
        assert!(e.contains(needle), "{e:?} should mention {needle:?}");
    }
    let no_fp = BROWSER_OFFER.replace("a=fingerprint:sha-256", "a=x-fingerprint:sha-256");
    assert!(parse(&no_fp)
        .unwrap_err()
        .to_string()
        .contains("a=fingerprint"));
    let sha1 = BROWSER_OFFER.replace("a=fingerprint:sha-256", "a=fingerprint:sha-1");
    assert!(parse(&sha1).unwrap_err().to_string().contains("sha-256"));
    let no_mux = BROWSER_OFFER.replace("a=rtcp-mux\r\n", "");
    assert!(parse(&no_mux).unwrap_err().to_string().contains("rtcp-mux"));
    let bad_pt = BROWSER_OFFER.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:x VP8/90000");
    assert!(parse(&bad_pt).is_err());
    let only_g722 = BROWSER_OFFER
        .replace("111 63 9 0 8 13 110 126", "9")
        .replace("m=video 9 UDP/TLS/RTP/SAVPF", "m=video 0 UDP/TLS/RTP/SAVPF")
        .replace("m=application 9 ", "m=application 0 ");
    let e = publish_answer(&parse(&only_g722).unwrap(), &local())
        .unwrap_err()
        .to_string();
    assert!(e.contains("codec Weir forwards"), "{e}");
}

#[test]
fn subscribe_offer_lists_active_and_ended_slots() {
    let vp8 = Format {
        pt: 96,
        name: "VP8".into(),
        clock_rate: 90000,
        channels: None,
        fmtp: None,
        rtcp_fb: vec![],
    };
    let slot = |mid: &str, active: bool| OfferSlot {
        mid: mid.into(),
        video: true,
        active,
        format: vp8.clone(),
        ssrc: 1234,
        rtx: None,
        stream_id: "pub1".into(),
        track_id: "pub1-1".into(),
        cname: "weir".into(),
    };
    let offer = subscribe_offer(&[slot("0", false), slot("1", true)], &local());
    assert!(offer.contains("a=group:BUNDLE 0 1\r\n"));
    assert!(offer.contains("a=mid:0\r\na=inactive\r\n"));
    assert!(
        !offer.contains("m=video 0 "),
        "ended subscriptions stay bundled"
    );
    assert!(offer.contains("a=setup:actpass\r\n"));
    assert!(offer.contains("a=ssrc:1234 cname:weir\r\n"));
    assert!(offer.contains("a=msid:pub1 pub1-1\r\n"));
    assert!(offer.contains("a=rtcp-fb:96 nack pli\r\n"));
    assert!(!offer.contains("m=application"));
    let data = DataSlot {
        mid: "2".into(),
        position: 1,
    };
    let offer =
        subscribe_offer_with_data(&[slot("0", false), slot("1", true)], Some(&data), &local());
    assert!(offer.contains("a=group:BUNDLE 0 2 1\r\n"));
    let d = parse(&offer.replace("AA:BB", &["00"; 32].join(":"))).unwrap();
    let mids: Vec<&str> = d.media.iter().map(|m| m.mid.as_str()).collect();
    assert_eq!(mids, ["0", "2", "1"]);
    assert!(d.media[1].is_datachannel());
    assert_eq!(d.media[1].max_message_size, Some(262144));
}

mod props {
    use super::super::parse;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Arbitrary text never panics the parser.
        #[test]
        fn parse_never_panics(s in "\\PC{0,400}") {
            let _ = parse(&s);
        }

        /// Mutating one line of a valid offer never panics either.
        #[test]
        fn mutated_offer_never_panics(line in 0usize..90, junk in "[ -~]{0,40}") {
            let mut lines: Vec<String> = super::BROWSER_OFFER.split("\r\n").map(str::to_owned).collect();
            let n = lines.len();
            lines[line % n] = junk;
            let _ = parse(&lines.join("\r\n"));
        }
    }
}

#[test]
fn simulcast_and_transport_cc_are_answered() {
    let offer = BROWSER_OFFER
        .replace(
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n",
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
             a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n",
        )
        .replace(
            "a=ssrc-group:FID 2001 2002\r\n",
            "a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;~f\r\n",
        );
    let (answer, accepted) = publish_answer(&parse(&offer).unwrap(), &local()).unwrap();
    let video = &accepted[1];
    assert_eq!(video.rids, vec!["q", "h", "f"]);
    assert_eq!(video.rid_ext_id, Some(10));
    assert_eq!(video.twcc_ext_id, Some(3));
    assert!(answer
        .contains("a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n"));
    assert!(answer.contains(
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    ));
    assert!(answer.contains("a=rtcp-fb:96 transport-cc\r\n"));
    assert!(
        answer.contains("a=rtcp-fb:111 transport-cc\r\n"),
        "audio too"
    );
    // A simulcast line naming a rid that has no a=rid is refused.
    let bad = offer.replace("a=rid:h send\r\n", "");
    assert!(parse(&bad).unwrap_err().to_string().contains("a=simulcast"));
    let bad = offer.replace("a=rid:q send", "a=rid:q!! send");
    assert!(parse(&bad).is_err());
}

#[test]
fn subscribe_offers_transport_cc() {
    let vp8 = Format {
        pt: 96,
        name: "VP8".into(),
        clock_rate: 90000,
        channels: None,
        fmtp: None,
        rtcp_fb: vec![],
    };
    let slot = OfferSlot {
        mid: "0".into(),
        video: true,
        active: true,
        format: vp8,
        ssrc: 1,
        rtx: None,
        stream_id: "s".into(),
        track_id: "t".into(),
        cname: "c".into(),
    };
    let offer = subscribe_offer(&[slot], &local());
    assert!(offer.contains(
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    ));
    assert!(offer.contains("a=rtcp-fb:96 transport-cc\r\n"));
}

#[test]
fn dependency_descriptor_is_accepted_for_av1_only() {
    let with_dd = BROWSER_OFFER.replace(
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:3",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
         a=extmap:13 https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension\r\n\
         a=extmap:3",
    );
    let dd_line =
        "a=extmap:13 https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension\r\n";
    // VP8 first: Chromium would drop VP8's picture ids for the descriptor,
    // which forwarded packets do not carry, so it is not accepted.
    let (answer, accepted) = publish_answer(&parse(&with_dd).unwrap(), &local()).unwrap();
    assert_eq!(accepted[1].format.name, "VP8");
    assert_eq!(accepted[1].dd_ext_id, None);
    assert!(!answer.contains(dd_line));
    // AV1 first: accepted, with its id.
    let av1 = with_dd.replace(
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103 45 46",
        "m=video 9 UDP/TLS/RTP/SAVPF 45 46 98 99 96 97 102 103",
    );
    let (answer, accepted) = publish_answer(&parse(&av1).unwrap(), &local()).unwrap();
    assert_eq!(accepted[1].format.name, "AV1");
    assert_eq!(accepted[1].dd_ext_id, Some(13));
    assert!(answer.contains(dd_line));
    // Without allow-mixed in the answer Chromium sends no descriptor at
    // all (its structure needs the two-byte form); echoed only if offered.
    assert!(answer.contains("a=extmap-allow-mixed\r\n"));
    let plain = av1.replace("a=extmap-allow-mixed\r\n", "");
    let (answer, _) = publish_answer(&parse(&plain).unwrap(), &local()).unwrap();
    assert!(!answer.contains("a=extmap-allow-mixed"));
}

#[test]
fn subscribe_offer_pairs_video_with_rtx() {
    let vp8 = Format {
        pt: 96,
        name: "VP8".into(),
        clock_rate: 90000,
        channels: None,
        fmtp: None,
        rtcp_fb: vec![],
    };
    let slot = |mid: &str, active: bool| OfferSlot {
        mid: mid.into(),
        video: true,
        active,
        format: vp8.clone(),
        ssrc: 1234,
        rtx: Some(super::RtxOffer { pt: 97, ssrc: 4321 }),
        stream_id: "s".into(),
        track_id: "t".into(),
        cname: "c".into(),
    };
    let offer = subscribe_offer(&[slot("0", true), slot("1", false)], &local());
    assert!(
        offer.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"),
        "{offer}"
    );
    assert!(offer.contains("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"));
    assert!(offer.contains("a=ssrc-group:FID 1234 4321\r\n"));
    assert!(offer.contains("a=ssrc:4321 cname:c\r\n"));
    assert!(offer.contains("a=ssrc:4321 msid:s t\r\n"));
    assert_eq!(
        offer.matches("rtx/90000").count(),
        1,
        "an ended slot offers no RTX"
    );
}

#[test]
fn remb_is_answered_only_without_transport_cc() {
    let with_both = parse(BROWSER_OFFER).unwrap();
    let (answer, _) = publish_answer(&with_both, &local()).unwrap();
    assert!(answer.contains("a=rtcp-fb:96 transport-cc\r\n"));
    assert!(!answer.contains("goog-remb"));
    let remb_only = BROWSER_OFFER.replace("a=rtcp-fb:96 transport-cc\r\n", "");
    let (answer, _) = publish_answer(&parse(&remb_only).unwrap(), &local()).unwrap();
    assert!(answer.contains("a=rtcp-fb:96 goog-remb\r\n"), "{answer}");
}
