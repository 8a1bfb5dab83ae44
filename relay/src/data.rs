//! Data channels across the relay: the catalog of each server's own data
//! channels (`DataState` control messages), and one QUIC stream per pulled
//! channel (`proto::data`), so a reliable ordered channel stays reliable
//! and ordered across servers.
//!
//! Tasks: per connection, one loop accepting the streams the peer opens
//! (each a pull of one of our channels, served by its own task reading a
//! control-plane [`DataTap`]); per pulled channel, one task reading its
//! stream into a [`RemoteData`] of the local router.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use weir_controlplane::{
    DataChannelParams, DataMessage, DataPublisherId, DataPublisherInfo, DataTap, Reliability,
    RemoteDataSpec, Router, RouterId, TransportId, MAX_MESSAGE_SIZE,
};

use crate::counters::RelayCounters;
use crate::peer::PeerInner;
use crate::proto::control::ControlMessage;
use crate::proto::data::{DataChannelInfo, DataFrame, DataFrameReader, DataReliability};
use crate::RelayError;

/// How long a pull waits for the origin's answer.
const PULL_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages a served channel may queue between its publisher and the
/// relay stream. Past it a partially reliable channel drops (counted in
/// `data_dropped`) and a reliable one's relay ends, as for a local
/// subscriber that cannot keep up.
const TAP_CAPACITY: usize = 1024;

/// Largest frame body accepted: a message of the largest size Weir
/// forwards, or a control-like frame.
const MAX_FRAME_BODY: usize = MAX_MESSAGE_SIZE + 1024;

/// One data channel catalog per router: id and parameters.
pub(crate) type DataCatalog = HashMap<RouterId, BTreeMap<DataPublisherId, DataChannelInfo>>;

/// A peer's data channel opened or ended (or the peer went away: all of
/// its channels end). See [`crate::RelayEndpoint::data_catalog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataCatalogEvent {
    /// The peer's server id.
    pub peer: String,
    /// The router (room) at the peer.
    pub router: RouterId,
    /// The data publisher's id at the peer (the id it keeps once pulled).
    pub data: DataPublisherId,
    /// Its parameters while open; `None`: it ended.
    pub params: Option<DataChannelParams>,
}

pub(crate) fn info_of(p: &DataChannelParams) -> DataChannelInfo {
    DataChannelInfo {
        label: p.label.clone(),
        protocol: p.protocol.clone(),
        ordered: p.ordered,
        reliability: match p.reliability {
            Reliability::Reliable => DataReliability::Reliable,
            Reliability::MaxRetransmits(n) => DataReliability::MaxRetransmits(n),
            Reliability::MaxLifetime(ms) => DataReliability::MaxLifetime(ms),
        },
        priority: p.priority,
    }
}

pub(crate) fn params_of(i: &DataChannelInfo) -> DataChannelParams {
    DataChannelParams {
        label: i.label.clone(),
        protocol: i.protocol.clone(),
        ordered: i.ordered,
        reliability: match i.reliability {
            DataReliability::Reliable => Reliability::Reliable,
            DataReliability::MaxRetransmits(n) => Reliability::MaxRetransmits(n),
            DataReliability::MaxLifetime(ms) => Reliability::MaxLifetime(ms),
        },
        priority: i.priority,
    }
}

/// Is this channel published on this server (not pulled from a peer)?
pub(crate) fn is_local(info: &DataPublisherInfo) -> bool {
    !info.transport.0.starts_with("relay:")
}

pub(crate) fn state_message(
    router: &RouterId,
    data: &DataPublisherId,
    info: Option<DataChannelInfo>,
) -> ControlMessage {
    ControlMessage::DataState {
        router: router.to_string(),
        data: data.to_string(),
        info,
    }
}

/// The peer told of one of its data channels: remember it and tell the
/// application.
pub(crate) fn remote_state(
    peer: &PeerInner,
    catalog: &mut DataCatalog,
    events: &broadcast::Sender<DataCatalogEvent>,
    router: RouterId,
    data: DataPublisherId,
    info: Option<DataChannelInfo>,
) {
    let changed = match &info {
        Some(i) => {
            let set = catalog.entry(router.clone()).or_default();
            set.insert(data.clone(), i.clone()).as_ref() != Some(i)
        }
        None => {
            let set = catalog.entry(router.clone()).or_default();
            let was = set.remove(&data).is_some();
            if set.is_empty() {
                catalog.remove(&router);
            }
            was
        }
    };
    if changed {
        let _ = events.send(DataCatalogEvent {
            peer: peer.server_id().to_owned(),
            router,
            data,
            params: info.as_ref().map(params_of),
        });
    }
}

/// Accepts the streams the peer opens (each pulls one of our data
/// channels) until the connection ends.
pub(crate) async fn accept_streams(peer: Weak<PeerInner>, conn: quinn::Connection) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        let Some(p) = peer.upgrade() else { return };
        tokio::spawn(serve_data(p, send, recv));
    }
}

/// Reads frames until one is whole; `None` when the stream ended cleanly
/// before one.
async fn read_frame(
    recv: &mut quinn::RecvStream,
    reader: &mut DataFrameReader,
) -> Result<Option<DataFrame>, RelayError> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(f) = reader.poll() {
            return f.map(Some).map_err(RelayError::Protocol);
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => reader.push(&buf[..n]),
            Ok(None) if reader.pending() == 0 => return Ok(None),
            Ok(None) => return Err(RelayError::Closed("stream ended inside a frame".into())),
            Err(e) => return Err(RelayError::Closed(e.to_string())),
        }
    }
}

async fn write_frame(send: &mut quinn::SendStream, f: &DataFrame) -> Result<(), RelayError> {
    let mut out = Vec::new();
    f.encode(&mut out).map_err(RelayError::Protocol)?;
    send.write_all(&out)
        .await
        .map_err(|e| RelayError::Closed(e.to_string()))
}

/// Serves one pull of a local data channel: answers, then copies its
/// messages into the stream until the channel ends or the peer drops its
/// side.
async fn serve_data(
    peer: Arc<PeerInner>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let counters = peer.endpoint().counters.clone();
    let mut reader = DataFrameReader::new(MAX_FRAME_BODY);
    let first = tokio::time::timeout(PULL_TIMEOUT, read_frame(&mut recv, &mut reader)).await;
    let (router_id, data_id) = match first {
        Ok(Ok(Some(DataFrame::Subscribe { router, data }))) => {
            (RouterId(router), DataPublisherId(data))
        }
        Ok(Ok(None)) | Ok(Err(RelayError::Closed(_))) | Err(_) => return,
        Ok(Ok(Some(_))) | Ok(Err(_)) => {
            RelayCounters::inc(&counters.malformed);
            tracing::warn!(peer = %peer.server_id(), "relay: a data stream did not start with a subscribe");
            let _ = send.reset(1u32.into());
            return;
        }
    };
    let tap = match peer.endpoint().router(&router_id) {
        Some(router) => router
            .tap_data(&data_id, TAP_CAPACITY)
            .map_err(|e| e.to_string()),
        None => Err(format!("no router {router_id} here")),
    };
    let mut tap: DataTap = match tap {
        Ok(t) => t,
        Err(message) => {
            let _ = write_frame(&mut send, &DataFrame::Refuse { message }).await;
            let _ = send.finish();
            return;
        }
    };
    // Counted before the answer, so a puller that has it sees the gauge.
    RelayCounters::inc(&counters.live_served_data);
    if write_frame(&mut send, &DataFrame::Accept(info_of(&tap.info().params)))
        .await
        .is_err()
    {
        RelayCounters::dec(&counters.live_served_data);
        return;
    }
    tracing::debug!(peer = %peer.server_id(), data = %data_id, "relay: serving data channel");
    let mut scratch = [0u8; 64];
    let mut dropped_seen = 0;
    let reason = loop {
        tokio::select! {
            msg = tap.recv() => {
                let Some(msg) = msg else { break Some(tap.end_reason()) };
                let Ok(header) = DataFrame::message_header(msg.is_text, msg.data.len()) else {
                    continue;
                };
                // The header and the message itself (no copy) as two chunks.
                if send.write_all(&header).await.is_err()
                    || send.write_chunk(msg.data).await.is_err()
                {
                    break None;
                }
                RelayCounters::inc(&counters.data_messages_sent);
                let dropped = tap.dropped();
                counters
                    .data_dropped
                    .fetch_add(dropped - dropped_seen, std::sync::atomic::Ordering::Relaxed);
                dropped_seen = dropped;
            }
            // The puller sends nothing after its subscribe: the end of its
            // side (or a reset, or the connection's end) is its unsubscribe.
            r = recv.read(&mut scratch) => match r {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break None,
            },
        }
    };
    if let Some(reason) = reason {
        let _ = write_frame(&mut send, &DataFrame::Close { reason }).await;
        let _ = send.finish();
    }
    RelayCounters::dec(&counters.live_served_data);
}

/// A data channel pulled from a peer into a local router. Dropping it (or
/// [`PulledData::close`]) unsubscribes and ends the channel in the
/// router.
#[derive(Debug)]
pub struct PulledData {
    info: DataPublisherInfo,
    task: tokio::task::AbortHandle,
}

impl PulledData {
    /// The channel as the local router lists it.
    pub fn info(&self) -> &DataPublisherInfo {
        &self.info
    }

    /// Whether the relayed channel still runs (neither the origin nor the
    /// connection ended it).
    pub fn is_live(&self) -> bool {
        !self.task.is_finished()
    }

    /// Ends the pull.
    pub fn close(self) {}
}

impl Drop for PulledData {
    fn drop(&mut self) {
        // Dropping the task's streams ends the origin's serving task; its
        // `RemoteData` ends the channel in the router.
        self.task.abort();
    }
}

/// Opens a stream for `data` of the peer's router `remote_router` and adds
/// the channel to `into`.
pub(crate) async fn pull_data(
    peer: &Arc<PeerInner>,
    conn: &quinn::Connection,
    remote_router: &RouterId,
    data: &DataPublisherId,
    into: &Router,
) -> Result<PulledData, RelayError> {
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| RelayError::Closed(e.to_string()))?;
    write_frame(
        &mut send,
        &DataFrame::Subscribe {
            router: remote_router.to_string(),
            data: data.to_string(),
        },
    )
    .await?;
    let mut reader = DataFrameReader::new(MAX_FRAME_BODY);
    let answer = tokio::time::timeout(PULL_TIMEOUT, read_frame(&mut recv, &mut reader))
        .await
        .map_err(|_| RelayError::Timeout("data channel accept"))??;
    let info = match answer {
        Some(DataFrame::Accept(info)) => info,
        Some(DataFrame::Refuse { message }) => return Err(RelayError::UnknownTrack(message)),
        Some(_) => {
            return Err(RelayError::Protocol(crate::proto::ProtoError::Invalid(
                "data stream answer",
            )))
        }
        None => return Err(RelayError::Closed("the origin ended the stream".into())),
    };
    let remote = into
        .add_remote_data(RemoteDataSpec {
            id: data.clone(),
            params: params_of(&info),
            origin: TransportId(format!("relay:{}", peer.server_id())),
        })
        .map_err(|e| RelayError::Router(e.to_string()))?;
    let counters = peer.endpoint().counters.clone();
    let server_id = peer.server_id().to_owned();
    let published = remote.info().clone();
    RelayCounters::inc(&counters.live_pulled_data);
    let task = tokio::spawn(async move {
        // Keeps our side open: finishing it would read as an unsubscribe.
        let _send = send;
        let reason = loop {
            match read_frame(&mut recv, &mut reader).await {
                Ok(Some(DataFrame::Message { is_text, data })) => {
                    RelayCounters::inc(&counters.data_messages_received);
                    if !remote.push(DataMessage { data, is_text }) {
                        break "the channel closed here".to_owned();
                    }
                }
                Ok(Some(DataFrame::Close { reason })) => break format!("the origin: {reason}"),
                Ok(Some(_)) => {
                    RelayCounters::inc(&counters.malformed);
                    break "protocol violation on the data stream".to_owned();
                }
                Ok(None) => break "the origin ended the stream".to_owned(),
                Err(e) => break e.to_string(),
            }
        };
        tracing::debug!(peer = %server_id, data = %remote.info().id, "relay: pulled data channel ended: {reason}");
        remote.close(&reason);
    });
    // The gauge follows the task, whether it ends or is aborted.
    let guard_counters = peer.endpoint().counters.clone();
    let handle = task.abort_handle();
    tokio::spawn(async move {
        let _ = task.await;
        RelayCounters::dec(&guard_counters.live_pulled_data);
    });
    Ok(PulledData {
        info: published,
        task: handle,
    })
}
