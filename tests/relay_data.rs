//! DataChannels across two Weir servers in one process, relayed over QUIC
//! on 127.0.0.1: a webrtc-rs client publishes channels on server A, a
//! webrtc-rs client subscribes to them on server B.
//!
//! Checked: B learns A's channels with their parameters from the catalog;
//! 1,000 text and binary messages (some 60 KiB) arrive on B in order with
//! their types; a partially reliable, unordered channel keeps its
//! parameters; a channel closing on A closes B's subscriber; a lost
//! connection ends B's relayed channels with nothing left behind.
//!
//! Run with `RUST_LOG=info,weir_relay=debug cargo test --test relay_data -- --nocapture`
//! for logs.

mod common;

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::data::{check_messages, publish_channels, send_all, subscribe_channels};
use common::peers::new_api;
use common::relay::{counter, relay_server, RelayServer as Server};
use common::{run, until, within};
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use weir::relay::RelayConfig;
use weir::{DataPublisherId, Reliability, RouterEvent};

const SDK_TIMEOUT: Duration = Duration::from_secs(10);
const MESSAGES_TIMEOUT: Duration = Duration::from_secs(60);
const TEST_LIMIT: Duration = Duration::from_secs(150);
const MESSAGES: u32 = 1000;
const SECRET: &[u8] = b"relay test cluster secret";

/// One "server": a worker with one router, and a relay endpoint.
async fn server(id: &str) -> Result<Server> {
    relay_server(RelayConfig::new(id, SECRET.to_vec())).await
}

#[test]
fn a_data_channel_published_on_a_reaches_subscribers_on_b_in_order() {
    run("relay data channels", TEST_LIMIT, || async {
        let api = new_api()?;
        let a = server("a").await?;
        let b = server("b").await?;
        let telemetry_init = RTCDataChannelInit {
            ordered: Some(false),
            max_retransmits: Some(0),
            protocol: Some("telemetry-v1".into()),
            ..Default::default()
        };
        let alice = publish_channels(
            &a.router,
            &api,
            "alice-on-a",
            &[("chat", None), ("telemetry", Some(telemetry_init))],
        )
        .await?;
        let chat = alice.channels[0].1.clone();
        let telemetry = alice.channels[1].1.clone();

        // The catalog: B learns both channels with their parameters.
        let mut catalog = b.relay.data_catalog();
        let peer = within(
            SDK_TIMEOUT,
            "relay connect",
            b.relay.connect(a.relay.local_addr()?),
        )
        .await??;
        let mut heard = Vec::new();
        within(SDK_TIMEOUT, "data catalog snapshot", async {
            while heard.len() < 2 {
                let ev = catalog.recv().await?;
                ensure!(ev.peer == "a" && ev.router == *a.router.id(), "{ev:?}");
                heard.push((ev.data, ev.params.context("a live channel")?));
            }
            Ok::<_, anyhow::Error>(())
        })
        .await??;
        heard.sort_by(|x, y| x.0.cmp(&y.0));
        let mut listed = peer.remote_data(a.router.id());
        listed.sort_by(|x, y| x.0.cmp(&y.0));
        ensure!(
            heard == listed,
            "catalog {heard:?} != remote_data {listed:?}"
        );
        for d in [&chat, &telemetry] {
            let p = listed
                .iter()
                .find(|(id, _)| id == d.id())
                .map(|(_, p)| p)
                .with_context(|| format!("{} not in the catalog", d.id()))?;
            ensure!(*p == d.info().params, "{p:?} != {:?}", d.info().params);
        }

        // Pull both into B: listed there, same id and parameters.
        let mut b_events = b.router.events();
        let pulled_chat = within(
            SDK_TIMEOUT,
            "pull chat",
            peer.pull_data(a.router.id(), chat.id(), &b.router),
        )
        .await??;
        let pulled_tele = within(
            SDK_TIMEOUT,
            "pull telemetry",
            peer.pull_data(a.router.id(), telemetry.id(), &b.router),
        )
        .await??;
        match within(SDK_TIMEOUT, "DataPublished on B", b_events.recv()).await?? {
            RouterEvent::DataPublished(info) => {
                ensure!(
                    info.id == *chat.id() && info.transport.0 == "relay:a",
                    "{info:?}"
                )
            }
            other => bail!("unexpected event {other:?}"),
        }
        ensure!(pulled_tele.info().params.reliability == Reliability::MaxRetransmits(0));
        ensure!(b.router.data_publishers().len() == 2);
        ensure!(counter(&a.relay, "live_served_data") == 2);
        ensure!(counter(&b.relay, "live_pulled_data") == 2);
        // Relayed channels are not announced back to A.
        let a_side = a.relay.peers();
        ensure!(a_side.len() == 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure!(
            a_side[0].remote_data(b.router.id()).is_empty(),
            "B announced relayed channels back: {:?}",
            a_side[0].remote_data(b.router.id())
        );
        let err = peer
            .pull_data(a.router.id(), &DataPublisherId("nope".into()), &b.router)
            .await;
        ensure!(err.is_err(), "pulling an unknown channel fails");

        // bob on B subscribes as to local channels.
        let mut bob = subscribe_channels(&b.router, &api, "bob-on-b", &[&chat, &telemetry]).await?;
        let tele = &bob.channels[1].dc;
        ensure!(
            !tele.ordered()
                && tele.max_retransmits() == Some(0)
                && tele.protocol() == "telemetry-v1",
            "the relayed channel keeps the publisher's parameters"
        );

        send_all(&alice.channels[0].0, "alice", 0..MESSAGES).await?;
        bob.channels[0]
            .wait_for(MESSAGES as usize, MESSAGES_TIMEOUT, "bob chat")
            .await?;
        check_messages(&bob.channels[0].snapshot(), "alice", MESSAGES, "bob")?;
        ensure!(bob.subscribers[0].stats().messages == u64::from(MESSAGES));
        send_all(&alice.channels[1].0, "alice", 0..20).await?;
        bob.channels[1]
            .wait_for(20, MESSAGES_TIMEOUT, "bob telemetry")
            .await?;
        // A counts a message once its write returned, which may be after B read it.
        until(SDK_TIMEOUT, "A to count every message sent", || {
            counter(&a.relay, "data_messages_sent") == u64::from(MESSAGES) + 20
        })
        .await?;
        ensure!(counter(&b.relay, "data_messages_received") == u64::from(MESSAGES) + 20);

        // alice's client closes "chat": bob's channel closes, B forgets it,
        // the relay stream ends on both sides.
        alice.channels[0].0.close().await?;
        bob.channels[0].wait_closed(SDK_TIMEOUT, "bob chat").await?;
        let reason = bob.subscribers[0].closed_reason().unwrap_or_default();
        ensure!(reason.contains("publisher"), "reason: {reason}");
        until(SDK_TIMEOUT, "B forgets chat", || {
            b.router.data_publishers().len() == 1
        })
        .await?;
        until(SDK_TIMEOUT, "chat's relay to end", || {
            counter(&a.relay, "live_served_data") == 1 && counter(&b.relay, "live_pulled_data") == 1
        })
        .await?;
        ensure!(!pulled_chat.is_live());
        let ev = within(SDK_TIMEOUT, "chat ended in the catalog", catalog.recv()).await??;
        ensure!(ev.data == *chat.id() && ev.params.is_none(), "{ev:?}");

        // The connection ends: the relayed telemetry channel ends on B and
        // nothing is left on either side.
        peer.close();
        bob.channels[1]
            .wait_closed(SDK_TIMEOUT, "bob telemetry")
            .await?;
        until(SDK_TIMEOUT, "every relayed channel to end", || {
            counter(&a.relay, "live_served_data") == 0
                && counter(&b.relay, "live_pulled_data") == 0
                && b.router.data_publishers().is_empty()
        })
        .await?;
        ensure!(
            telemetry.closed_reason().is_none(),
            "A's channel itself goes on"
        );

        drop((pulled_chat, pulled_tele));
        bob.peer.close().await;
        alice.peer.close().await;
        bob.transport.close().await;
        alice.transport.close().await;
        a.worker.close().await;
        b.worker.close().await;
        Ok(())
    });
}
