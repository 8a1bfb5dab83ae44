//! Redacting wrappers for logs: addresses and credentials are personal data.
use std::fmt;
use std::net::SocketAddr;

/// Logs an address with its host part masked (`127.0.x.x:50000`).
pub(crate) struct Addr(pub(crate) SocketAddr);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(a) => {
                let o = a.ip().octets();
                write!(f, "{}.{}.x.x:{}", o[0], o[1], a.port())
            }
            SocketAddr::V6(a) => write!(f, "[{:x}::x]:{}", a.ip().segments()[0], a.port()),
        }
    }
}
