//! Per-packet parse cost on the receive path: RTP header, header extensions and the
//! VP8 payload descriptor, as a forwarder does for every published video packet.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use weir_codecs::extensions::{
    parse_mid, AbsSendTime, ExtForm, Extensions, ExtensionsWriter, TransportSequenceNumber,
};
use weir_codecs::{facts, Codec, DependencyDescriptor, RtpHeader, Vp8Descriptor, Vp8Patch};

/// A Chrome-like VP8 packet: mid, abs-send-time and transport-wide seq in a one-byte
/// extension block, a full VP8 descriptor, 1000 bytes of payload.
fn packet() -> Vec<u8> {
    let mut block = [0u8; 32];
    let mut w = ExtensionsWriter::new(ExtForm::OneByte, &mut block);
    w.push(4, b"1").unwrap();
    w.push(2, &AbsSendTime(0x123456).to_bytes()).unwrap();
    w.push(3, &TransportSequenceNumber(4242).to_bytes())
        .unwrap();
    let out = w.finish().unwrap();
    let mut p = vec![0x90, 96, 0x12, 0x34, 0, 0, 0x10, 0, 0xca, 0xfe, 0xba, 0xbe];
    p.extend_from_slice(&out.profile.to_be_bytes());
    p.extend_from_slice(&out.length_words().to_be_bytes());
    p.extend_from_slice(&block[..out.len]);
    p.extend_from_slice(&[0x90, 0xe0, 0x92, 0x34, 0x05, 0x40, 0x01]);
    p.resize(p.len() + 1000, 0xab);
    p
}

fn bench(c: &mut Criterion) {
    let p = packet();
    let mut g = c.benchmark_group("per_packet");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rtp_header", |b| {
        b.iter(|| RtpHeader::parse(black_box(&p)).unwrap().ssrc())
    });
    g.bench_function("rtp+extensions+vp8", |b| {
        b.iter(|| {
            let h = RtpHeader::parse(black_box(&p)).unwrap();
            let e = Extensions::parse(h.extension_profile().unwrap_or(0xBEDE), h.extension_block())
                .unwrap();
            let mid = e.get(4).map(parse_mid);
            let ast = e.get(2).map(AbsSendTime::parse);
            let seq = e.get(3).map(TransportSequenceNumber::parse);
            let d = Vp8Descriptor::parse(h.payload()).unwrap();
            black_box((mid, ast, seq, d))
        })
    });
    g.bench_function("rtp+facts_vp8", |b| {
        b.iter(|| {
            let h = RtpHeader::parse(black_box(&p)).unwrap();
            facts(Codec::Vp8, h.payload(), None).unwrap()
        })
    });
    g.bench_function("rtp+extensions_one_pass+vp8", |b| {
        b.iter(|| {
            let h = RtpHeader::parse(black_box(&p)).unwrap();
            let e = Extensions::parse(h.extension_profile().unwrap_or(0xBEDE), h.extension_block())
                .unwrap();
            let (mut mid, mut ast, mut seq) = (None, None, None);
            for (id, v) in e.iter() {
                match id {
                    4 => mid = Some(parse_mid(v)),
                    2 => ast = Some(AbsSendTime::parse(v)),
                    3 => seq = Some(TransportSequenceNumber::parse(v)),
                    _ => {}
                }
            }
            let d = Vp8Descriptor::parse(h.payload()).unwrap();
            black_box((mid, ast, seq, d))
        })
    });
    let mut out = p.clone();
    let payload_at = RtpHeader::parse(&p).unwrap().header_len();
    g.bench_function("vp8_patch", |b| {
        let patch = Vp8Patch {
            picture_id: Some(77),
            tl0_pic_idx: Some(3),
        };
        b.iter(|| patch.apply(black_box(&mut out[payload_at..])).unwrap())
    });
    let mut cache = None;
    DependencyDescriptor::parse_with_cache(&DD_KEY, &mut cache).unwrap();
    let structure = cache.unwrap();
    g.bench_function("dependency_descriptor_cached", |b| {
        b.iter(|| {
            DependencyDescriptor::parse(black_box(&[0xc2, 0x00, 0x02]), Some(&structure)).unwrap()
        })
    });
    g.bench_function("dependency_descriptor_with_structure", |b| {
        b.iter(|| DependencyDescriptor::parse(black_box(&DD_KEY), None).unwrap())
    });
    g.finish();
}

/// An L1T2 key-frame descriptor carrying its template structure.
const DD_KEY: [u8; 15] = [
    0xc0, 0x00, 0x01, 0x80, 0x01, 0x1e, 0xa8, 0x51, 0x41, 0x01, 0x0c, 0x09, 0xfc, 0x05, 0x9c,
];

criterion_group!(benches, bench);
criterion_main!(benches);
