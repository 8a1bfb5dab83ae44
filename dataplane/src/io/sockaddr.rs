//! `SocketAddr` to and from the C socket address structures.
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Writes `addr` into `out`; returns the length to pass as `msg_namelen`.
pub(crate) fn write(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            sin.sin_zero = [0; 8];
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads a socket address from the raw bytes the kernel wrote (any
/// alignment); `None` for families other than IPv4 and IPv6 or short input.
pub(crate) fn read(raw: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*raw.first()?, *raw.get(1)?]);
    if i32::from(family) == libc::AF_INET && raw.len() >= size_of::<libc::sockaddr_in>() {
        let port = u16::from_be_bytes([raw[2], raw[3]]);
        let ip = Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]);
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    } else if i32::from(family) == libc::AF_INET6 && raw.len() >= size_of::<libc::sockaddr_in6>() {
        let port = u16::from_be_bytes([raw[2], raw[3]]);
        let flowinfo = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&raw[8..24]);
        let scope = u32::from_ne_bytes([raw[24], raw[25], raw[26], raw[27]]);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(octets),
            port,
            flowinfo,
            scope,
        )))
    } else {
        None
    }
}

/// Reads the address of `storage` filled in by the kernel with length `len`.
pub(crate) fn read_storage(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = (len as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: storage is a live value of at least `len` bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts((storage as *const libc::sockaddr_storage).cast::<u8>(), len)
    };
    read(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for addr in ["127.0.0.1:4000", "[::1]:5000", "[fe80::1%2]:6000"] {
            let a: SocketAddr = addr.parse().unwrap();
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let len = write(a, &mut st);
            assert_eq!(read_storage(&st, len), Some(a));
        }
    }
}
