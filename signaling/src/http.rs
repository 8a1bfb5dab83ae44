//! HTTP routes: the demo page and client bundle, health, metrics, and the
//! WebSocket upgrade.

use crate::{peer, App};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

// The demo page and the browser bundle of `client/` (npm `weir-client`), whose
// build output (`client/dist/`) is committed so the server builds without npm.
const INDEX_HTML: &str = include_str!("../../client/demo/index.html");
const INDEX_JS: &str = include_str!("../../client/dist/index.js");
const DEMO_JS: &str = include_str!("../../client/dist/demo.js");

const JS: &str = "text/javascript; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/client/index.js",
            get(|| async { ([(header::CONTENT_TYPE, JS)], INDEX_JS) }),
        )
        .route(
            "/client/demo.js",
            get(|| async { ([(header::CONTENT_TYPE, JS)], DEMO_JS) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/ws", get(websocket))
        .with_state(app)
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut text = app
        .worker
        .as_ref()
        .map(|w| w.metrics_text())
        .unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    app.metrics.render(app.rooms.len(), &mut text);
    if let Some(cluster) = &app.cluster {
        cluster.render_metrics(&mut text);
    }
    ([(header::CONTENT_TYPE, PROMETHEUS)], text).into_response()
}

/// Initial read buffer of a signaling WebSocket. tungstenite's default
/// (128 KiB, zero-filled up front) was half of the server's memory per
/// subscriber; signaling messages are a few KiB of JSON, and a larger frame
/// still grows the buffer up to `max_message_bytes`.
const WS_READ_BUFFER: usize = 4 * 1024;

async fn websocket(State(app): State<Arc<App>>, upgrade: WebSocketUpgrade) -> Response {
    if *app.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let max = app.limits.max_message_bytes;
    upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| peer::run(socket, app))
}
