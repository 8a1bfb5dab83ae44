//! A data channel peer wired by hand from webrtc-rs's parts (ICE agent,
//! DTLS client, SCTP association, DCEP), so that a test can write raw bytes
//! into its DTLS connection: malformed SCTP after a normal channel opened.

use super::within;
use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use webrtc::data::data_channel::{Config as ChannelConfig, DataChannel};
use webrtc::dtls::config::{Config as DtlsConfig, ExtendedMasterSecretType};
use webrtc::dtls::conn::DTLSConn;
use webrtc::dtls::crypto::Certificate;
use webrtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use webrtc::ice::agent::agent_config::AgentConfig;
use webrtc::ice::agent::Agent;
use webrtc::ice::candidate::candidate_base::unmarshal_candidate;
use webrtc::ice::candidate::{Candidate, CandidateType};
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::peer_connection::certificate::RTCCertificate;
use webrtc::sctp::association::{Association, Config as SctpConfig};
use webrtc::util::Conn;

/// The hand-built peer, connected once [`RawPeer::connect`] returned.
pub struct RawPeer {
    agent: Arc<Agent>,
    certificate: Certificate,
    fingerprint: String,
    ufrag: String,
    pwd: String,
    pub dtls: Option<Arc<DTLSConn>>,
    pub association: Option<Arc<Association>>,
    _cancel: Option<mpsc::Sender<()>>,
}

fn random_string(n: usize) -> String {
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7) as u64;
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

impl RawPeer {
    /// A peer on 127.0.0.1 with its host candidates gathered.
    pub async fn new() -> Result<Self> {
        let certificate = Certificate::generate_self_signed(vec!["raw-peer".to_owned()])?;
        let rtc = RTCCertificate::from_existing(
            certificate.clone(),
            SystemTime::now() + Duration::from_secs(86_400),
        );
        let fingerprint = rtc
            .get_fingerprints()
            .into_iter()
            .find(|f| f.algorithm == "sha-256")
            .ok_or_else(|| anyhow!("no sha-256 fingerprint"))?
            .value;
        let ufrag = random_string(8);
        let pwd = random_string(24);
        let agent = Arc::new(
            Agent::new(AgentConfig {
                network_types: vec![NetworkType::Udp4],
                candidate_types: vec![CandidateType::Host],
                local_ufrag: ufrag.clone(),
                local_pwd: pwd.clone(),
                multicast_dns_mode: MulticastDnsMode::Disabled,
                include_loopback: true,
                ip_filter: Arc::new(Some(Box::new(|ip: IpAddr| ip.is_loopback()))),
                ..Default::default()
            })
            .await?,
        );
        let (done_tx, mut done_rx) = watch::channel(false);
        agent.on_candidate(Box::new(move |c| {
            if c.is_none() {
                let _ = done_tx.send(true);
            }
            Box::pin(async {})
        }));
        agent.gather_candidates()?;
        within(
            Duration::from_secs(10),
            "raw peer gathering",
            done_rx.wait_for(|d| *d),
        )
        .await?
        .map_err(|_| anyhow!("gathering watch dropped"))?;
        Ok(Self {
            agent,
            certificate,
            fingerprint,
            ufrag,
            pwd,
            dtls: None,
            association: None,
            _cancel: None,
        })
    }

    /// An offer with one data channel m-section; the peer will be the DTLS
    /// client.
    pub fn offer(&self) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\na=setup:active\r\n\
             a=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n",
            self.ufrag, self.pwd, self.fingerprint
        )
    }

    /// ICE to Weir's candidate, the DTLS handshake and the SCTP association.
    pub async fn connect(&mut self, answer: &str) -> Result<()> {
        let attr = |name: &str| {
            answer
                .lines()
                .find_map(|l| {
                    l.trim_end()
                        .strip_prefix(&format!("a={name}:"))
                        .map(str::to_owned)
                })
                .ok_or_else(|| anyhow!("the answer has no a={name}"))
        };
        let (ufrag, pwd, cand) = (attr("ice-ufrag")?, attr("ice-pwd")?, attr("candidate")?);
        let candidate: Arc<dyn Candidate + Send + Sync> = Arc::new(unmarshal_candidate(&cand)?);
        self.agent.add_remote_candidate(&candidate)?;
        let (cancel_tx, cancel_rx) = mpsc::channel(1);
        self._cancel = Some(cancel_tx);
        let ice: Arc<dyn Conn + Send + Sync> = within(
            Duration::from_secs(15),
            "raw peer ICE",
            self.agent.dial(cancel_rx, ufrag, pwd),
        )
        .await?
        .context("ICE dial")?;
        let config = DtlsConfig {
            certificates: vec![self.certificate.clone()],
            insecure_skip_verify: true,
            extended_master_secret: ExtendedMasterSecretType::Require,
            srtp_protection_profiles: vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ],
            ..Default::default()
        };
        let dtls = Arc::new(
            within(
                Duration::from_secs(15),
                "raw peer DTLS",
                DTLSConn::new(ice, config, true, None),
            )
            .await?
            .context("DTLS handshake")?,
        );
        let association = within(
            Duration::from_secs(15),
            "raw peer SCTP",
            Association::client(SctpConfig {
                net_conn: dtls.clone(),
                max_receive_buffer_size: 0,
                max_message_size: 0,
                mtu: 0,
                name: "raw-peer".into(),
                remote_port: 5000,
                local_port: 5000,
            }),
        )
        .await?
        .context("SCTP association")?;
        self.dtls = Some(dtls);
        self.association = Some(Arc::new(association));
        Ok(())
    }

    /// Opens a reliable ordered channel with DCEP on stream `id` (even: the
    /// DTLS client's).
    pub async fn open_channel(&self, id: u16, label: &str) -> Result<DataChannel> {
        let association = self
            .association
            .as_ref()
            .ok_or_else(|| anyhow!("not connected"))?;
        let config = ChannelConfig {
            label: label.to_owned(),
            ..Default::default()
        };
        Ok(DataChannel::dial(association, id, config).await?)
    }

    /// Writes `bytes` into the DTLS connection as if the SCTP stack sent them.
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        let dtls = self.dtls.as_ref().ok_or_else(|| anyhow!("not connected"))?;
        dtls.send(bytes).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(a) = &self.association {
            let _ = within(Duration::from_secs(2), "raw SCTP close", a.close()).await;
        }
        let _ = self.agent.close().await;
    }
}

/// An SCTP packet (ports 5000, any verification tag) whose one DATA chunk
/// claims 400 bytes but carries 20, with a correct CRC32c: it gets past the
/// checksum and must be caught by the chunk layout check.
pub fn overrunning_data_chunk() -> Bytes {
    let mut p = vec![0x13, 0x88, 0x13, 0x88, 0, 0, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&[0, 0x03, 0x01, 0x90]); // DATA, B|E, length 400
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 53]);
    p.extend_from_slice(&[0xAB; 20]);
    let sum = crc32c(&p);
    p[8..12].copy_from_slice(&sum.to_le_bytes());
    Bytes::from(p)
}

/// CRC32c (Castagnoli), bitwise; the checksum field must be zero.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
