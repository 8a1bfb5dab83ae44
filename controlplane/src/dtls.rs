//! DTLS 1.2 handshakes (RFC 5763/5764) over datagrams that the data
//! plane hands up, and SRTP key export.
//!
//! The data plane owns the UDP socket; the `dtls` crate wants a `Conn`. The
//! adapter [`ChannelConn`] reads records from a channel the transport's
//! event pump fills and writes by sending `SendDtls` commands to the core.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dtls::config::{ClientAuthType, Config, ExtendedMasterSecretType};
use dtls::conn::DTLSConn;
use dtls::crypto::Certificate;
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Mutex};
use weir_dataplane::srtp::{SrtpKeys, SrtpProfile};
use weir_dataplane::{CoreInput, SessionId};

use crate::dtls_backoff::FlightBackoff;
use crate::error::Error;

/// How long a handshake may take before the transport fails.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// The worker's DTLS certificate and its fingerprint for SDP.
pub(crate) struct DtlsIdentity {
    certificate: Certificate,
    /// `AB:CD:…` SHA-256 of the certificate, as SDP writes it.
    pub(crate) fingerprint: String,
}

impl DtlsIdentity {
    /// A fresh self-signed ECDSA P-256 certificate.
    pub(crate) fn generate() -> Result<Self, Error> {
        let certificate = Certificate::generate_self_signed(vec!["weir".to_owned()])
            .map_err(|e| Error::Dtls(e.to_string()))?;
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| Error::Dtls("generated certificate is empty".into()))?;
        let fingerprint = sha256_fingerprint(der.as_ref());
        Ok(Self {
            certificate,
            fingerprint,
        })
    }
}

/// `AB:CD:…` uppercase hex of the SHA-256 of `der`.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// A `webrtc_util::Conn` over the data plane's socket for one session.
pub(crate) struct ChannelConn {
    rx: Mutex<mpsc::UnboundedReceiver<Vec<u8>>>,
    send: Box<dyn Fn(CoreInput) -> bool + Send + Sync>,
    session: SessionId,
    local: SocketAddr,
    /// Spaces the handshake's resends out exponentially (the `dtls` crate
    /// resends every second, which a join storm turns into more load).
    backoff: std::sync::Mutex<FlightBackoff>,
}

impl ChannelConn {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Vec<u8>>,
        send: Box<dyn Fn(CoreInput) -> bool + Send + Sync>,
        session: SessionId,
        local: SocketAddr,
    ) -> Self {
        Self {
            rx: Mutex::new(rx),
            send,
            session,
            local,
            backoff: std::sync::Mutex::new(FlightBackoff::new()),
        }
    }
}

#[async_trait]
impl webrtc_util::Conn for ChannelConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(())
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        let mut rx = self.rx.lock().await;
        let data = rx
            .recv()
            .await
            .ok_or(webrtc_util::Error::ErrClosedListener)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        Ok((n, self.local))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        let admit = self
            .backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(std::time::Instant::now(), buf);
        if !admit {
            // Held back: to the handshake it is sent, as if lost on the way.
            return Ok(buf.len());
        }
        if (self.send)(CoreInput::SendDtls {
            id: self.session,
            data: buf.to_vec(),
        }) {
            Ok(buf.len())
        } else {
            Err(webrtc_util::Error::ErrClosedListener)
        }
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        self.send(buf).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.rx.lock().await.close();
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// The DTLS-SRTP configuration both roles use: the worker's certificate,
/// the peer's certificate checked against the SHA-256 `remote_fingerprint`
/// from its SDP (self-signed certificates have no chain to verify),
/// AEAD_AES_128_GCM preferred over AES128_CM_HMAC_SHA1_80.
fn srtp_config(certificate: &Certificate, remote_fingerprint: &[u8]) -> Config {
    let expected = remote_fingerprint.to_vec();
    Config {
        certificates: vec![certificate.clone()],
        srtp_protection_profiles: vec![
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        ],
        extended_master_secret: ExtendedMasterSecretType::Require,
        client_auth: ClientAuthType::RequireAnyClientCert,
        // Self-signed certificates have no chain to verify; the peer is
        // authenticated by the fingerprint its (signed) SDP carries.
        insecure_skip_verify: true,
        verify_peer_certificate: Some(Arc::new(move |certs: &[Vec<u8>], _| {
            let cert = certs.first().ok_or(dtls::Error::ErrNoCertificates)?;
            if Sha256::digest(cert).as_slice() == expected.as_slice() {
                Ok(())
            } else {
                Err(dtls::Error::Other(
                    "peer certificate does not match the SDP fingerprint".into(),
                ))
            }
        })),
        ..Config::default()
    }
}

/// Runs the handshake in the given role with the worker's certificate.
pub(crate) async fn handshake(
    identity: &DtlsIdentity,
    conn: Arc<ChannelConn>,
    remote_fingerprint: Vec<u8>,
    is_client: bool,
) -> Result<(DTLSConn, SrtpKeys), Error> {
    dtls_srtp_handshake(&identity.certificate, conn, &remote_fingerprint, is_client).await
}

/// A DTLS-SRTP handshake (RFC 5763/5764) over `conn` in either role: checks
/// the peer's certificate against the SHA-256 `remote_fingerprint` from its
/// SDP (self-signed certificates have no chain to verify), prefers
/// AEAD_AES_128_GCM over AES128_CM_HMAC_SHA1_80, and exports the SRTP keys
/// from this side's point of view. Public for client-role peers built from
/// Weir's pieces, such as the load generator.
pub async fn dtls_srtp_handshake(
    certificate: &Certificate,
    conn: Arc<dyn webrtc_util::Conn + Send + Sync>,
    remote_fingerprint: &[u8],
    is_client: bool,
) -> Result<(DTLSConn, SrtpKeys), Error> {
    let config = srtp_config(certificate, remote_fingerprint);
    let dtls = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        DTLSConn::new(conn, config, is_client, None),
    )
    .await
    .map_err(|_| Error::Dtls("handshake timed out".into()))?
    .map_err(|e| Error::Dtls(e.to_string()))?;
    let profile = match dtls.selected_srtpprotection_profile() {
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => SrtpProfile::AeadAes128Gcm,
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => SrtpProfile::Aes128CmHmacSha1_80,
        other => {
            return Err(Error::Dtls(format!(
                "peer chose unsupported SRTP profile {other:?}"
            )))
        }
    };
    let state = dtls.connection_state().await;
    let key_len = profile.key_len();
    let salt_len = profile.salt_len();
    let material = webrtc_util::KeyingMaterialExporter::export_keying_material(
        &state,
        "EXTRACTOR-dtls_srtp",
        &[],
        2 * (key_len + salt_len),
    )
    .await
    .map_err(|e| Error::Dtls(format!("SRTP key export: {e}")))?;
    // RFC 5764 §4.2: client key, server key, client salt, server salt.
    let (client_key, rest) = material.split_at(key_len);
    let (server_key, rest) = rest.split_at(key_len);
    let (client_salt, server_salt) = rest.split_at(salt_len);
    let (local, remote) = if is_client {
        ((client_key, client_salt), (server_key, server_salt))
    } else {
        ((server_key, server_salt), (client_key, client_salt))
    };
    let keys = SrtpKeys {
        profile,
        local_key: local.0.to_vec(),
        local_salt: local.1.to_vec(),
        remote_key: remote.0.to_vec(),
        remote_salt: remote.1.to_vec(),
    };
    Ok((dtls, keys))
}

/// The connection's state after the handshake, serialized (epochs, the
/// next record sequence number, randoms, master secret, cipher suite and
/// SRTP profile): what [`resume`] needs to carry on without a handshake.
pub(crate) async fn park_state(conn: &DTLSConn) -> Result<Vec<u8>, Error> {
    conn.connection_state()
        .await
        .marshal_binary()
        .await
        .map_err(|e| Error::Dtls(format!("serializing the DTLS state: {e}")))
}

/// A connection over `conn` that carries on from `state` (from
/// [`park_state`]) without a handshake: the `dtls` crate's resumption, used
/// here to bring back a connection that was dropped to save its memory.
pub(crate) async fn resume(
    identity: &DtlsIdentity,
    conn: Arc<ChannelConn>,
    remote_fingerprint: &[u8],
    is_client: bool,
    state: &[u8],
) -> Result<DTLSConn, Error> {
    let mut restored = dtls::state::State::default();
    restored
        .unmarshal_binary(state)
        .await
        .map_err(|e| Error::Dtls(format!("restoring the DTLS state: {e}")))?;
    let config = srtp_config(&identity.certificate, remote_fingerprint);
    DTLSConn::new(conn, config, is_client, Some(restored))
        .await
        .map_err(|e| Error::Dtls(format!("resuming DTLS: {e}")))
}
