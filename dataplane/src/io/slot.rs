//! One outgoing message: a destination and up to [`MAX_SEGMENTS`] datagrams
//! for it, sent as a single UDP GSO message (`UDP_SEGMENT`) when there are
//! several, with the `msghdr` that describes it.
//!
//! The kernel splits a GSO message into datagrams of `gso_size` bytes; only
//! the last may be shorter. So a slot takes datagrams of its first datagram's
//! size and closes after a shorter one.
use std::net::SocketAddr;

use crate::core::{Core, Transmit};

/// Most datagrams in one GSO message (the kernel's `UDP_MAX_SEGMENTS`).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO message: a UDP length field minus headers.
const MAX_GSO_BYTES: usize = 65_000;
/// `SOL_UDP` level and its `UDP_SEGMENT` option (linux/udp.h).
pub(crate) const SOL_UDP: libc::c_int = 17;
/// The `UDP_SEGMENT` socket option and control message type.
pub(crate) const UDP_SEGMENT: libc::c_int = 103;

/// One message being assembled or in flight. Lives in a boxed slice so the
/// pointers in `hdr` stay valid while the kernel uses them.
pub(crate) struct MsgSlot {
    pub(crate) hdr: libc::msghdr,
    name: libc::sockaddr_storage,
    iov: [libc::iovec; MAX_SEGMENTS],
    /// Room for one `cmsghdr` with a u16 (`CMSG_SPACE(2)` is 24 on 64-bit).
    cmsg: [u64; 4],
    /// The datagrams, owned until the kernel is done with their bytes.
    pub(crate) tx: Vec<Transmit>,
    seg: usize,
    bytes: usize,
    closed: bool,
}

impl MsgSlot {
    pub(crate) fn new() -> Self {
        Self {
            // SAFETY: all-zero is a valid msghdr, sockaddr_storage and iovec.
            hdr: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            name: unsafe { std::mem::zeroed() },
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_SEGMENTS],
            cmsg: [0; 4],
            tx: Vec::with_capacity(MAX_SEGMENTS),
            seg: 0,
            bytes: 0,
            closed: false,
        }
    }

    pub(crate) fn dest(&self) -> Option<SocketAddr> {
        self.tx.first().map(|t| t.dest)
    }

    /// Adds `t` if it can ride in this message; gives it back otherwise.
    pub(crate) fn try_push(&mut self, t: Transmit, max_segments: usize) -> Result<(), Transmit> {
        let len = t.data.len();
        if self.tx.is_empty() {
            self.seg = len;
            self.bytes = len;
            // A zero-length datagram cannot be a GSO segment size.
            self.closed = len == 0 || max_segments <= 1;
            self.tx.push(t);
            return Ok(());
        }
        if self.closed
            || self.tx.len() >= max_segments.min(MAX_SEGMENTS)
            || self.dest() != Some(t.dest)
            || len > self.seg
            || len == 0
            || self.bytes + len > MAX_GSO_BYTES
        {
            return Err(t);
        }
        self.closed = len < self.seg;
        self.bytes += len;
        self.tx.push(t);
        Ok(())
    }

    pub(crate) fn segments(&self) -> usize {
        self.tx.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Fills `hdr` so that it points at this slot's name, iovecs and (for
    /// several datagrams) the `UDP_SEGMENT` control message. `None` for an
    /// empty slot.
    pub(crate) fn prepare(&mut self) -> Option<&libc::msghdr> {
        let dest = self.dest()?;
        let namelen = super::sockaddr::write(dest, &mut self.name);
        for (iov, t) in self.iov.iter_mut().zip(&self.tx) {
            iov.iov_base = t.data.as_ptr() as *mut libc::c_void;
            iov.iov_len = t.data.len();
        }
        self.hdr.msg_name = (&mut self.name as *mut libc::sockaddr_storage).cast();
        self.hdr.msg_namelen = namelen;
        self.hdr.msg_iov = self.iov.as_mut_ptr();
        self.hdr.msg_iovlen = self.tx.len() as _;
        self.hdr.msg_flags = 0;
        if self.tx.len() > 1 {
            self.cmsg = [0; 4];
            self.hdr.msg_control = self.cmsg.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE is arithmetic.
            self.hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
            // SAFETY: msg_control points at 32 bytes, aligned for cmsghdr,
            // which hold CMSG_SPACE(2) bytes; CMSG_FIRSTHDR is then non-null.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&self.hdr);
                (*c).cmsg_level = SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                let seg = self.seg as u16;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
            }
        } else {
            self.hdr.msg_control = std::ptr::null_mut();
            self.hdr.msg_controllen = 0;
        }
        Some(&self.hdr)
    }

    /// Empties the slot, dropping its datagrams.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.tx.clear();
        self.reset();
    }

    /// Empties the slot, handing its datagrams' buffers back to the core
    /// for reuse (no allocation per datagram in steady state).
    pub(crate) fn recycle_into(&mut self, core: &mut Core) {
        for t in self.tx.drain(..) {
            core.recycle_transmit(t);
        }
        self.reset();
    }

    fn reset(&mut self) {
        self.seg = 0;
        self.bytes = 0;
        self.closed = false;
    }
}

/// Finds in O(1) the latest slot opened in this batch for a destination, so
/// a frame's packets to one subscriber share a GSO message however many
/// other subscribers' packets lie between them. Open addressing over slot
/// indices, stamped with a generation so that clearing costs nothing.
pub(crate) struct DestIndex {
    table: Box<[(u32, u16)]>,
    gen: u32,
}

impl DestIndex {
    /// An index for batches of at most `slots` open slots.
    pub(crate) fn new(slots: usize) -> Self {
        let size = (slots * 4).next_power_of_two().max(16);
        Self {
            table: vec![(0, 0); size].into_boxed_slice(),
            gen: 1,
        }
    }

    /// Forgets every entry (a new batch).
    pub(crate) fn clear(&mut self) {
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.table.fill((0, 0));
            self.gen = 1;
        }
    }

    fn start(&self, dest: SocketAddr) -> usize {
        let key = match dest {
            SocketAddr::V4(a) => (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port()),
            SocketAddr::V6(a) => {
                let o = a.ip().octets();
                let hi = u64::from_ne_bytes([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]);
                let lo = u64::from_ne_bytes([o[8], o[9], o[10], o[11], o[12], o[13], o[14], o[15]]);
                hi ^ lo.rotate_left(17) ^ u64::from(a.port())
            }
        };
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize & (self.table.len() - 1)
    }

    /// The latest slot opened for `dest` in this batch.
    pub(crate) fn get(&self, slots: &[MsgSlot], dest: SocketAddr) -> Option<u16> {
        let mask = self.table.len() - 1;
        let mut i = self.start(dest);
        loop {
            let (gen, slot) = self.table[i];
            if gen != self.gen {
                return None;
            }
            if slots[usize::from(slot)].dest() == Some(dest) {
                return Some(slot);
            }
            i = (i + 1) & mask;
        }
    }

    /// Records `slot` as the latest for `dest`. The table holds four entries
    /// per slot, so a free entry is always found.
    pub(crate) fn set(&mut self, slots: &[MsgSlot], dest: SocketAddr, slot: u16) {
        let mask = self.table.len() - 1;
        let mut i = self.start(dest);
        loop {
            let (gen, old) = self.table[i];
            if gen != self.gen || slots[usize::from(old)].dest() == Some(dest) {
                self.table[i] = (self.gen, slot);
                return;
            }
            i = (i + 1) & mask;
        }
    }
}

/// Puts `t` into the latest slot of this batch for its destination, or gives
/// it back when it needs a new slot. Only the latest slot of a destination
/// is tried, so its datagrams keep their order.
pub(crate) fn place(
    slots: &mut [MsgSlot],
    index: &DestIndex,
    t: Transmit,
    max_segments: usize,
) -> Result<(), Transmit> {
    if max_segments <= 1 {
        return Err(t);
    }
    match index.get(slots, t.dest) {
        Some(i) => slots[usize::from(i)].try_push(t, max_segments),
        None => Err(t),
    }
}

/// Whether a send error means "this kernel or device will not do GSO".
pub(crate) fn is_gso_refusal(err: i32) -> bool {
    err == libc::EIO || err == libc::EINVAL || err == libc::ENOPROTOOPT || err == libc::EOPNOTSUPP
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(port: u16, len: usize) -> Transmit {
        Transmit {
            dest: SocketAddr::from(([127, 0, 0, 1], port)),
            data: vec![0; len],
        }
    }

    #[test]
    fn groups_equal_sizes_and_closes_on_a_shorter_one() {
        let mut s = MsgSlot::new();
        assert!(s.try_push(t(1, 100), 64).is_ok());
        assert!(s.try_push(t(1, 100), 64).is_ok());
        assert!(s.try_push(t(2, 100), 64).is_err(), "other destination");
        assert!(
            s.try_push(t(1, 120), 64).is_err(),
            "longer than the segment size"
        );
        assert!(s.try_push(t(1, 50), 64).is_ok());
        assert!(
            s.try_push(t(1, 50), 64).is_err(),
            "closed after a short one"
        );
        assert_eq!(s.segments(), 3);
        assert_eq!(s.bytes(), 250);
        let hdr = s.prepare().unwrap();
        assert_eq!(hdr.msg_iovlen, 3);
        assert!(hdr.msg_controllen > 0);
    }

    #[test]
    fn without_gso_every_datagram_is_its_own_message() {
        let mut s = MsgSlot::new();
        assert!(s.try_push(t(1, 100), 1).is_ok());
        assert!(s.try_push(t(1, 100), 1).is_err());
        let hdr = s.prepare().unwrap();
        assert_eq!(hdr.msg_controllen, 0);
    }

    #[test]
    fn place_uses_only_the_latest_slot_of_a_destination() {
        let mut slots = vec![MsgSlot::new(), MsgSlot::new(), MsgSlot::new()];
        let mut index = DestIndex::new(slots.len());
        for (i, (port, len)) in [(1, 100), (2, 100), (1, 200)].into_iter().enumerate() {
            slots[i].try_push(t(port, len), 64).unwrap();
            index.set(&slots, t(port, 0).dest, i as u16);
        }
        // Fits slot 0 by size, but slot 2 is the latest for port 1.
        assert!(place(&mut slots, &index, t(1, 100), 64).is_ok());
        assert_eq!(slots[2].segments(), 2);
        assert_eq!(slots[0].segments(), 1);
        assert!(place(&mut slots, &index, t(2, 100), 64).is_ok());
        assert_eq!(slots[1].segments(), 2);
        assert!(
            place(&mut slots, &index, t(3, 100), 64).is_err(),
            "no slot for port 3"
        );
        index.clear();
        assert!(
            place(&mut slots, &index, t(1, 100), 64).is_err(),
            "a new batch"
        );
    }

    #[test]
    fn index_finds_many_destinations() {
        let n = 512;
        let mut slots: Vec<MsgSlot> = (0..n).map(|_| MsgSlot::new()).collect();
        let mut index = DestIndex::new(n);
        for round in 0..3 {
            index.clear();
            for (i, s) in slots.iter_mut().enumerate() {
                s.clear();
                s.try_push(t(1000 + i as u16 + round, 10), 64).unwrap();
            }
            for i in 0..n {
                index.set(&slots, t(1000 + i as u16 + round, 0).dest, i as u16);
            }
            for i in 0..n {
                assert_eq!(
                    index.get(&slots, t(1000 + i as u16 + round, 0).dest),
                    Some(i as u16)
                );
            }
        }
    }
}
