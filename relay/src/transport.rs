//! QUIC configuration of a relay endpoint (quinn with rustls and ring).
//!
//! Certificates are self-signed and not checked by the TLS layer: the
//! servers authenticate each other in the hello by the cluster secret,
//! bound to the TLS session (see [`crate::auth`]). TLS still gives the
//! connection its confidentiality and integrity.
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::RelayError;

/// ALPN of the relay protocol.
pub const ALPN: &[u8] = b"weir-relay/1";
/// Server name used in the TLS handshake (not checked, see module docs).
pub(crate) const SERVER_NAME: &str = "weir-relay";

/// QUIC settings that matter for the relay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuicSettings {
    pub(crate) keep_alive: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) initial_mtu: u16,
    pub(crate) max_udp_payload: u16,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport(s: QuicSettings) -> Result<Arc<quinn::TransportConfig>, RelayError> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(s.keep_alive));
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(s.idle_timeout)
            .map_err(|_| RelayError::Config("idle timeout too large".into()))?,
    ));
    // Large enough for a 1200-byte RTP packet and its relay header from
    // the first datagram on; path MTU discovery may raise it later.
    t.initial_mtu(s.initial_mtu);
    // Black-hole detection falls back to `min_mtu`: left at quinn's 1200,
    // a burst of congestion loss would shrink datagrams below what a
    // 1200-byte RTP packet needs (seen in the throughput example). The
    // relay declares the size it needs as the path's minimum instead.
    t.min_mtu(s.initial_mtu);
    // Discovery climbs to the largest payload we take (and the peer's
    // transport parameter allows), so datagrams can carry bundles.
    let mut mtud = quinn::MtuDiscoveryConfig::default();
    mtud.upper_bound(s.max_udp_payload);
    t.mtu_discovery_config(Some(mtud));
    // quinn hands the kernel GSO batches of up to 10 datagrams without
    // capping their total at UDP's 65,507 bytes (quinn-rs/quinn#2201): a
    // larger datagram size makes whole batches fail with EMSGSIZE, lost
    // silently. Past that size, one datagram per system call instead.
    if s.max_udp_payload > GSO_SAFE_UDP_PAYLOAD {
        t.enable_segmentation_offload(false);
    }
    // A few hundred milliseconds of video at high rates: the relay drops
    // the oldest datagrams beyond it rather than queue latency.
    t.datagram_receive_buffer_size(Some(4 << 20));
    t.datagram_send_buffer_size(4 << 20);
    Ok(Arc::new(t))
}

/// The endpoint-wide QUIC settings: the largest UDP payload taken, which
/// peers learn as a transport parameter and bound their discovery by.
pub(crate) fn endpoint_config(s: QuicSettings) -> Result<quinn::EndpointConfig, RelayError> {
    if s.max_udp_payload < s.initial_mtu {
        return Err(RelayError::Config(format!(
            "max_udp_payload {} below initial_mtu {}",
            s.max_udp_payload, s.initial_mtu
        )));
    }
    let mut e = quinn::EndpointConfig::default();
    e.max_udp_payload_size(s.max_udp_payload)
        .map_err(|e| RelayError::Config(format!("max_udp_payload: {e}")))?;
    Ok(e)
}

/// The largest UDP payload that keeps quinn's GSO batches (10 datagrams)
/// within one UDP send (65,507 bytes).
pub(crate) const GSO_SAFE_UDP_PAYLOAD: u16 = 6_500;

/// Socket buffers asked for: a burst of 1200-byte datagrams (a keyframe
/// of many tracks at once) must not overflow the kernel's default ~200 KB.
/// The kernel caps it at `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER: usize = 4 << 20;

/// The endpoint's UDP socket, with large buffers.
pub(crate) fn bind_socket(addr: std::net::SocketAddr) -> Result<std::net::UdpSocket, RelayError> {
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|e| RelayError::Io(format!("bind {addr}: {e}")))?;
    let s = socket2::SockRef::from(&socket);
    // Best effort: a smaller buffer still works, with more loss in bursts.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    Ok(socket)
}

/// The endpoint's server side: a fresh self-signed certificate.
pub(crate) fn server_config(s: QuicSettings) -> Result<quinn::ServerConfig, RelayError> {
    let cert = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
        .map_err(|e| RelayError::Config(format!("certificate: {e}")))?;
    let der = CertificateDer::from(cert.cert);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| RelayError::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .map_err(|e| RelayError::Config(format!("TLS: {e}")))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(tls)
        .map_err(|e| RelayError::Config(format!("QUIC TLS: {e}")))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport(s)?);
    Ok(config)
}

/// The endpoint's client side.
pub(crate) fn client_config(s: QuicSettings) -> Result<quinn::ClientConfig, RelayError> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| RelayError::Config(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(HelloAuthenticates(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls)
        .map_err(|e| RelayError::Config(format!("QUIC TLS: {e}")))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport(s)?);
    Ok(config)
}

/// Accepts any server certificate: the hello proof authenticates the peer
/// (see the module docs). Handshake signatures are still checked, so the
/// peer holds the key of the certificate it showed.
#[derive(Debug)]
struct HelloAuthenticates(Arc<CryptoProvider>);

impl ServerCertVerifier for HelloAuthenticates {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
