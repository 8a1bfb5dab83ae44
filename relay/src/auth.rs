//! Mutual authentication of two servers by a shared cluster secret.
//!
//! TLS gives the connection confidentiality but, with self-signed
//! certificates and no CA, says nothing about who the peer is. Each side
//! therefore proves in its [`Hello`] that it knows the cluster secret:
//! `HMAC-SHA256(secret, "weir-relay v1" | role | exporter)`, where
//! `exporter` is keying material exported from this very TLS session
//! (RFC 5705). The proof is bound to the session, so it cannot be replayed
//! on another connection, and a man in the middle (who holds two different
//! sessions) cannot forward it; the role byte keeps a side's proof from
//! being reflected back as the other's.
use ring::hmac;

use crate::proto::control::{capabilities, Hello, PROOF_LEN};
use crate::proto::PROTOCOL_VERSION;

/// Label of the TLS exporter the proof is bound to.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-weir-relay";
/// Bytes of exported keying material.
pub const EXPORTER_LEN: usize = 32;

/// Which end of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The server that connected.
    Client,
    /// The server that accepted.
    Server,
}

/// Why a peer's hello was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// It speaks another protocol version.
    #[error("peer speaks relay protocol version {0}, this server {PROTOCOL_VERSION}")]
    Version(u16),
    /// Its proof does not verify: it does not know the cluster secret.
    #[error("peer {0:?} did not prove the cluster secret")]
    BadProof(String),
}

/// The cluster secret, ready to sign and check hellos.
#[derive(Clone)]
pub struct ClusterKey {
    key: hmac::Key,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// A key from the shared secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn message(role: Role, exporter: &[u8]) -> Vec<u8> {
        let mut m = b"weir-relay v1".to_vec();
        m.push(match role {
            Role::Client => b'c',
            Role::Server => b's',
        });
        m.extend_from_slice(exporter);
        m
    }

    /// Our hello for a session whose exported keying material is
    /// `exporter`.
    pub fn hello(&self, role: Role, server_id: &str, exporter: &[u8]) -> Hello {
        let tag = hmac::sign(&self.key, &Self::message(role, exporter));
        let mut proof = [0u8; PROOF_LEN];
        proof.copy_from_slice(tag.as_ref());
        Hello {
            version: PROTOCOL_VERSION,
            server_id: server_id.to_owned(),
            capabilities: capabilities::ALL,
            proof,
        }
    }

    /// Checks the peer's hello; `peer_role` is the role of the peer (the
    /// opposite of ours). Constant-time comparison of the proof.
    pub fn verify(&self, peer_role: Role, exporter: &[u8], hello: &Hello) -> Result<(), AuthError> {
        if hello.version != PROTOCOL_VERSION {
            return Err(AuthError::Version(hello.version));
        }
        hmac::verify(&self.key, &Self::message(peer_role, exporter), &hello.proof)
            .map_err(|_| AuthError::BadProof(hello.server_id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_only_with_the_same_secret_session_and_role() {
        let k = ClusterKey::new(b"cluster secret");
        let exporter = [7u8; EXPORTER_LEN];
        let hello = k.hello(Role::Client, "a", &exporter);
        assert_eq!(k.verify(Role::Client, &exporter, &hello), Ok(()));
        // Reflected as the other role.
        assert!(k.verify(Role::Server, &exporter, &hello).is_err());
        // Replayed on another session.
        assert!(k
            .verify(Role::Client, &[8u8; EXPORTER_LEN], &hello)
            .is_err());
        // Made with another secret.
        let other = ClusterKey::new(b"guess").hello(Role::Client, "a", &exporter);
        assert_eq!(
            k.verify(Role::Client, &exporter, &other),
            Err(AuthError::BadProof("a".into()))
        );
        let mut old = hello.clone();
        old.version = 0;
        assert_eq!(
            k.verify(Role::Client, &exporter, &old),
            Err(AuthError::Version(0))
        );
    }
}
