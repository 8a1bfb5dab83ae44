//! The template dependency structure of the Dependency Descriptor (AV1 RTP spec
//! §A.8.2): sent on key frames, cached by the receiver, referred to by template id.

use super::bits::{BitReader, BitWriter};
use super::dependency_descriptor::DdError;

/// Most templates a structure can hold (the template id is 6 bits).
pub const MAX_TEMPLATES: usize = 64;
/// Most decode targets (`dt_cnt_minus_one` is 5 bits).
pub const MAX_DECODE_TARGETS: usize = 32;
/// Most frame diffs kept per frame or template; longer lists are rejected, not truncated.
pub const MAX_FDIFFS: usize = 8;
/// Most spatial layers (AV1's spatial id is 2 bits).
pub const MAX_SPATIAL_LAYERS: usize = 4;
/// Most temporal layers (AV1's temporal id is 3 bits).
pub const MAX_TEMPORAL_LAYERS: usize = 8;

/// Decode target indication (AV1 RTP spec table A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dti {
    /// The frame is not part of the decode target.
    NotPresent,
    /// Part of the decode target, but no later frame of it depends on this one.
    Discardable,
    /// A switch point: decoding the target can start here.
    Switch,
    /// Part of the decode target and needed by later frames.
    Required,
}

impl Dti {
    fn from_bits(v: u32) -> Self {
        match v & 3 {
            0 => Self::NotPresent,
            1 => Self::Discardable,
            2 => Self::Switch,
            _ => Self::Required,
        }
    }

    fn bits(self) -> u32 {
        match self {
            Self::NotPresent => 0,
            Self::Discardable => 1,
            Self::Switch => 2,
            Self::Required => 3,
        }
    }
}

/// One DTI per decode target, packed two bits each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Dtis {
    bits: u64,
    len: u8,
}

impl Dtis {
    /// Builds from a list of at most [`MAX_DECODE_TARGETS`] indications.
    pub fn from_slice(dtis: &[Dti]) -> Result<Self, DdError> {
        if dtis.len() > MAX_DECODE_TARGETS {
            return Err(DdError::Invalid("too many decode targets"));
        }
        let mut s = Self::default();
        for &d in dtis {
            s.push(d);
        }
        Ok(s)
    }

    fn push(&mut self, d: Dti) {
        self.bits |= u64::from(d.bits()) << (2 * u32::from(self.len));
        self.len += 1;
    }

    /// Number of decode targets.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True when there are no decode targets.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The indication for decode target `dt`.
    pub fn get(&self, dt: usize) -> Option<Dti> {
        (dt < self.len()).then(|| Dti::from_bits((self.bits >> (2 * dt)) as u32))
    }

    /// The indications in decode-target order.
    pub fn iter(&self) -> impl Iterator<Item = Dti> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    fn read(r: &mut BitReader<'_>, n: usize) -> Result<Self, DdError> {
        let mut s = Self::default();
        for _ in 0..n {
            s.push(Dti::from_bits(r.f(2)?));
        }
        Ok(s)
    }

    fn write(&self, w: &mut BitWriter<'_>) -> Result<(), DdError> {
        self.iter().try_for_each(|d| w.f(d.bits(), 2))
    }
}

/// A short list of frame diffs (how many frames back a dependency lies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FrameDiffs {
    values: [u16; MAX_FDIFFS],
    len: u8,
}

impl FrameDiffs {
    /// Builds from at most [`MAX_FDIFFS`] values.
    pub fn from_slice(v: &[u16]) -> Result<Self, DdError> {
        let mut s = Self::default();
        s.values
            .get_mut(..v.len())
            .ok_or(DdError::TooManyFrameDiffs)?
            .copy_from_slice(v);
        s.len = v.len() as u8; // <= MAX_FDIFFS, checked by the slice above
        Ok(s)
    }

    pub(crate) fn push(&mut self, v: u16) -> Result<(), DdError> {
        *self
            .values
            .get_mut(usize::from(self.len))
            .ok_or(DdError::TooManyFrameDiffs)? = v;
        self.len += 1;
        Ok(())
    }

    /// The diffs as a slice.
    pub fn as_slice(&self) -> &[u16] {
        &self.values[..usize::from(self.len)]
    }
}

/// Chain diffs: per chain, frames since the last frame of that chain (0 = none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ChainDiffs {
    values: [u8; MAX_DECODE_TARGETS],
    len: u8,
}

impl ChainDiffs {
    /// Builds from at most [`MAX_DECODE_TARGETS`] values.
    pub fn from_slice(v: &[u8]) -> Result<Self, DdError> {
        let mut s = Self::default();
        s.values
            .get_mut(..v.len())
            .ok_or(DdError::Invalid("too many chains"))?
            .copy_from_slice(v);
        s.len = v.len() as u8; // <= MAX_DECODE_TARGETS, checked by the slice above
        Ok(s)
    }

    pub(crate) fn read(r: &mut BitReader<'_>, n: usize, bits: u32) -> Result<Self, DdError> {
        let mut s = Self::default();
        for slot in s.values.iter_mut().take(n) {
            *slot = r.f(bits)? as u8; // bits <= 8
        }
        s.len = n.min(MAX_DECODE_TARGETS) as u8;
        Ok(s)
    }

    /// The diffs as a slice.
    pub fn as_slice(&self) -> &[u8] {
        &self.values[..usize::from(self.len)]
    }
}

/// One frame dependency template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FrameTemplate {
    /// Spatial id of frames using this template.
    pub spatial_id: u8,
    /// Temporal id of frames using this template.
    pub temporal_id: u8,
    /// One DTI per decode target.
    pub dtis: Dtis,
    /// Frame diffs, each 1..=16.
    pub fdiffs: FrameDiffs,
    /// One chain diff per chain, each 0..=15.
    pub chain_diffs: ChainDiffs,
}

/// Render resolution of one spatial layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RenderResolution {
    /// Width in pixels, 1..=65536.
    pub width: u32,
    /// Height in pixels, 1..=65536.
    pub height: u32,
}

/// A template dependency structure; later descriptors refer to its templates by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DependencyStructure {
    template_id_offset: u8,
    decode_target_count: u8,
    chain_count: u8,
    template_count: u8,
    templates: [FrameTemplate; MAX_TEMPLATES],
    protected_by_chain: [u8; MAX_DECODE_TARGETS],
    resolutions: Option<[RenderResolution; MAX_SPATIAL_LAYERS]>,
}

impl DependencyStructure {
    /// Builds a structure, checking the invariants the wire format needs: templates
    /// ordered by spatial then temporal id starting at (0, 0), one DTI per decode
    /// target and one chain diff per chain, diffs in range, and one resolution per
    /// spatial layer if any.
    pub fn new(
        template_id_offset: u8,
        decode_target_count: u8,
        chain_count: u8,
        templates: &[FrameTemplate],
        protected_by_chain: &[u8],
        resolutions: Option<&[RenderResolution]>,
    ) -> Result<Self, DdError> {
        let dt = usize::from(decode_target_count);
        let chains = usize::from(chain_count);
        if template_id_offset >= 64 || !(1..=MAX_DECODE_TARGETS).contains(&dt) || chains > dt {
            return Err(DdError::Invalid("structure counts out of range"));
        }
        if templates.is_empty() || templates.len() > MAX_TEMPLATES {
            return Err(DdError::Invalid("template count out of range"));
        }
        let mut prev = (0u8, 0u8);
        for (i, t) in templates.iter().enumerate() {
            let cur = (t.spatial_id, t.temporal_id);
            let ok = if i == 0 {
                cur == (0, 0)
            } else {
                cur == prev || cur == (prev.0, prev.1 + 1) || cur == (prev.0 + 1, 0)
            };
            if !ok
                || usize::from(t.spatial_id) >= MAX_SPATIAL_LAYERS
                || usize::from(t.temporal_id) >= MAX_TEMPORAL_LAYERS
            {
                return Err(DdError::Invalid("template layer order"));
            }
            prev = cur;
            if t.dtis.len() != dt || t.chain_diffs.as_slice().len() != chains {
                return Err(DdError::Invalid("template DTI or chain count"));
            }
            if t.fdiffs.as_slice().iter().any(|&d| !(1..=16).contains(&d))
                || t.chain_diffs.as_slice().iter().any(|&d| d > 15)
            {
                return Err(DdError::Invalid("template diff out of range"));
            }
        }
        if protected_by_chain.len() != if chains == 0 { 0 } else { dt }
            || protected_by_chain.iter().any(|&c| c >= chain_count)
        {
            return Err(DdError::Invalid("decode_target_protected_by_chain"));
        }
        let mut s = Self {
            template_id_offset,
            decode_target_count,
            chain_count,
            template_count: templates.len() as u8, // <= 64, checked above
            templates: [FrameTemplate::default(); MAX_TEMPLATES],
            protected_by_chain: [0; MAX_DECODE_TARGETS],
            resolutions: None,
        };
        s.templates[..templates.len()].copy_from_slice(templates);
        s.protected_by_chain[..protected_by_chain.len()].copy_from_slice(protected_by_chain);
        if let Some(res) = resolutions {
            if res.len() != s.spatial_layer_count()
                || res
                    .iter()
                    .any(|r| !(1..=65536).contains(&r.width) || !(1..=65536).contains(&r.height))
            {
                return Err(DdError::Invalid("resolutions"));
            }
            let mut all = [RenderResolution::default(); MAX_SPATIAL_LAYERS];
            all[..res.len()].copy_from_slice(res);
            s.resolutions = Some(all);
        }
        Ok(s)
    }

    /// Template id of the first template.
    pub fn template_id_offset(&self) -> u8 {
        self.template_id_offset
    }

    /// Number of decode targets.
    pub fn decode_target_count(&self) -> u8 {
        self.decode_target_count
    }

    /// Number of chains.
    pub fn chain_count(&self) -> u8 {
        self.chain_count
    }

    /// The templates, in template-index order.
    pub fn templates(&self) -> &[FrameTemplate] {
        &self.templates[..usize::from(self.template_count)]
    }

    /// The template a descriptor's `frame_dependency_template_id` names.
    pub fn template(&self, template_id: u8) -> Result<&FrameTemplate, DdError> {
        let index = (usize::from(template_id) + 64 - usize::from(self.template_id_offset)) % 64;
        self.templates()
            .get(index)
            .ok_or(DdError::UnknownTemplate(template_id))
    }

    /// For each decode target, the chain that protects it (empty without chains).
    pub fn decode_target_protected_by_chain(&self) -> &[u8] {
        let n = if self.chain_count == 0 {
            0
        } else {
            usize::from(self.decode_target_count)
        };
        &self.protected_by_chain[..n]
    }

    /// Number of spatial layers (highest template spatial id + 1).
    pub fn spatial_layer_count(&self) -> usize {
        self.templates()
            .last()
            .map_or(1, |t| usize::from(t.spatial_id) + 1)
    }

    /// Number of temporal layers (highest template temporal id + 1).
    pub fn temporal_layer_count(&self) -> usize {
        self.templates()
            .iter()
            .map(|t| usize::from(t.temporal_id) + 1)
            .max()
            .unwrap_or(1)
    }

    /// Render resolution per spatial layer, if the structure carries them.
    pub fn resolutions(&self) -> Option<&[RenderResolution]> {
        let n = self.spatial_layer_count();
        self.resolutions.as_ref().map(|r| &r[..n])
    }

    /// Highest spatial and temporal id of decode target `dt` (spec `decode_target_layers`).
    pub fn decode_target_layers(&self, dt: usize) -> Option<(u8, u8)> {
        if dt >= usize::from(self.decode_target_count) {
            return None;
        }
        let mut layers = (0, 0);
        for t in self.templates() {
            if t.dtis.get(dt) != Some(Dti::NotPresent) {
                layers.0 = layers.0.max(t.spatial_id);
                layers.1 = layers.1.max(t.temporal_id);
            }
        }
        Some(layers)
    }

    /// The highest temporal layer a decoder can switch up to at a frame with
    /// `dtis`: the largest temporal id among the decode targets for which
    /// the frame is a switch indication, `None` if it is one for none.
    ///
    /// A frame is often the switch point of a layer *above* its own (in
    /// `L1T3`, the T1 frame is where a decoder may join T2), so its own
    /// temporal id does not say how far up a switch may go.
    pub fn switch_up_to(&self, dtis: &Dtis) -> Option<u8> {
        dtis.iter()
            .enumerate()
            .filter(|(_, d)| *d == Dti::Switch)
            .filter_map(|(dt, _)| self.decode_target_layers(dt))
            .map(|(_, t)| t)
            .max()
    }

    /// Bitmask with one bit set per decode target.
    pub fn all_decode_targets(&self) -> u32 {
        u32::MAX >> (32 - u32::from(self.decode_target_count))
    }

    pub(crate) fn read(r: &mut BitReader<'_>) -> Result<Self, DdError> {
        let template_id_offset = r.f(6)? as u8;
        let dt_cnt = r.f(5)? as usize + 1;
        let mut s = Self {
            template_id_offset,
            decode_target_count: dt_cnt as u8,
            chain_count: 0,
            template_count: 0,
            templates: [FrameTemplate::default(); MAX_TEMPLATES],
            protected_by_chain: [0; MAX_DECODE_TARGETS],
            resolutions: None,
        };
        // template_layers()
        let (mut sid, mut tid) = (0u8, 0u8);
        loop {
            let t = s
                .templates
                .get_mut(usize::from(s.template_count))
                .ok_or(DdError::Invalid("more than 64 templates"))?;
            t.spatial_id = sid;
            t.temporal_id = tid;
            s.template_count += 1;
            match r.f(2)? {
                0 => {}
                1 => tid += 1,
                2 => (sid, tid) = (sid + 1, 0),
                _ => break,
            }
            if usize::from(sid) >= MAX_SPATIAL_LAYERS || usize::from(tid) >= MAX_TEMPORAL_LAYERS {
                return Err(DdError::Invalid("layer id out of range"));
            }
        }
        let count = usize::from(s.template_count);
        for t in &mut s.templates[..count] {
            t.dtis = Dtis::read(r, dt_cnt)?;
        }
        for t in &mut s.templates[..count] {
            while r.bit()? {
                t.fdiffs.push(r.f(4)? as u16 + 1)?;
            }
        }
        // template_chains()
        let chains = r.ns(dt_cnt as u32 + 1)? as usize;
        s.chain_count = chains as u8;
        if chains > 0 {
            // ns(chains), as the published spec and libwebrtc have it; early drafts
            // used ns(chains + 1) with "unprotected" as a value.
            for p in &mut s.protected_by_chain[..dt_cnt] {
                *p = r.ns(chains as u32)? as u8;
            }
            for t in &mut s.templates[..count] {
                t.chain_diffs = ChainDiffs::read(r, chains, 4)?;
            }
        }
        if r.bit()? {
            let mut res = [RenderResolution::default(); MAX_SPATIAL_LAYERS];
            for x in &mut res[..s.spatial_layer_count()] {
                x.width = r.f(16)? + 1;
                x.height = r.f(16)? + 1;
            }
            s.resolutions = Some(res);
        }
        Ok(s)
    }

    pub(crate) fn write(&self, w: &mut BitWriter<'_>) -> Result<(), DdError> {
        w.f(u32::from(self.template_id_offset), 6)?;
        w.f(u32::from(self.decode_target_count) - 1, 5)?;
        let templates = self.templates();
        for (i, t) in templates.iter().enumerate() {
            let idc = match templates.get(i + 1) {
                None => 3,
                Some(n) if n.spatial_id == t.spatial_id && n.temporal_id == t.temporal_id => 0,
                Some(n) if n.spatial_id == t.spatial_id => 1,
                Some(_) => 2,
            };
            w.f(idc, 2)?;
        }
        for t in templates {
            t.dtis.write(w)?;
        }
        for t in templates {
            for &d in t.fdiffs.as_slice() {
                w.bit(true)?;
                w.f(u32::from(d) - 1, 4)?;
            }
            w.bit(false)?;
        }
        w.ns(
            u32::from(self.chain_count),
            u32::from(self.decode_target_count) + 1,
        )?;
        if self.chain_count > 0 {
            for &p in self.decode_target_protected_by_chain() {
                w.ns(u32::from(p), u32::from(self.chain_count))?;
            }
            for t in templates {
                for &d in t.chain_diffs.as_slice() {
                    w.f(u32::from(d), 4)?;
                }
            }
        }
        w.bit(self.resolutions.is_some())?;
        for r in self.resolutions().unwrap_or(&[]) {
            w.f(r.width - 1, 16)?;
            w.f(r.height - 1, 16)?;
        }
        Ok(())
    }
}
