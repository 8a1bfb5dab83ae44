//! End-to-end protocol tests that need the real SDK (a media worker, routers
//! and transports). They fail while `weir`'s bodies are `todo!()`.

mod common;

use common::*;
use serde_json::json;

async fn joined(server: &TestServer, room: &str, name: &str) -> (Ws, serde_json::Value) {
    let mut ws = server.connect().await;
    let r = request(
        &mut ws,
        json!({"type": "join", "room": room, "name": name, "id": 1}),
    )
    .await;
    assert_eq!(r["type"], "joined", "{r}");
    (ws, r)
}

#[tokio::test]
async fn join_replies_joined_and_second_join_is_already_joined() {
    let server = TestServer::with_media().await;
    let (mut ws, r) = joined(&server, "room-1", "Ann").await;
    assert_eq!(r["room"], "room-1");
    assert!(r["peerId"].as_str().is_some_and(|p| !p.is_empty()), "{r}");
    assert_eq!(r["tracks"], json!([]));
    let again = request(&mut ws, json!({"type": "join", "room": "room-1", "id": 2})).await;
    assert_error(&again, "already_joined", Some(2));
    assert_alive(&mut ws, true).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn publish_with_bad_sdp_is_bad_sdp() {
    let server = TestServer::with_media().await;
    let (mut ws, _) = joined(&server, "r", "").await;
    let r = request(
        &mut ws,
        json!({"type": "publish", "sdp": "not an offer", "id": 5}),
    )
    .await;
    assert_error(&r, "bad_sdp", Some(5));
    assert_alive(&mut ws, true).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn subscribe_to_unknown_track_is_unknown_track() {
    let server = TestServer::with_media().await;
    let (mut ws, _) = joined(&server, "r", "").await;
    let r = request(
        &mut ws,
        json!({"type": "subscribe", "trackId": "ghost", "id": 3}),
    )
    .await;
    assert_error(&r, "unknown_track", Some(3));
    let r = request(
        &mut ws,
        json!({"type": "unpublish", "trackId": "ghost", "id": 4}),
    )
    .await;
    assert_error(&r, "unknown_track", Some(4));
    assert_alive(&mut ws, true).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn answer_without_offer_is_no_pending_offer() {
    let server = TestServer::with_media().await;
    let (mut ws, _) = joined(&server, "r", "").await;
    let r = request(
        &mut ws,
        json!({"type": "answer", "sdp": "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "id": 6}),
    )
    .await;
    assert_error(&r, "no_pending_offer", Some(6));
    assert_alive(&mut ws, true).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unparsable_candidate_is_bad_candidate() {
    let server = TestServer::with_media().await;
    let (mut ws, _) = joined(&server, "r", "").await;
    let r = request(
        &mut ws,
        json!({"type": "candidate", "transport": "publish", "id": 7,
               "candidate": {"candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0}}),
    )
    .await;
    assert_error(&r, "bad_candidate", Some(7));
    // End-of-candidates is accepted silently.
    send(
        &mut ws,
        json!({"type": "candidate", "transport": "publish", "candidate": null}),
    )
    .await;
    assert_alive(&mut ws, true).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn membership_is_announced_and_rooms_close_when_empty() {
    let server = TestServer::with_media().await;
    let (mut a, ra) = joined(&server, "meet", "Ann").await;
    let (mut b, rb) = joined(&server, "meet", "Bob").await;
    assert_eq!(
        rb["peers"],
        json!([{"peerId": ra["peerId"], "name": "Ann"}])
    );
    let j = recv_type(&mut a, "peerJoined").await;
    assert_eq!(j["peerId"], rb["peerId"]);
    assert_eq!(j["name"], "Bob");

    // Another name is another room.
    let (_c, rc) = joined(&server, "other", "Cy").await;
    assert_eq!(rc["peers"], json!([]));

    send(&mut b, json!({"type": "leave"})).await;
    assert_eq!(closed(&mut b).await, Some(1000));
    let l = recv_type(&mut a, "peerLeft").await;
    assert_eq!(l["peerId"], rb["peerId"]);

    drop(a);
    // Closing `a` is asynchronous: poll the metric, bounded by WAIT.
    let metrics = tokio::time::timeout(WAIT, async {
        loop {
            let m = http_get(server.addr, "/metrics").await.body;
            if m.lines().any(|l| l == "weir_signaling_rooms 1") {
                break m;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("room \"meet\" closes");
    assert!(
        metrics.lines().any(|l| l == "weir_signaling_peers 1"),
        "{metrics}"
    );
    server.stop().await.unwrap();
}
