//! The cluster's room directory in Redis (`--cluster-redis`).
//!
//! Keys:
//! * `weir:node:<id>` = the node's relay address, set with a TTL
//!   ([`NODE_TTL`]) and refreshed every [`HEARTBEAT`]: a dead server's key
//!   expires within the TTL.
//! * `weir:room:<room>` = the set of node ids hosting the room. A member
//!   whose node key expired is dead: readers skip it and remove it.
//! * channel `weir:rooms`: `<room> <node id> <relay address>` published when a node starts
//!   hosting a room, so the others connect at once instead of at their
//!   next heartbeat.
//!
//! Of two nodes sharing a room, the one with the smaller id connects: the
//! newcomer reads the room's set, the others hear the announcement, so
//! each pair is found from both ends and connected once.

use crate::cluster::Directory;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use weir::relay::RelayEndpoint;

/// How often a node refreshes its key and checks its rooms' members.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Lifetime of a node key without a heartbeat, in seconds.
const NODE_TTL: u64 = 3;
/// The announcement channel.
const CHANNEL: &str = "weir:rooms";

fn node_key(id: &str) -> String {
    format!("weir:node:{id}")
}

fn room_key(room: &str) -> String {
    format!("weir:room:{room}")
}

/// Reads `<room> <node id> <relay address>` from the announcement channel
/// (anyone with access to Redis may publish there, so it is checked). The
/// room name may hold spaces; node ids and addresses do not.
fn parse_announcement(text: &str) -> Result<(&str, &str, SocketAddr), String> {
    let mut parts = text.rsplitn(3, ' ');
    let (Some(addr), Some(node), Some(room)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not <room> <node> <addr>".into());
    };
    if room.is_empty() || node.is_empty() {
        return Err("empty room or node id".into());
    }
    let addr = addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
    Ok((room, node, addr))
}

enum Cmd {
    Opened(String),
    Closed(String),
}

/// A [`Directory`] in Redis.
pub(crate) struct RedisDirectory {
    cmds: mpsc::UnboundedSender<Cmd>,
}

impl RedisDirectory {
    /// Connects to Redis, registers this node and starts its heartbeat and
    /// its subscription to announcements.
    pub(crate) async fn start(
        url: &str,
        node_id: String,
        relay_addr: SocketAddr,
        relay: RelayEndpoint,
    ) -> Result<Self, crate::Error> {
        let err = |e: redis::RedisError| crate::Error::Config(format!("redis {url}: {e}"));
        let client = redis::Client::open(url).map_err(err)?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(err)?;
        heartbeat(&mut conn, &node_id, relay_addr)
            .await
            .map_err(err)?;
        let mut pubsub = client.get_async_pubsub().await.map_err(err)?;
        pubsub.subscribe(CHANNEL).await.map_err(err)?;
        let (cmds, rx) = mpsc::unbounded_channel();
        let node = Arc::new(Node {
            id: node_id,
            relay_addr,
            relay,
            rooms: Mutex::new(BTreeSet::new()),
            connecting: Mutex::new(HashSet::new()),
        });
        tokio::spawn(run(node.clone(), conn, rx));
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                let Ok(text) = msg.get_payload::<String>() else {
                    continue;
                };
                let (room, from, addr) = match parse_announcement(&text) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("cluster: ignoring announcement {text:?}: {e}");
                        continue;
                    }
                };
                if from != node.id && node.hosts(room) {
                    node.clone().want(from.to_owned(), addr);
                }
            }
            tracing::warn!("cluster: redis announcements ended");
        });
        Ok(Self { cmds })
    }
}

impl Directory for RedisDirectory {
    fn room_opened(&self, room: &str) {
        let _ = self.cmds.send(Cmd::Opened(room.to_owned()));
    }

    fn room_closed(&self, room: &str) {
        let _ = self.cmds.send(Cmd::Closed(room.to_owned()));
    }
}

struct Node {
    id: String,
    relay_addr: SocketAddr,
    relay: RelayEndpoint,
    /// Rooms hosted here.
    rooms: Mutex<BTreeSet<String>>,
    /// Peers a connection attempt is under way to.
    connecting: Mutex<HashSet<String>>,
}

impl Node {
    fn hosts(&self, room: &str) -> bool {
        self.rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(room)
    }

    /// Connects to `peer` at `addr` if this node is the one of the pair
    /// to, it is not connected yet and no attempt is under way.
    fn want(self: Arc<Self>, peer: String, addr: SocketAddr) {
        if self.id >= peer || self.relay.peers().iter().any(|p| p.server_id() == peer) {
            return;
        }
        if !self
            .connecting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer.clone())
        {
            return;
        }
        tokio::spawn(async move {
            match self.relay.connect(addr).await {
                Ok(p) => tracing::info!(peer = %p.server_id(), %addr, "cluster: connected"),
                Err(e) => tracing::info!(%peer, %addr, "cluster: cannot connect: {e}"),
            }
            self.connecting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&peer);
        });
    }
}

async fn heartbeat(
    conn: &mut MultiplexedConnection,
    id: &str,
    relay_addr: SocketAddr,
) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(node_key(id))
        .arg(relay_addr.to_string())
        .arg("EX")
        .arg(NODE_TTL)
        .query_async::<()>(conn)
        .await
}

/// Registers rooms as they open and close; every heartbeat, refreshes the
/// node key and connects to the live members of this node's rooms.
async fn run(
    node: Arc<Node>,
    mut conn: MultiplexedConnection,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        let result = tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Opened(room)) => {
                    node.rooms.lock().unwrap_or_else(|e| e.into_inner()).insert(room.clone());
                    opened(&node, &mut conn, &room).await
                }
                Some(Cmd::Closed(room)) => {
                    node.rooms.lock().unwrap_or_else(|e| e.into_inner()).remove(&room);
                    redis::cmd("SREM").arg(room_key(&room)).arg(&node.id).query_async::<()>(&mut conn).await
                }
                None => return,
            },
            _ = tick.tick() => check(&node, &mut conn).await,
        };
        if let Err(e) = result {
            tracing::warn!("cluster: redis: {e}");
        }
    }
}

async fn opened(
    node: &Arc<Node>,
    conn: &mut MultiplexedConnection,
    room: &str,
) -> redis::RedisResult<()> {
    redis::cmd("SADD")
        .arg(room_key(room))
        .arg(&node.id)
        .query_async::<()>(conn)
        .await?;
    redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(format!("{room} {} {}", node.id, node.relay_addr))
        .query_async::<()>(conn)
        .await?;
    connect_members(node, conn, room).await
}

/// Connects to the live members of `room`; removes the dead ones.
async fn connect_members(
    node: &Arc<Node>,
    conn: &mut MultiplexedConnection,
    room: &str,
) -> redis::RedisResult<()> {
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(room_key(room))
        .query_async(conn)
        .await?;
    for member in members {
        if member == node.id {
            continue;
        }
        let addr: Option<String> = redis::cmd("GET")
            .arg(node_key(&member))
            .query_async(conn)
            .await?;
        match addr.and_then(|a| a.parse::<SocketAddr>().ok()) {
            Some(addr) => node.clone().want(member, addr),
            None => {
                // Its node key expired: it is dead.
                tracing::info!(%room, node = %member, "cluster: dropping a dead node from the room");
                redis::cmd("SREM")
                    .arg(room_key(room))
                    .arg(&member)
                    .query_async::<()>(conn)
                    .await?;
            }
        }
    }
    Ok(())
}

async fn check(node: &Arc<Node>, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    heartbeat(conn, &node.id, node.relay_addr).await?;
    let rooms: Vec<String> = node
        .rooms
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    for room in rooms {
        // Re-add: an entry removed by a peer that saw our key expire
        // during a stall comes back.
        redis::cmd("SADD")
            .arg(room_key(&room))
            .arg(&node.id)
            .query_async::<()>(conn)
            .await?;
        connect_members(node, conn, &room).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn announcements() {
        let a: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(
            parse_announcement("room b 127.0.0.1:7000"),
            Ok(("room", "b", a))
        );
        assert_eq!(
            parse_announcement("a room with spaces b 127.0.0.1:7000"),
            Ok(("a room with spaces", "b", a))
        );
        for bad in [
            "",
            "room",
            "room b",
            " b 127.0.0.1:7000",
            "room b nope",
            "room  127.0.0.1:7000",
        ] {
            assert!(parse_announcement(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn announcements_round_trip(room in "[^ ]{1,8}( [^ ]{1,8}){0,2}", node in "[a-z0-9-]{1,12}", port in 1u16..) {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let text = format!("{room} {node} {addr}");
            prop_assert_eq!(parse_announcement(&text), Ok((room.as_str(), node.as_str(), addr)));
        }

        #[test]
        fn garbage_never_panics(text in ".{0,64}") {
            let _ = parse_announcement(&text);
        }
    }
}
