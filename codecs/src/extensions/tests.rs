use super::*;
use proptest::prelude::*;

#[test]
fn one_byte_rfc8285_example() {
    // RFC 8285 §4.2 figure: id 1 len 1, id 2 len 2 after a padding byte, then padding.
    let block = [0x10, 0xaa, 0x00, 0x21, 0xbb, 0xcc, 0x00, 0x00];
    let e = Extensions::parse(0xBEDE, &block).unwrap();
    assert_eq!(e.get(1), Some(&[0xaa][..]));
    assert_eq!(e.get(2), Some(&[0xbb, 0xcc][..]));
    assert_eq!(e.get(3), None);
    assert_eq!(e.iter().count(), 2);
}

#[test]
fn one_byte_id15_stops_parsing() {
    let block = [0x10, 0xaa, 0xf0, 0x20, 0x00, 0x00, 0x00, 0x00];
    let e = Extensions::parse(0xBEDE, &block).unwrap();
    assert_eq!(e.iter().count(), 1);
}

#[test]
fn two_byte_rfc8285_example() {
    // id 1 len 0, id 2 len 1, padding, id 3 len 4.
    let block = [1, 0, 2, 1, 0xaa, 0, 3, 4, 1, 2, 3, 4, 0, 0];
    let e = Extensions::parse(0x1003, &block).unwrap();
    assert_eq!(e.form(), ExtForm::TwoByte { appbits: 3 });
    assert_eq!(e.get(1), Some(&[][..]));
    assert_eq!(e.get(2), Some(&[0xaa][..]));
    assert_eq!(e.get(3), Some(&[1, 2, 3, 4][..]));
}

#[test]
fn errors() {
    assert_eq!(
        Extensions::parse(0xBEDE, &[0x12, 0xaa]),
        Err(ExtError::Truncated { id: 1 })
    );
    assert_eq!(
        Extensions::parse(0x1000, &[5]),
        Err(ExtError::Truncated { id: 5 })
    );
    assert_eq!(
        Extensions::parse(0x1234, &[]),
        Err(ExtError::UnsupportedProfile(0x1234))
    );
}

#[test]
fn typed_values() {
    let a = AudioLevel::parse(&[0x80 | 42]).unwrap();
    assert_eq!(
        a,
        AudioLevel {
            voice_activity: true,
            level: 42
        }
    );
    assert_eq!(
        AbsSendTime::parse(&[1, 2, 3]).unwrap(),
        AbsSendTime(0x010203)
    );
    assert_eq!(TransportSequenceNumber::parse(&[1, 2]).unwrap().0, 0x0102);
    assert!(TransportSequenceNumber::parse(&[1]).is_err());
    let v = VideoOrientation::parse(&[0x0d]).unwrap();
    assert!(v.back_camera && v.flip && v.rotation == Rotation::Deg90);
    assert_eq!(
        PlayoutDelay::parse(&[0x01, 0x20, 0x30]).unwrap(),
        PlayoutDelay {
            min: 0x012,
            max: 0x030
        }
    );
    assert_eq!(parse_rtp_stream_id(b"hi-1_x"), Ok("hi-1_x"));
    assert_eq!(parse_rtp_stream_id(b"a b"), Err(ExtError::BadIdentifier));
    assert_eq!(parse_rtp_stream_id(b""), Err(ExtError::BadIdentifier));
    assert_eq!(parse_mid(b"0"), Ok("0"));
    assert_eq!(parse_mid(&[0xc3, 0xa9]), Err(ExtError::BadIdentifier));
}

#[test]
fn rewrite_transport_seq_in_place() {
    let mut block = [0u8; 16];
    let mut w = ExtensionsWriter::new(ExtForm::OneByte, &mut block);
    w.push(
        1,
        &AudioLevel {
            voice_activity: false,
            level: 3,
        }
        .to_bytes(),
    )
    .unwrap();
    w.push(3, &TransportSequenceNumber(7).to_bytes()).unwrap();
    let out = w.finish().unwrap();
    assert_eq!(out.len, 8);
    let mut pkt = vec![0x90, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    pkt.extend_from_slice(&out.profile.to_be_bytes());
    pkt.extend_from_slice(&out.length_words().to_be_bytes());
    pkt.extend_from_slice(&block[..out.len]);
    pkt.extend_from_slice(&[9, 9]);
    rewrite_in_place(&mut pkt, 3, &TransportSequenceNumber(0xbeef).to_bytes()).unwrap();
    let h = crate::rtp::RtpHeader::parse(&pkt).unwrap();
    let e = Extensions::parse(h.extension_profile().unwrap(), h.extension_block()).unwrap();
    assert_eq!(
        TransportSequenceNumber::parse(e.get(3).unwrap()).unwrap().0,
        0xbeef
    );
    assert_eq!(h.payload(), &[9, 9]);
    assert_eq!(
        rewrite_in_place(&mut pkt, 4, &[0, 0]),
        Err(ExtError::NotPresent(4))
    );
    assert!(matches!(
        rewrite_in_place(&mut pkt, 3, &[0]),
        Err(ExtError::WrongSize { .. })
    ));
}

fn elements(two_byte: bool) -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    let (ids, max) = if two_byte {
        (1u8..=255, 255)
    } else {
        (1u8..=14, 16)
    };
    let min = usize::from(!two_byte);
    proptest::collection::vec(
        (ids, proptest::collection::vec(any::<u8>(), min..=max)),
        0..6,
    )
}

proptest! {
    #[test]
    fn parse_never_panics(profile in prop_oneof![Just(0xBEDEu16), 0x1000u16..0x1010, any::<u16>()],
                          block in proptest::collection::vec(any::<u8>(), 0..64), id: u8) {
        if let Ok(e) = Extensions::parse(profile, &block) {
            let _ = e.iter().count();
            let _ = e.get(id);
        }
    }

    #[test]
    fn write_then_parse(two in any::<bool>(), els in elements(false), els2 in elements(true)) {
        let (form, els) = if two { (ExtForm::TwoByte { appbits: 5 }, els2) } else { (ExtForm::OneByte, els) };
        let mut buf = [0u8; 2048];
        let mut w = ExtensionsWriter::new(form, &mut buf);
        for (id, v) in &els {
            w.push(*id, v).unwrap();
        }
        let out = w.finish().unwrap();
        prop_assert_eq!(out.len % 4, 0);
        let e = Extensions::parse(out.profile, &buf[..out.len]).unwrap();
        let got: Vec<(u8, Vec<u8>)> = e.iter().map(|(i, v)| (i, v.to_vec())).collect();
        prop_assert_eq!(got, els);
    }

    #[test]
    fn typed_roundtrip(v: bool, level in 0u8..128, ast in 0u32..(1 << 24), seq: u16,
                       c: bool, f: bool, r in 0u8..4, min in 0u16..4096, max in 0u16..4096) {
        let a = AudioLevel { voice_activity: v, level };
        prop_assert_eq!(AudioLevel::parse(&a.to_bytes()), Ok(a));
        prop_assert_eq!(AbsSendTime::parse(&AbsSendTime(ast).to_bytes()), Ok(AbsSendTime(ast)));
        let t = TransportSequenceNumber(seq);
        prop_assert_eq!(TransportSequenceNumber::parse(&t.to_bytes()), Ok(t));
        let rotation = [Rotation::Deg0, Rotation::Deg90, Rotation::Deg180, Rotation::Deg270][usize::from(r)];
        let o = VideoOrientation { back_camera: c, flip: f, rotation };
        prop_assert_eq!(VideoOrientation::parse(&o.to_bytes()), Ok(o));
        let p = PlayoutDelay { min, max };
        prop_assert_eq!(PlayoutDelay::parse(&p.to_bytes()), Ok(p));
    }
}

#[test]
fn from_header() {
    let no_ext = [0x80, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    let h = crate::rtp::RtpHeader::parse(&no_ext).unwrap();
    assert_eq!(Extensions::from_header(&h).unwrap().iter().count(), 0);
    let with = [
        0x90, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 1, 0x20, 0x05, 0, 0,
    ];
    let h = crate::rtp::RtpHeader::parse(&with).unwrap();
    assert_eq!(Extensions::from_header(&h).unwrap().get(2), Some(&[5][..]));
}
