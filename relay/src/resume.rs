//! Resuming pulled tracks after a lost connection.
//!
//! With a resume window ([`crate::RelayConfig::with_resume_window`]), a
//! connection that fails does not end its pulled tracks at once: each
//! track's [`RemoteTrack`] waits here, still listed in its router with its
//! subscribers attached, for the window. A pull of the same track from the
//! same server into the same router within it (the reference server pulls
//! again from the catalog when the connection is back) takes the waiting
//! track over: packets flow into it again, feedback goes out on the new
//! connection, and a keyframe request goes to the origin so subscribers'
//! decoders recover. Past the window the track ends as it would have.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_controlplane::{RemoteTrack, RouterId, TrackId};

use crate::proto::RelayTrackId;

/// Where a pulled track's feedback goes: the current connection and the
/// origin's id for the track on it. Swapped on resume.
#[derive(Debug, Clone)]
pub(crate) struct FeedbackRoute {
    pub(crate) conn: quinn::Connection,
    pub(crate) track: RelayTrackId,
    /// The connection's control stream, for wanted layers.
    pub(crate) ctl: tokio::sync::mpsc::UnboundedSender<crate::proto::control::ControlMessage>,
    /// Whether the origin acts on wanted layers (its hello's `LAYERS`).
    pub(crate) layers: bool,
}

/// Shared between a pulled track and its feedback task.
pub(crate) type Route = Arc<Mutex<FeedbackRoute>>;

/// A pulled track: (origin server id, router at the origin, track, local
/// router).
pub(crate) type TrackKey = (String, RouterId, TrackId, RouterId);

/// A pulled track whose connection failed, waiting to be resumed.
pub(crate) struct Orphan {
    pub(crate) remote: RemoteTrack,
    pub(crate) route: Route,
    pub(crate) sender_report: Option<(u64, u32)>,
    generation: u64,
}

/// The tracks waiting to be resumed, per endpoint.
#[derive(Default)]
pub(crate) struct Orphans {
    map: Mutex<HashMap<TrackKey, Orphan>>,
    generation: AtomicU64,
}

impl Orphans {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<TrackKey, Orphan>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a track for `window`; it ends after that unless taken.
    pub(crate) fn keep(
        self: &Arc<Self>,
        key: TrackKey,
        remote: RemoteTrack,
        route: Route,
        sender_report: Option<(u64, u32)>,
        window: Duration,
    ) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let replaced = self.map().insert(
            key.clone(),
            Orphan {
                remote,
                route,
                sender_report,
                generation,
            },
        );
        drop(replaced);
        let orphans = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            let Some(orphans) = orphans.upgrade() else {
                return;
            };
            let expired = {
                let mut map = orphans.map();
                match map.get(&key) {
                    Some(o) if o.generation == generation => map.remove(&key),
                    _ => None,
                }
            };
            if expired.is_some() {
                tracing::info!(peer = %key.0, track = %key.2, "relay: track not resumed in time; it ends");
            }
            // Dropping the track ends it in its router.
            drop(expired);
        });
    }

    /// The waiting track for `key`, if any.
    pub(crate) fn take(&self, key: &TrackKey) -> Option<Orphan> {
        self.map().remove(key)
    }

    /// Ends every waiting track (the endpoint closes).
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *self.map());
        drop(all);
    }
}
