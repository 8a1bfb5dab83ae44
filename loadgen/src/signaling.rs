//! A WebSocket client of the reference signaling protocol
//! (`signaling/PROTOCOL.md`): JSON text messages with a `type`.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Bytes tungstenite reads (and zeroes first) per read call.
const READ_BUFFER: usize = 8 * 1024;

/// Whether `text` is a `peerJoined` or `peerLeft` notification, judged from
/// its opening bytes as the server writes it (`{"type":"peerJoined",…`).
/// Anything else, including a differently ordered object, is parsed.
fn is_membership(text: &str) -> bool {
    let head = &text.as_bytes()[..text.len().min(24)];
    head.starts_with(br#"{"type":"peerJoined""#) || head.starts_with(br#"{"type":"peerLeft""#)
}

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
        // tungstenite zeroes its whole read buffer (128 KiB by default)
        // before every read: in a join storm, with a `peerJoined` per read,
        // that memset was the loadgen's top cost. Our messages are small;
        // a larger one still arrives, over several reads.
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
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
                    // Room membership news is the bulk of a big room's
                    // signaling (every join reaches every member) and no
                    // peer here reads it: skip it unparsed.
                    if is_membership(t.as_str()) {
                        continue;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_news_is_recognised_by_its_opening() {
        assert!(is_membership(
            r#"{"type":"peerJoined","peerId":"p1","name":"a"}"#
        ));
        assert!(is_membership(
            r#"{"type":"peerLeft","peerId":"p1","name":"a"}"#
        ));
        assert!(!is_membership(r#"{"type":"joined","peerId":"p1"}"#));
        assert!(!is_membership(r#"{"type":"offer","sdp":"peerJoined"}"#));
        assert!(!is_membership(""));
        assert!(!is_membership("{"));
    }
}
