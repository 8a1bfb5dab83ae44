//! DataChannels through Weir with webrtc-rs peers: a client publishes a
//! channel, others subscribe, every message arrives in order with its type;
//! closing propagates; a peer speaking bogus DCEP or malformed SCTP loses
//! its own association and nothing else.
//!
//! Run with `RUST_LOG=info,weir=debug cargo test --test datachannel -- --nocapture`
//! for logs.

mod common;

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::data::{
    check_messages, publish_channels, send_all, subscribe_channels, subscribe_channels_with,
    wait_open, DataPubPeer, OPEN_TIMEOUT,
};
use common::metrics::{total, wait_total};
use common::peers::{new_api, wait_connected, MediaConfig, PubPeer};
use common::raw_sctp::{overrunning_data_chunk, RawPeer};
use common::{free_base_port, run, within};
use std::net::IpAddr;
use std::time::Duration;
use tracing::info;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use weir::{
    ConnectionState, MediaKind, Reliability, RouterEvent, TransportConfig, Worker, WorkerConfig,
};

const SDK_TIMEOUT: Duration = Duration::from_secs(10);
const MESSAGES_TIMEOUT: Duration = Duration::from_secs(60);
const TEST_LIMIT: Duration = Duration::from_secs(150);
const MESSAGES: u32 = 1000;

async fn start_worker() -> Result<Worker> {
    let config = WorkerConfig {
        media_ip: IpAddr::from([127, 0, 0, 1]),
        media_port: free_base_port(16),
        cores: 2,
        ..Default::default()
    };
    within(SDK_TIMEOUT, "Worker::new", Worker::new(config))
        .await?
        .context("Worker::new")
}

/// 1,000 text and binary messages from one publisher reach two subscribers
/// in order with their types; an unordered, unreliable channel keeps its
/// parameters end to end; closing propagates from the publisher's client to
/// the subscribers' and from a subscriber's client to Weir.
#[test]
fn messages_reach_every_subscriber_in_order_with_their_types() {
    run("messages_reach_every_subscriber", TEST_LIMIT, || async {
        let worker = start_worker().await?;
        let router = worker.create_router(Default::default());
        let mut events = router.events();
        let api = new_api()?;
        let unreliable = RTCDataChannelInit {
            ordered: Some(false),
            max_retransmits: Some(0),
            protocol: Some("telemetry-v1".into()),
            ..Default::default()
        };
        let publisher = publish_channels(
            &router,
            &api,
            "alice",
            &[("chat", None), ("telemetry", Some(unreliable))],
        )
        .await?;
        let chat = publisher.channels[0].1.clone();
        let telemetry = publisher.channels[1].1.clone();
        let p = &telemetry.info().params;
        ensure!(
            !p.ordered
                && p.reliability == Reliability::MaxRetransmits(0)
                && p.protocol == "telemetry-v1",
            "DCEP parameters: {p:?}"
        );
        ensure!(
            chat.info().params.ordered && chat.info().params.reliability == Reliability::Reliable
        );
        let listed = router.data_publishers();
        ensure!(listed.len() == 2, "router lists {listed:?}");
        match within(SDK_TIMEOUT, "DataPublished event", events.recv()).await?? {
            RouterEvent::DataPublished(info) => ensure!(info.id == *chat.id()),
            other => bail!("unexpected event {other:?}"),
        }

        let mut bob = subscribe_channels(&router, &api, "bob", &[&chat, &telemetry]).await?;
        let mut carol = subscribe_channels(&router, &api, "carol", &[&chat]).await?;
        let tele = &bob.channels[1].dc;
        ensure!(
            !tele.ordered()
                && tele.max_retransmits() == Some(0)
                && tele.protocol() == "telemetry-v1",
            "the subscriber's channel keeps the publisher's parameters"
        );

        let dc = publisher.channels[0].0.clone();
        send_all(&dc, "alice", 0..MESSAGES).await?;
        for (who, ch) in [
            ("bob", &mut bob.channels[0]),
            ("carol", &mut carol.channels[0]),
        ] {
            ch.wait_for(MESSAGES as usize, MESSAGES_TIMEOUT, who)
                .await?;
            check_messages(&ch.snapshot(), "alice", MESSAGES, who)?;
        }
        let stats = chat.stats();
        ensure!(
            stats.messages == u64::from(MESSAGES),
            "publisher stats {stats:?}"
        );
        ensure!(bob.subscribers[0].stats().messages == u64::from(MESSAGES));
        ensure!(bob.subscribers[0].stats().dropped_messages == 0);

        // A few on the unreliable channel (loopback loses nothing).
        send_all(&publisher.channels[1].0, "alice", 0..20).await?;
        bob.channels[1]
            .wait_for(20, MESSAGES_TIMEOUT, "bob telemetry")
            .await?;
        ensure!(bob.channels[1]
            .snapshot()
            .iter()
            .all(|m| !m.data.is_empty()));

        // carol's client closes its channel: Weir's subscriber ends.
        carol.channels[0].dc.close().await?;
        let reason = within(
            SDK_TIMEOUT,
            "carol's subscriber to close",
            carol.subscribers[0].closed(),
        )
        .await?;
        ensure!(reason.contains("client closed"), "reason: {reason}");

        // alice's client closes "chat": bob's channel closes, the router forgets it.
        dc.close().await?;
        let reason = within(SDK_TIMEOUT, "chat publisher to close", chat.closed()).await?;
        ensure!(reason.contains("client closed"), "reason: {reason}");
        bob.channels[0].wait_closed(SDK_TIMEOUT, "bob chat").await?;
        let reason = bob.subscribers[0].closed_reason().unwrap_or_default();
        ensure!(reason.contains("publisher"), "reason: {reason}");
        ensure!(router.data_publishers().len() == 1);

        // The application closes "telemetry": both ends see it.
        telemetry.close().await;
        bob.channels[1]
            .wait_closed(SDK_TIMEOUT, "bob telemetry")
            .await?;

        bob.peer.close().await;
        carol.peer.close().await;
        publisher.peer.close().await;
        bob.transport.close().await;
        carol.transport.close().await;
        publisher.transport.close().await;
        Ok(())
    });
}

/// A peer whose first message on a new stream is not DCEP loses its
/// association with a reason; its transport stays connected and another
/// publisher's messages keep flowing.
#[test]
fn bogus_dcep_ends_only_that_association() {
    run(
        "bogus_dcep_ends_only_that_association",
        TEST_LIMIT,
        || async {
            let worker = start_worker().await?;
            let router = worker.create_router(Default::default());
            let api = new_api()?;
            let good = publish_channels(&router, &api, "good", &[("chat", None)]).await?;
            let chat = good.channels[0].1.clone();
            let mut sub = subscribe_channels(&router, &api, "listener", &[&chat]).await?;

            // A negotiated channel skips DCEP: its first message is plain text.
            let bad = DataPubPeer::new(&api, "bad").await?;
            let negotiated = RTCDataChannelInit {
                negotiated: Some(7),
                ..Default::default()
            };
            let (evil, mut open) = bad.channel("evil", Some(negotiated)).await?;
            let bad_transport = router.create_publish_transport(Default::default()).await?;
            let answer = bad_transport.get_answer(&bad.offer().await?).await?;
            bad.set_answer(answer).await?;
            let mut state = bad.state.clone();
            wait_connected(&mut state, "bad").await?;
            wait_open(&mut open, "bad: negotiated channel open").await?;
            evil.send_text("not a DATA_CHANNEL_OPEN").await?;
            let err = within(
                OPEN_TIMEOUT,
                "data_publish on the bad transport",
                bad_transport.data_publish("evil"),
            )
            .await?
            .err()
            .ok_or_else(|| anyhow!("data_publish succeeded on a bogus stream"))?;
            let msg = err.to_string();
            ensure!(msg.contains("not DCEP"), "error: {msg}");
            ensure!(
                bad_transport.connection_state() == ConnectionState::Connected,
                "DTLS and media stay up"
            );

            send_all(&good.channels[0].0, "good", 0..200).await?;
            sub.channels[0]
                .wait_for(200, MESSAGES_TIMEOUT, "listener")
                .await?;
            check_messages(&sub.channels[0].snapshot(), "good", 200, "listener")?;
            ensure!(chat.closed_reason().is_none());
            bad.close().await;
            sub.peer.close().await;
            good.peer.close().await;
            Ok(())
        },
    );
}

/// A peer that writes a malformed SCTP packet into its DTLS connection
/// loses its association (its published channel closes with the reason);
/// its transport stays connected and another publisher's messages keep
/// flowing.
#[test]
fn malformed_sctp_ends_only_that_association() {
    run(
        "malformed_sctp_ends_only_that_association",
        TEST_LIMIT,
        || async {
            let worker = start_worker().await?;
            let router = worker.create_router(Default::default());
            let api = new_api()?;
            let good = publish_channels(&router, &api, "good", &[("chat", None)]).await?;
            let chat = good.channels[0].1.clone();
            let mut sub = subscribe_channels(&router, &api, "listener", &[&chat]).await?;

            let mut raw = RawPeer::new().await?;
            let raw_transport = router.create_publish_transport(Default::default()).await?;
            let answer = raw_transport
                .get_answer(&raw.offer())
                .await
                .context("raw get_answer")?;
            raw.connect(&answer).await?;
            let channel = raw.open_channel(0, "raw").await?;
            let raw_pub = within(
                OPEN_TIMEOUT,
                "data_publish(raw)",
                raw_transport.data_publish("raw"),
            )
            .await?
            .context("data_publish(raw)")?;
            channel
                .write_data_channel(&bytes::Bytes::from_static(b"hello"), true)
                .await?;
            let mut raw_sub =
                subscribe_channels(&router, &api, "raw-listener", &[&raw_pub]).await?;
            channel
                .write_data_channel(&bytes::Bytes::from_static(b"still fine"), true)
                .await?;
            raw_sub.channels[0]
                .wait_for(1, MESSAGES_TIMEOUT, "raw-listener")
                .await?;

            raw.send_raw(&overrunning_data_chunk()).await?;
            let reason =
                within(SDK_TIMEOUT, "the raw publisher to close", raw_pub.closed()).await?;
            ensure!(
                reason.contains("SCTP chunk") && reason.contains("length 400"),
                "reason: {reason}"
            );
            raw_sub.channels[0]
                .wait_closed(SDK_TIMEOUT, "raw-listener")
                .await?;
            ensure!(
                raw_transport.connection_state() == ConnectionState::Connected,
                "DTLS stays up"
            );
            let e = raw_transport
                .data_publish("raw")
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            ensure!(
                e.contains("SCTP chunk"),
                "a later data_publish says why: {e}"
            );

            send_all(&good.channels[0].0, "good", 0..200).await?;
            sub.channels[0]
                .wait_for(200, MESSAGES_TIMEOUT, "listener")
                .await?;
            check_messages(&sub.channels[0].snapshot(), "good", 200, "listener")?;
            ensure!(chat.closed_reason().is_none());
            raw.close().await;
            sub.peer.close().await;
            raw_sub.peer.close().await;
            good.peer.close().await;
            Ok(())
        },
    );
}

/// With the smallest buffer bound, a burst the subscriber's SCTP cannot
/// absorb at once closes a reliable subscriber with the reason; an
/// unreliable one stays open and accounts for every message, forwarded or
/// dropped (whether it drops any depends on timing; the policy itself is
/// unit-tested in `datachannel::backlog`).
#[test]
#[ignore = "timing-dependent: a webrtc-rs client that reads and acknowledges fast enough never builds the backlog; \
            the policy is unit-tested in datachannel::backlog. Run with --ignored on a quiet machine."]
fn a_slow_subscriber_is_closed_when_reliable_and_not_when_unreliable() {
    run("slow_subscriber", TEST_LIMIT, || async {
        let worker = start_worker().await?;
        let router = worker.create_router(Default::default());
        let api = new_api()?;
        let lossy = RTCDataChannelInit {
            ordered: Some(false),
            max_retransmits: Some(0),
            ..Default::default()
        };
        let publisher = publish_channels(
            &router,
            &api,
            "firehose",
            &[("reliable", None), ("lossy", Some(lossy))],
        )
        .await?;
        let reliable = publisher.channels[0].1.clone();
        let unreliable = publisher.channels[1].1.clone();
        // Just over one message: the second 60 KiB message sent before the
        // client acknowledges the first exceeds it, however fast the client
        // reads (SCTP acknowledgements are delayed), so the test does not
        // depend on the machine's speed.
        let mut config = TransportConfig::default();
        config.data_buffer_limit = 64 * 1024;
        let mut sub =
            subscribe_channels_with(&router, &api, "slow", &[&reliable, &unreliable], config)
                .await?;

        // 40 messages of 60 KiB on each channel, as fast as webrtc-rs takes them.
        let big = bytes::Bytes::from(vec![7u8; 60 * 1024]);
        for _ in 0..40 {
            publisher.channels[0].0.send(&big).await?;
            publisher.channels[1].0.send(&big).await?;
        }
        let reason = within(
            MESSAGES_TIMEOUT,
            "the reliable subscriber to close",
            sub.subscribers[0].closed(),
        )
        .await?;
        ensure!(reason.contains("too slow"), "reason: {reason}");
        sub.channels[0]
            .wait_closed(SDK_TIMEOUT, "slow reliable channel")
            .await?;
        ensure!(
            reliable.closed_reason().is_none(),
            "the publisher stays open"
        );

        let stats = common::within(
            MESSAGES_TIMEOUT,
            "the unreliable subscriber to finish",
            async {
                loop {
                    let s = sub.subscribers[1].stats();
                    if s.messages + s.dropped_messages >= 40 {
                        return s;
                    }
                    // Polls a counter; the messages it waits for are already sent.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        )
        .await?;
        info!(?stats, "unreliable subscriber");
        ensure!(stats.messages + stats.dropped_messages == 40, "{stats:?}");
        ensure!(
            stats.dropped_bytes == stats.dropped_messages * 60 * 1024,
            "{stats:?}"
        );
        ensure!(
            sub.subscribers[1].closed_reason().is_none(),
            "the unreliable subscriber stays open"
        );
        sub.peer.close().await;
        publisher.peer.close().await;
        Ok(())
    });
}

/// A subscribe transport that only carried media parks its DTLS connection
/// once the peer's RTCP shows it holds the SRTP keys; data channels
/// negotiated on it later resume the connection without a handshake, and
/// messages flow both ways over it (SCTP needs replies).
#[test]
fn data_channels_negotiated_later_resume_a_parked_dtls_connection() {
    run("data_channels_resume_parked_dtls", TEST_LIMIT, || async {
        let worker = start_worker().await?;
        let router = worker.create_router(Default::default());
        let api = new_api()?;

        // alice publishes video: her publish transport parks once her
        // SRTP arrives.
        let alice_transport = router.create_publish_transport(Default::default()).await?;
        let mut alice = PubPeer::new(&api).await?;
        let answer = alice_transport.get_answer(&alice.offer().await?).await?;
        alice.set_answer(answer).await?;
        alice.start_media(MediaConfig::default());
        let mut video = None;
        for t in alice_transport.offered_tracks() {
            let p = within(SDK_TIMEOUT, "publish", alice_transport.publish(&t.mid)).await??;
            if p.info().kind == MediaKind::Video {
                video = Some(p);
            }
        }
        let video = video.context("alice publishes no video")?;
        wait_total(&worker, "weir_dtls_parked", 1, SDK_TIMEOUT).await?;

        // bob subscribes to it: his transport parks once his receiver
        // reports arrive.
        let mut bob = common::data::DataSubPeer::new(&api, "bob").await?;
        let transport = router
            .create_subscribe_transport(Default::default())
            .await?;
        let (_video_sub, offer) = transport.subscribe(video.id()).await?;
        let answer = bob.answer(&offer).await?;
        transport.set_answer(&answer).await?;
        wait_connected(&mut bob.state, "bob").await?;
        wait_total(&worker, "weir_dtls_parked", 2, SDK_TIMEOUT).await?;
        ensure!(total(&worker.metrics_text(), "weir_dtls_resumes_total") == Some(0));

        // carol publishes a data channel; bob subscribes to it on the same
        // transport: the renegotiation brings his DTLS connection back.
        let carol = publish_channels(&router, &api, "carol", &[("chat", None)]).await?;
        let chat = &carol.channels[0].1;
        let (sub, offer) = transport.data_subscribe(chat.id()).await?;
        ensure!(offer.contains("m=application 9 UDP/DTLS/SCTP webrtc-datachannel"));
        let answer = bob.answer(&offer).await?;
        transport.set_answer(&answer).await?;
        within(OPEN_TIMEOUT, "DataSubscriber::opened", sub.opened()).await??;
        let mut ch = bob.next_channel(OPEN_TIMEOUT).await?;
        send_all(&carol.channels[0].0, "carol", 0..50).await?;
        ch.wait_for(50, MESSAGES_TIMEOUT, "bob").await?;
        check_messages(&ch.snapshot(), "carol", 50, "bob")?;
        ensure!(
            total(&worker.metrics_text(), "weir_dtls_resumes_total") == Some(1),
            "bob's connection was resumed once:\n{}",
            worker.metrics_text()
        );
        // Its association keeps it live; carol's publish transport (data
        // channels from the start) was never parked, alice's still is.
        tokio::time::sleep(Duration::from_millis(500)).await;
        ensure!(total(&worker.metrics_text(), "weir_dtls_parked") == Some(1));

        bob.close().await;
        alice.close().await;
        carol.peer.close().await;
        Ok(())
    });
}
