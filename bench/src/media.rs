//! A fake publisher: VP8-like frames of realistic sizes, SRTP-protected
//! with known keys, and the ICE check a client sends first.
use weir_dataplane::ice::stun::{write_binding_request, IceRoleAttr};
use weir_dataplane::ice::IceCredentials;
use weir_dataplane::srtp::{SrtpKeys, SrtpProfile, SrtpSession};

/// The published track's key.
pub const TRACK: u64 = 1;
/// The publisher's SSRC.
pub const PUB_SSRC: u32 = 0x1111_2222;
/// RTP payload type of the video.
pub const PT: u8 = 96;
/// RTP payload bytes of a full packet (the 1200-byte packets).
pub const PAYLOAD: usize = 1200;

/// A VP8 keyframe's first payload bytes: descriptor S=1, payload header P=0
/// and the keyframe start code.
const VP8_KEY: &[u8] = &[
    0x10, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
];
/// A VP8 interframe's first payload bytes (P=1).
const VP8_DELTA: &[u8] = &[0x10, 0x51, 0x02, 0x00];

/// Server-side and client-side SRTP keys of one session, derived from `seed`.
pub fn keys(seed: u8, profile: SrtpProfile) -> (SrtpKeys, SrtpKeys) {
    let k = |b: u8| vec![b; profile.key_len()];
    let s = |b: u8| vec![b; profile.salt_len()];
    let a = seed.wrapping_mul(4);
    let server = SrtpKeys {
        profile,
        local_key: k(a),
        local_salt: s(a.wrapping_add(1)),
        remote_key: k(a.wrapping_add(2)),
        remote_salt: s(a.wrapping_add(3)),
    };
    let client = SrtpKeys {
        profile,
        local_key: k(a.wrapping_add(2)),
        local_salt: s(a.wrapping_add(3)),
        remote_key: k(a),
        remote_salt: s(a.wrapping_add(1)),
    };
    (server, client)
}

/// A STUN Binding request (controlling, USE-CANDIDATE) for a session with
/// the server credentials `server`.
pub fn binding_request(server: &IceCredentials, tid: [u8; 12]) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let username = format!("{}:bench", server.ufrag());
    let n = write_binding_request(
        &mut buf,
        tid,
        &username,
        1,
        true,
        IceRoleAttr::Controlling(1),
        server.pwd().as_bytes(),
    )
    .expect("a binding request fits 512 bytes");
    buf[..n].to_vec()
}

/// Packets of a VP8 stream at 30 frames/s: a 30-packet keyframe every 60
/// frames, 3 to 8 packets per interframe; every packet of a frame carries
/// [`PAYLOAD`] bytes but the last, which carries 700.
pub struct Vp8Source {
    srtp: SrtpSession,
    seq: u16,
    ts: u32,
    frame: u64,
    left_in_frame: usize,
    first_in_frame: bool,
    plain: Vec<u8>,
}

impl Vp8Source {
    /// A source that protects its packets with the client side of `keys`.
    pub fn new(client_keys: &SrtpKeys) -> Self {
        Self {
            srtp: SrtpSession::new(client_keys).expect("valid keys"),
            seq: 1,
            ts: 0,
            frame: 0,
            left_in_frame: 0,
            first_in_frame: true,
            plain: Vec::with_capacity(1500),
        }
    }

    fn frame_len(frame: u64) -> usize {
        if frame % 60 == 0 {
            30
        } else {
            3 + (frame % 6) as usize
        }
    }

    /// Writes the next SRTP packet into `out`.
    pub fn next_packet(&mut self, out: &mut Vec<u8>) {
        if self.left_in_frame == 0 {
            self.left_in_frame = Self::frame_len(self.frame);
            self.first_in_frame = true;
        }
        let keyframe = self.frame % 60 == 0;
        let last = self.left_in_frame == 1;
        self.plain.clear();
        self.plain.push(0x80);
        self.plain.push(if last { 0x80 | PT } else { PT });
        self.plain.extend_from_slice(&self.seq.to_be_bytes());
        self.plain.extend_from_slice(&self.ts.to_be_bytes());
        self.plain.extend_from_slice(&PUB_SSRC.to_be_bytes());
        let head: &[u8] = match (self.first_in_frame, keyframe) {
            (true, true) => VP8_KEY,
            (true, false) => VP8_DELTA,
            (false, _) => &[0x00],
        };
        self.plain.extend_from_slice(head);
        let len = if last { 700 } else { PAYLOAD };
        self.plain.resize(12 + len, 0x5a);
        self.srtp
            .encrypt_rtp(&self.plain, out)
            .expect("SRTP protect");
        self.seq = self.seq.wrapping_add(1);
        self.first_in_frame = false;
        self.left_in_frame -= 1;
        if self.left_in_frame == 0 {
            self.frame += 1;
            self.ts = self.ts.wrapping_add(3000);
        }
    }
}
