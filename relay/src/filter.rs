//! The origin's layer filter for one served track: which packets to relay,
//! given the layers the downstream server said its subscribers want
//! ([`crate::proto::control::ControlMessage::Layers`]).
//!
//! Sans-IO: fed the wanted layers and each packet's facts, it answers
//! whether to send the packet and, when a spatial unit (a simulcast
//! encoding, or the SVC stream's upper spatial layers) becomes wanted
//! again, which keyframe to ask the publisher for. A unit that was off
//! resumes only from a keyframe: its packets before one would be useless
//! downstream, whose selector waits for the keyframe anyway. Temporal
//! layers resume at once; the downstream selector switches at the next
//! switching point, which it must see.
//!
//! Before the downstream server says anything (an older peer never does),
//! everything is sent.
use weir_dataplane::packet::LayerFacts;

/// Spatial units tracked (layer ids are 4 bits on the wire).
const UNITS: usize = 16;

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct LayerFilter {
    /// Simulcast (units are encodings, each with its own keyframes) or
    /// one stream (units are spatial layers, all starting at the stream's
    /// keyframe).
    simulcast: bool,
    /// `None`: no word yet, send everything. `Some(None)`: nothing wanted.
    wanted: Option<Option<(u8, u8)>>,
    /// Units being sent (as opposed to waiting for a keyframe).
    open: [bool; UNITS],
}

/// A keyframe the origin should ask its publisher for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyframeFor {
    /// One simulcast encoding.
    Encoding(u8),
    /// The whole stream.
    Stream,
}

impl LayerFilter {
    /// A filter for a track of `encodings` simulcast encodings (1: none).
    pub(crate) fn new(encodings: u8) -> Self {
        Self {
            simulcast: encodings > 1,
            wanted: None,
            open: [true; UNITS],
        }
    }

    /// The downstream server wants these layers now. Returns the keyframes
    /// to ask for: one per simulcast encoding that became wanted, or the
    /// stream's when its spatial layers did.
    pub(crate) fn set_wanted(
        &mut self,
        wanted: Option<(u8, u8)>,
        mut keyframe: impl FnMut(KeyframeFor),
    ) {
        // Units wanted before: still waiting for a keyframe, they were
        // asked for one already (the downstream selector asks again).
        let before = match self.wanted {
            None => Some(UNITS),
            Some(w) => w.map(|(s, _)| usize::from(s)),
        };
        self.wanted = Some(wanted);
        let top = wanted.map(|(s, _)| usize::from(s));
        let mut stream_keyframe = false;
        for (unit, open) in self.open.iter_mut().enumerate() {
            let want = top.is_some_and(|t| unit <= t);
            let new = before.is_none_or(|b| unit > b);
            if want && !*open && new {
                // Opened by the next keyframe; ask for one now.
                if self.simulcast {
                    keyframe(KeyframeFor::Encoding(unit as u8));
                } else {
                    stream_keyframe = true;
                }
            }
            if !want {
                *open = false;
            }
        }
        if stream_keyframe {
            keyframe(KeyframeFor::Stream);
        }
    }

    /// Whether to relay a packet with these facts (`keyframe`: it starts
    /// one).
    pub(crate) fn pass(&mut self, l: &LayerFacts, keyframe: bool) -> bool {
        let Some(wanted) = self.wanted else {
            return true;
        };
        let Some((spatial, temporal)) = wanted else {
            return false;
        };
        let unit = if self.simulcast {
            l.encoding
        } else {
            l.spatial
        };
        if unit > spatial || l.temporal > temporal {
            return false;
        }
        let unit = usize::from(unit).min(UNITS - 1);
        if keyframe {
            if self.simulcast {
                self.open[unit] = true;
            } else {
                // The stream's keyframe starts every spatial layer.
                for open in &mut self.open[..=usize::from(spatial).min(UNITS - 1)] {
                    *open = true;
                }
            }
        }
        self.open[unit]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(encoding: u8, spatial: u8, temporal: u8) -> LayerFacts {
        LayerFacts {
            encoding,
            spatial,
            temporal,
            ..LayerFacts::default()
        }
    }

    fn keyframes(f: &mut LayerFilter, wanted: Option<(u8, u8)>) -> Vec<KeyframeFor> {
        let mut out = Vec::new();
        f.set_wanted(wanted, |k| out.push(k));
        out
    }

    #[test]
    fn without_word_everything_passes() {
        let mut f = LayerFilter::new(3);
        for e in 0..3 {
            for t in 0..3 {
                assert!(f.pass(&facts(e, 0, t), false));
            }
        }
    }

    #[test]
    fn simulcast_upper_encodings_stop_and_resume_at_their_keyframe() {
        let mut f = LayerFilter::new(3);
        assert_eq!(keyframes(&mut f, Some((0, 2))), vec![]);
        assert!(f.pass(&facts(0, 0, 2), false));
        assert!(!f.pass(&facts(1, 0, 0), false));
        assert!(!f.pass(&facts(2, 0, 0), true));
        // Up to encoding 2: a keyframe asked for each encoding turned on.
        assert_eq!(
            keyframes(&mut f, Some((2, 2))),
            vec![KeyframeFor::Encoding(1), KeyframeFor::Encoding(2)]
        );
        // Deltas wait for the keyframe of their own encoding.
        assert!(!f.pass(&facts(2, 0, 0), false));
        assert!(!f.pass(&facts(1, 0, 0), false));
        assert!(f.pass(&facts(2, 0, 0), true));
        assert!(f.pass(&facts(2, 0, 1), false));
        assert!(!f.pass(&facts(1, 0, 1), false));
        // Unchanged wants ask for nothing more.
        assert_eq!(keyframes(&mut f, Some((2, 2))), vec![]);
    }

    #[test]
    fn temporal_layers_above_the_wanted_one_stop_and_resume_at_once() {
        let mut f = LayerFilter::new(1);
        assert_eq!(keyframes(&mut f, Some((0, 0))), vec![]);
        assert!(f.pass(&facts(0, 0, 0), false));
        assert!(!f.pass(&facts(0, 0, 1), false));
        assert_eq!(keyframes(&mut f, Some((0, 2))), vec![]);
        assert!(f.pass(&facts(0, 0, 2), false));
    }

    #[test]
    fn svc_spatial_layers_resume_at_the_stream_keyframe() {
        let mut f = LayerFilter::new(1);
        assert_eq!(keyframes(&mut f, Some((0, 2))), vec![]);
        assert!(!f.pass(&facts(0, 1, 0), false));
        assert_eq!(keyframes(&mut f, Some((2, 2))), vec![KeyframeFor::Stream]);
        assert!(!f.pass(&facts(0, 2, 0), false));
        // The keyframe (spatial 0) opens the upper layers of that picture.
        assert!(f.pass(&facts(0, 0, 0), true));
        assert!(f.pass(&facts(0, 1, 0), false));
        assert!(f.pass(&facts(0, 2, 0), false));
    }

    #[test]
    fn nothing_wanted_stops_everything_until_a_keyframe() {
        let mut f = LayerFilter::new(1);
        assert_eq!(keyframes(&mut f, None), vec![]);
        assert!(!f.pass(&facts(0, 0, 0), true));
        assert_eq!(keyframes(&mut f, Some((0, 0))), vec![KeyframeFor::Stream]);
        assert!(!f.pass(&facts(0, 0, 0), false));
        assert!(f.pass(&facts(0, 0, 0), true));
        assert!(f.pass(&facts(0, 0, 0), false));
    }
}
