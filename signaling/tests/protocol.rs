//! The server without the SDK: HTTP endpoints, parsing and the errors a
//! client gets before `join`. Each error leaves the connection working.

mod common;

use common::*;
use serde_json::json;
use weir_signaling::Limits;

#[tokio::test]
async fn healthz() {
    let server = TestServer::without_media().await;
    let r = http_get(server.addr, "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn demo_page_and_bundle() {
    let server = TestServer::without_media().await;
    let r = http_get(server.addr, "/").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("<html"), "{}", r.body);
    for path in ["/client/index.js", "/client/demo.js"] {
        let r = http_get(server.addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type")
                .unwrap()
                .starts_with("text/javascript"),
            "{path}"
        );
    }
    assert_eq!(http_get(server.addr, "/client/nope.js").await.status, 404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_format() {
    let server = TestServer::without_media().await;
    let mut ws = server.connect().await;
    send_text(&mut ws, "{oops").await;
    assert_error(&recv(&mut ws).await, "bad_json", None);

    let r = http_get(server.addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.header("content-type")
    );
    // Every line is a comment (# HELP / # TYPE) or `name{labels} value`.
    let mut typed = std::collections::HashSet::new();
    for line in r.body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        value.parse::<f64>().expect(line);
        let name = series.split('{').next().unwrap();
        assert!(typed.contains(name), "sample before its # TYPE: {line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
    }
    for expected in [
        "weir_signaling_connections 1",
        "weir_signaling_peers 0",
        "weir_signaling_rooms 0",
        "weir_signaling_errors_total{code=\"bad_json\"} 1",
        "weir_signaling_messages_received_total{type=\"invalid\"} 1",
        "weir_signaling_messages_sent_total{type=\"error\"} 1",
    ] {
        assert!(
            r.body.lines().any(|l| l == expected),
            "missing {expected:?} in\n{}",
            r.body
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_json_is_bad_json() {
    let server = TestServer::without_media().await;
    let mut ws = server.connect().await;
    for text in ["{oops", "[]", "42", "\"join\"", "null", ""] {
        send_text(&mut ws, text).await;
        assert_error(&recv(&mut ws).await, "bad_json", None);
    }
    ws.send_binary().await;
    assert_error(&recv(&mut ws).await, "bad_json", None);
    assert_alive(&mut ws, false).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_type_is_bad_message() {
    let server = TestServer::without_media().await;
    let mut ws = server.connect().await;
    let r = request(&mut ws, json!({"type": "dance", "id": 1})).await;
    assert_error(&r, "bad_message", Some(1));
    assert!(r["message"].as_str().unwrap().contains("dance"));
    assert_alive(&mut ws, false).await;

    let r = request(&mut ws, json!({"id": 2})).await;
    assert_error(&r, "bad_message", Some(2));
    assert!(r["message"].as_str().unwrap().contains("type"));
    assert_alive(&mut ws, false).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn missing_field_is_bad_message_naming_it() {
    let server = TestServer::without_media().await;
    let mut ws = server.connect().await;
    for (msg, field) in [
        (json!({"type": "subscribe", "id": 1}), "trackId"),
        (json!({"type": "publish", "sdp": 5, "id": 2}), "sdp"),
        (json!({"type": "join", "id": 3}), "room"),
        (
            json!({"type": "candidate", "transport": "publish", "id": 4}),
            "candidate",
        ),
    ] {
        let id = msg["id"].as_u64();
        let r = request(&mut ws, msg).await;
        assert_error(&r, "bad_message", id);
        assert!(r["message"].as_str().unwrap().contains(field), "{r}");
    }
    assert_alive(&mut ws, false).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn requests_before_join_are_not_joined() {
    let server = TestServer::without_media().await;
    let mut ws = server.connect().await;
    for (i, msg) in [
        json!({"type": "subscribe", "trackId": "t"}),
        json!({"type": "unsubscribe", "trackId": "t"}),
        json!({"type": "unpublish", "trackId": "t"}),
        json!({"type": "publish", "sdp": "v=0\r\n"}),
        json!({"type": "answer", "sdp": "v=0\r\n"}),
        json!({"type": "candidate", "transport": "publish", "candidate": null}),
        json!({"type": "leave"}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut msg = msg;
        msg["id"] = json!(i);
        let r = request(&mut ws, msg).await;
        assert_error(&r, "not_joined", Some(i as u64));
    }
    // Without an id the error carries none.
    send(&mut ws, json!({"type": "subscribe", "trackId": "t"})).await;
    assert_error(&recv(&mut ws).await, "not_joined", None);
    assert_alive(&mut ws, false).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_room() {
    let server = TestServer::without_media().await;
    let mut ws = server.connect().await;
    for (i, room) in ["", "has space", "slash/es", "ünïcode", &"x".repeat(65)]
        .into_iter()
        .enumerate()
    {
        let r = request(&mut ws, json!({"type": "join", "room": room, "id": i})).await;
        assert_error(&r, "bad_room", Some(i as u64));
    }
    let r = request(&mut ws, json!({"type": "join", "room": 7, "id": 10})).await;
    assert_error(&r, "bad_message", Some(10));
    let r = request(
        &mut ws,
        json!({"type": "join", "room": "ok", "name": "n".repeat(65), "id": 11}),
    )
    .await;
    assert_error(&r, "bad_message", Some(11));
    assert_alive(&mut ws, false).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn join_without_media_is_internal() {
    let server = TestServer::without_media().await;
    let mut ws = server.connect().await;
    let r = request(&mut ws, json!({"type": "join", "room": "r", "id": 1})).await;
    assert_error(&r, "internal", Some(1));
    assert_alive(&mut ws, false).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_message_closes_the_connection() {
    let limits = Limits {
        max_message_bytes: 1024,
        ..Limits::default()
    };
    let server = TestServer::start(None, limits).await;
    let mut ws = server.connect().await;
    let big = json!({"type": "publish", "sdp": "x".repeat(2048)}).to_string();
    send_text(&mut ws, &big).await;
    let _ = closed(&mut ws).await;
    // The server itself is fine.
    let mut ws = server.connect().await;
    assert_alive(&mut ws, false).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn message_flood_closes_the_connection() {
    let limits = Limits {
        messages_per_second: 1,
        message_burst: 5,
        ..Limits::default()
    };
    let server = TestServer::start(None, limits).await;
    let mut ws = server.connect().await;
    for _ in 0..20 {
        send(&mut ws, json!({"type": "leave"})).await;
    }
    let mut errors = 0;
    let code = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws))
            .await
            .expect("in time")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_))) => errors += 1,
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                break f.map(|f| u16::from(f.code))
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert_eq!(errors, 5, "the burst is answered");
    assert_eq!(code, Some(1008));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_sockets_and_returns_ok() {
    let server = TestServer::without_media().await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    assert_alive(&mut a, false).await;
    let addr = server.addr;
    server.stop().await.unwrap();
    assert_eq!(closed(&mut a).await, Some(1001));
    assert_eq!(closed(&mut b).await, Some(1001));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

trait SendBinary {
    async fn send_binary(&mut self);
}

impl SendBinary for Ws {
    async fn send_binary(&mut self) {
        use futures_util::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![1u8, 2, 3].into(),
        ))
        .await
        .unwrap();
    }
}
