//! An in-process server on 127.0.0.1:0 and a small WebSocket/HTTP client.
#![allow(dead_code, unreachable_pub)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use weir_signaling::{Config, Limits, Server};

/// How long any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), weir_signaling::Error>>,
}

impl TestServer {
    /// Signaling only: no media worker (the SDK is not needed).
    pub async fn without_media() -> Self {
        Self::start(None, Limits::default()).await
    }

    /// With a one-core media worker on its own UDP port.
    pub async fn with_media() -> Self {
        let config = weir::WorkerConfig {
            media_ip: [127, 0, 0, 1].into(),
            media_port: free_udp_port().await,
            cores: 1,
            ..Default::default()
        };
        Self::start(Some(config), Limits::default()).await
    }

    pub async fn start(media: Option<weir::WorkerConfig>, limits: Limits) -> Self {
        let config = Config {
            http: "127.0.0.1:0".parse().unwrap(),
            media,
            limits,
            cluster: None,
        };
        let server = Server::bind(config).await.expect("server binds");
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            stop: Some(tx),
            task,
        }
    }

    pub async fn connect(&self) -> Ws {
        let url = format!("ws://{}/ws", self.addr);
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("WebSocket handshake");
        ws
    }

    /// Stops the server and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), weir_signaling::Error> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("server stops in time")
            .expect("server task did not panic")
    }
}

/// A UDP port that was free a moment ago, with room for one core.
pub async fn free_udp_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 41000 + (std::process::id() % 200) as u16 * 50 + offset;
        if UdpSocket::bind(("127.0.0.1", port)).await.is_ok() {
            return port;
        }
    }
}

pub async fn send(ws: &mut Ws, v: Value) {
    send_text(ws, &v.to_string()).await;
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

/// The next JSON message, skipping control frames.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("no socket error");
        match msg {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str()).expect("server sends JSON")
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The next message of the given type, skipping others (candidates, states).
pub async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] == ty {
            return v;
        }
    }
}

/// Sends a request and returns the reply (the next message carrying its id).
pub async fn request(ws: &mut Ws, v: Value) -> Value {
    let id = v["id"].clone();
    assert!(id.is_number(), "requests in tests carry an id");
    send(ws, v).await;
    loop {
        let r = recv(ws).await;
        if r["id"] == id {
            return r;
        }
    }
}

/// Asserts that `reply` is an `error` with `code` and the given id.
pub fn assert_error(reply: &Value, code: &str, id: Option<u64>) {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    assert!(
        reply["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{reply}"
    );
    match id {
        Some(id) => assert_eq!(reply["id"], id, "{reply}"),
        None => assert!(reply.get("id").is_none(), "{reply}"),
    }
}

/// Proves the connection still works: a request before `join` gets `not_joined`
/// (and after `join`, an unknown track gets `unknown_track`).
pub async fn assert_alive(ws: &mut Ws, joined: bool) {
    let r = request(
        ws,
        serde_json::json!({"type": "unsubscribe", "trackId": "nope", "id": 999}),
    )
    .await;
    assert_error(
        &r,
        if joined {
            "unknown_track"
        } else {
            "not_joined"
        },
        Some(999),
    );
}

/// Waits for the server to close the socket; returns the close code.
pub async fn closed(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.1 GET; enough for these tests without an HTTP client crate.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (len, rest) = s.split_once("\r\n").expect("chunk size");
        let len = usize::from_str_radix(len.trim(), 16).expect("hex chunk size");
        if len == 0 {
            return out;
        }
        out.push_str(&rest[..len]);
        s = &rest[len + 2..];
    }
}
