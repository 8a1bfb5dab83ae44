//! A WebSocket client of the reference signaling protocol
//! (`signaling/PROTOCOL.md`): JSON text messages with a `type`.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One participant's WebSocket.
pub(crate) struct Signaling {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

/// Why signaling failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SignalingError {
    /// The WebSocket failed or the server closed it.
    #[error("WebSocket: {0}")]
    Socket(String),
    /// The server answered a request with `error`.
    #[error("server error {code}: {message}")]
    Server {
        /// The `code`.
        code: String,
        /// The `message`.
        message: String,
    },
}

impl Signaling {
    /// Opens the WebSocket at `url` (`ws://host:port/ws`).
    pub(crate) async fn connect(url: &str) -> Result<Self, SignalingError> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| SignalingError::Socket(e.to_string()))?;
        Ok(Self { ws, next_id: 1 })
    }

    /// Sends a request with a fresh `id` and returns that id.
    pub(crate) async fn request(&mut self, mut msg: Value) -> Result<u64, SignalingError> {
        let id = self.next_id;
        self.next_id += 1;
        if let Value::Object(m) = &mut msg {
            m.insert("id".into(), id.into());
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .map_err(|e| SignalingError::Socket(e.to_string()))?;
        Ok(id)
    }

    /// The next JSON message from the server. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Result<Value, SignalingError> {
        loop {
            let msg = match self.ws.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(SignalingError::Socket(e.to_string())),
                None => return Err(SignalingError::Socket("closed by the server".into())),
            };
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str())
                        .map_err(|e| SignalingError::Socket(format!("bad JSON: {e}")))?;
                    return Ok(v);
                }
                Message::Close(frame) => {
                    return Err(SignalingError::Socket(format!("closed: {frame:?}")))
                }
                _ => continue,
            }
        }
    }

    /// Sends `leave` and closes the socket (best effort).
    pub(crate) async fn leave(mut self) {
        let _ = self.request(serde_json::json!({"type": "leave"})).await;
        let _ = self.ws.close(None).await;
    }
}

/// The `type` of a message.
pub(crate) fn kind(msg: &Value) -> &str {
    msg.get("type").and_then(Value::as_str).unwrap_or("")
}

/// A string field.
pub(crate) fn field<'a>(msg: &'a Value, name: &str) -> &'a str {
    msg.get(name).and_then(Value::as_str).unwrap_or("")
}

/// The server's `error` as a [`SignalingError`].
pub(crate) fn server_error(msg: &Value) -> SignalingError {
    SignalingError::Server {
        code: field(msg, "code").to_owned(),
        message: field(msg, "message").to_owned(),
    }
}
