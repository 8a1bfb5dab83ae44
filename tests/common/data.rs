//! webrtc-rs peers for data channel tests: one that opens channels and
//! publishes on them, and one that records every message of the channels
//! Weir opens toward it; and the steps that connect them to a router.

use super::peers::{answer_offer, set_local_gathered_pub, wait_connected, watch_state_pub};
use super::within;
use anyhow::{anyhow, ensure, Context, Result};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::info;
use webrtc::api::API;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::data_channel::RTCDataChannel;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use weir::{
    DataPublisher, DataSubscriber, PublishTransport, Router, SubscribeTransport, TransportConfig,
};

/// How long a channel may take to open or to be published.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// A message as a peer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub is_text: bool,
    pub data: Bytes,
}

/// The `i`-th test message: even ones text, odd ones binary; every 50th
/// binary one is 60 KiB (under webrtc-rs's 64 KiB receive buffer), the
/// others a few dozen bytes. Each starts with its index.
pub fn test_message(sender: &str, i: u32) -> Msg {
    if i % 2 == 0 {
        Msg {
            is_text: true,
            data: Bytes::from(format!("{i:06} text from {sender} ✓")),
        }
    } else {
        let len = if i % 50 == 1 { 60 * 1024 } else { 40 };
        let mut v = Vec::with_capacity(len);
        v.extend_from_slice(&i.to_be_bytes());
        v.extend((0..len - 4).map(|k| (k as u32).wrapping_mul(31).wrapping_add(i) as u8));
        Msg {
            is_text: false,
            data: Bytes::from(v),
        }
    }
}

/// Checks that `got` is exactly `0..n` of [`test_message`] from `sender`,
/// in order, with types preserved.
pub fn check_messages(got: &[Msg], sender: &str, n: u32, who: &str) -> Result<()> {
    if got.len() != n as usize {
        return Err(anyhow!(
            "{who}: got {} messages from {sender}, expected {n}",
            got.len()
        ));
    }
    for (i, m) in got.iter().enumerate() {
        let want = test_message(sender, i as u32);
        if *m != want {
            return Err(anyhow!(
                "{who}: message {i} from {sender} differs: got {} {} bytes, expected {} {} bytes",
                if m.is_text { "text" } else { "binary" },
                m.data.len(),
                if want.is_text { "text" } else { "binary" },
                want.data.len()
            ));
        }
    }
    Ok(())
}

/// A peer that publishes data channels.
pub struct DataPubPeer {
    pub label: &'static str,
    pub pc: Arc<RTCPeerConnection>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
}

impl DataPubPeer {
    pub async fn new(api: &API, label: &'static str) -> Result<Self> {
        let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);
        let state = watch_state_pub(&pc, label);
        Ok(Self { label, pc, state })
    }

    /// Creates a channel; returns it and a receiver that fires when it opens.
    pub async fn channel(
        &self,
        label: &str,
        init: Option<RTCDataChannelInit>,
    ) -> Result<(Arc<RTCDataChannel>, watch::Receiver<bool>)> {
        let dc = self.pc.create_data_channel(label, init).await?;
        let (tx, rx) = watch::channel(false);
        dc.on_open(Box::new(move || {
            let _ = tx.send(true);
            Box::pin(async {})
        }));
        Ok((dc, rx))
    }

    /// An offer with every channel created so far (gathered).
    pub async fn offer(&self) -> Result<String> {
        let offer = self.pc.create_offer(None).await?;
        set_local_gathered_pub(&self.pc, offer, self.label).await
    }

    pub async fn set_answer(&self, sdp: String) -> Result<()> {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(sdp)?)
            .await
            .with_context(|| format!("{}: set_remote_description(answer)", self.label))
    }

    pub async fn close(&self) {
        let _ = within(Duration::from_secs(5), "pc close", self.pc.close()).await;
    }
}

/// Waits until `open` says true.
pub async fn wait_open(open: &mut watch::Receiver<bool>, what: &str) -> Result<()> {
    within(Duration::from_secs(15), what, open.wait_for(|o| *o))
        .await?
        .map(|_| ())
        .map_err(|_| anyhow!("{what}: channel dropped"))
}

/// A channel Weir opened toward a [`DataSubPeer`], and what came on it.
pub struct ReceivedChannel {
    pub dc: Arc<RTCDataChannel>,
    pub messages: Arc<Mutex<Vec<Msg>>>,
    pub count: watch::Receiver<usize>,
    pub closed: watch::Receiver<bool>,
}

impl ReceivedChannel {
    pub fn snapshot(&self) -> Vec<Msg> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until `n` messages arrived.
    pub async fn wait_for(&mut self, n: usize, limit: Duration, who: &str) -> Result<()> {
        let r = within(
            limit,
            &format!("{who}: {n} messages"),
            self.count.wait_for(|c| *c >= n),
        )
        .await
        .map(|r| r.map(|_| ()));
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(anyhow!("{e}; got {}", self.snapshot().len())),
        }
    }

    /// Waits until the channel closed.
    pub async fn wait_closed(&mut self, limit: Duration, who: &str) -> Result<()> {
        within(
            limit,
            &format!("{who}: channel close"),
            self.closed.wait_for(|c| *c),
        )
        .await?
        .map(|_| ())
        .map_err(|_| anyhow!("{who}: close watch dropped"))
    }
}

/// A peer that answers Weir's subscribe offers and records the channels
/// Weir opens.
pub struct DataSubPeer {
    pub label: &'static str,
    pub pc: Arc<RTCPeerConnection>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    channels: mpsc::UnboundedReceiver<ReceivedChannel>,
}

impl DataSubPeer {
    pub async fn new(api: &API, label: &'static str) -> Result<Self> {
        let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);
        let state = watch_state_pub(&pc, label);
        let (tx, rx) = mpsc::unbounded_channel();
        pc.on_data_channel(Box::new(move |dc: Arc<RTCDataChannel>| {
            let tx = tx.clone();
            Box::pin(async move {
                info!(
                    peer = label,
                    label = dc.label(),
                    id = dc.id(),
                    "on_data_channel"
                );
                let messages = Arc::new(Mutex::new(Vec::new()));
                let (count_tx, count) = watch::channel(0usize);
                let (closed_tx, closed) = watch::channel(false);
                let m2 = messages.clone();
                dc.on_message(Box::new(move |msg| {
                    let n = {
                        let mut v = m2.lock().unwrap();
                        v.push(Msg {
                            is_text: msg.is_string,
                            data: msg.data,
                        });
                        v.len()
                    };
                    let _ = count_tx.send(n);
                    Box::pin(async {})
                }));
                dc.on_close(Box::new(move || {
                    let _ = closed_tx.send(true);
                    Box::pin(async {})
                }));
                let _ = tx.send(ReceivedChannel {
                    dc,
                    messages,
                    count,
                    closed,
                });
            })
        }));
        Ok(Self {
            label,
            pc,
            state,
            channels: rx,
        })
    }

    /// Applies Weir's offer and returns the answer (with candidates).
    pub async fn answer(&self, offer: &str) -> Result<String> {
        answer_offer(&self.pc, offer, self.label).await
    }

    /// The next channel Weir opened.
    pub async fn next_channel(&mut self, limit: Duration) -> Result<ReceivedChannel> {
        within(
            limit,
            &format!("{} on_data_channel", self.label),
            self.channels.recv(),
        )
        .await?
        .ok_or_else(|| anyhow!("{}: channel stream ended", self.label))
    }

    pub async fn close(&self) {
        let _ = within(Duration::from_secs(5), "pc close", self.pc.close()).await;
    }
}

/// A webrtc-rs peer with data channels, published through Weir.
pub struct DataPublished {
    pub peer: DataPubPeer,
    pub transport: PublishTransport,
    pub channels: Vec<(Arc<RTCDataChannel>, DataPublisher)>,
}

/// Opens the channels `specs` on a new peer, negotiates with Weir and
/// publishes each.
pub async fn publish_channels(
    router: &Router,
    api: &API,
    name: &'static str,
    specs: &[(&str, Option<RTCDataChannelInit>)],
) -> Result<DataPublished> {
    let mut peer = DataPubPeer::new(api, name).await?;
    let mut opened = Vec::new();
    for (label, init) in specs {
        opened.push(peer.channel(label, init.clone()).await?);
    }
    let transport = router.create_publish_transport(Default::default()).await?;
    let offer = peer.offer().await?;
    let answer = transport.get_answer(&offer).await.context("get_answer")?;
    ensure!(
        answer.contains("m=application 9 UDP/DTLS/SCTP webrtc-datachannel"),
        "the data channel m-section is accepted"
    );
    peer.set_answer(answer).await?;
    wait_connected(&mut peer.state, name).await?;
    let mut channels = Vec::new();
    for ((label, _), (dc, mut open)) in specs.iter().zip(opened) {
        wait_open(&mut open, &format!("{name}: channel {label} open")).await?;
        let publisher = within(OPEN_TIMEOUT, "data_publish", transport.data_publish(label))
            .await?
            .with_context(|| format!("data_publish({label})"))?;
        info!(id = %publisher.id(), label, "data published");
        channels.push((dc, publisher));
    }
    Ok(DataPublished {
        peer,
        transport,
        channels,
    })
}

/// A webrtc-rs peer subscribed through Weir to some data publishers.
pub struct DataSubscribed {
    pub peer: DataSubPeer,
    pub transport: SubscribeTransport,
    pub subscribers: Vec<DataSubscriber>,
    pub channels: Vec<ReceivedChannel>,
}

/// Subscribes a new peer to `publishers` with the default transport
/// configuration.
pub async fn subscribe_channels(
    router: &Router,
    api: &API,
    name: &'static str,
    publishers: &[&DataPublisher],
) -> Result<DataSubscribed> {
    subscribe_channels_with(router, api, name, publishers, TransportConfig::default()).await
}

/// Subscribes a new peer to `publishers`, one negotiation each; a relayed
/// channel is subscribed by the origin's publisher, whose id and label it
/// keeps.
pub async fn subscribe_channels_with(
    router: &Router,
    api: &API,
    name: &'static str,
    publishers: &[&DataPublisher],
    config: TransportConfig,
) -> Result<DataSubscribed> {
    let mut peer = DataSubPeer::new(api, name).await?;
    let transport = router.create_subscribe_transport(config).await?;
    let mut subscribers = Vec::new();
    let mut channels = Vec::new();
    for p in publishers {
        let (sub, offer) = transport
            .data_subscribe(p.id())
            .await
            .context("data_subscribe")?;
        ensure!(offer.contains("m=application 9 UDP/DTLS/SCTP webrtc-datachannel"));
        let answer = peer.answer(&offer).await?;
        transport.set_answer(&answer).await.context("set_answer")?;
        within(OPEN_TIMEOUT, "DataSubscriber::opened", sub.opened())
            .await?
            .context("opened")?;
        let ch = peer.next_channel(OPEN_TIMEOUT).await?;
        ensure!(
            ch.dc.label() == p.label(),
            "label {} != {}",
            ch.dc.label(),
            p.label()
        );
        // webrtc-rs leaves `id()` at 0 for channels the remote opened, so
        // the stream id is checked in the browser test only.
        subscribers.push(sub);
        channels.push(ch);
    }
    wait_connected(&mut peer.state, name).await?;
    Ok(DataSubscribed {
        peer,
        transport,
        subscribers,
        channels,
    })
}

/// Sends `range` of [`test_message`] from `sender` on `dc`, each with its
/// type (text or binary).
pub async fn send_all(
    dc: &RTCDataChannel,
    sender: &str,
    range: std::ops::Range<u32>,
) -> Result<()> {
    for i in range {
        let m = test_message(sender, i);
        if m.is_text {
            dc.send_text(String::from_utf8(m.data.to_vec())?).await?;
        } else {
            dc.send(&m.data).await?;
        }
    }
    Ok(())
}
