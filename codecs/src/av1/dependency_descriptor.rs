//! The Dependency Descriptor RTP header extension (AV1 RTP spec appendix A).
//!
//! A descriptor names a template of a [`DependencyStructure`] that a key frame
//! carried; the receiver caches that structure and resolves later descriptors
//! against it. Parsing yields the frame's layer ids, decode target indications,
//! frame diffs and chain diffs; the writer re-encodes a descriptor, which is how an
//! SFU that drops layers rewrites `active_decode_targets`.

use thiserror::Error;

use super::bits::{BitReader, BitWriter};
pub use super::template_structure::{
    ChainDiffs, DependencyStructure, Dti, Dtis, FrameDiffs, FrameTemplate, RenderResolution,
    MAX_DECODE_TARGETS, MAX_FDIFFS, MAX_SPATIAL_LAYERS, MAX_TEMPLATES, MAX_TEMPORAL_LAYERS,
};

/// Why a Dependency Descriptor cannot be parsed or written.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DdError {
    /// The descriptor ends before its fields do.
    #[error("dependency descriptor truncated")]
    Truncated,
    /// The caller's buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// No template structure is attached and none was cached.
    #[error("no template dependency structure known")]
    NoStructure,
    /// The template id does not name a template of the structure.
    #[error("unknown template id {0}")]
    UnknownTemplate(u8),
    /// More frame diffs than [`MAX_FDIFFS`].
    #[error("too many frame diffs")]
    TooManyFrameDiffs,
    /// A field violates the spec's constraints.
    #[error("invalid dependency descriptor: {0}")]
    Invalid(&'static str),
}

/// What a descriptor says about its frame, resolved against the template structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameDependency {
    /// Spatial id of the frame.
    pub spatial_id: u8,
    /// Temporal id of the frame.
    pub temporal_id: u8,
    /// One DTI per decode target.
    pub dtis: Dtis,
    /// Frame diffs of the frame's references.
    pub fdiffs: FrameDiffs,
    /// One chain diff per chain.
    pub chain_diffs: ChainDiffs,
    /// Render resolution of the frame's spatial layer, if the structure has them.
    pub resolution: Option<RenderResolution>,
}

/// A parsed Dependency Descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DependencyDescriptor {
    /// First packet of the frame.
    pub start_of_frame: bool,
    /// Last packet of the frame.
    pub end_of_frame: bool,
    /// `frame_dependency_template_id` (6 bits).
    pub template_id: u8,
    /// Frame number (16 bits, wraps).
    pub frame_number: u16,
    /// The packet carries a template dependency structure.
    pub structure_attached: bool,
    /// The `active_decode_targets_bitmask` when the packet states it explicitly.
    pub active_decode_targets: Option<u32>,
    /// The frame's DTIs are sent with it rather than taken from the template.
    pub custom_dtis: bool,
    /// The frame diffs are sent with it.
    pub custom_fdiffs: bool,
    /// The chain diffs are sent with it.
    pub custom_chains: bool,
    /// The resolved per-frame information.
    pub frame: FrameDependency,
}

impl DependencyDescriptor {
    /// Parses `data` (the extension value) against the attached structure if there is
    /// one, else `cached`.
    pub fn parse(data: &[u8], cached: Option<&DependencyStructure>) -> Result<Self, DdError> {
        let mut attached = None;
        parse_into(data, cached, &mut attached)
    }

    /// Parses `data` and, when it carries a structure, stores that structure in `cache`
    /// (only if the whole descriptor parses).
    pub fn parse_with_cache(
        data: &[u8],
        cache: &mut Option<DependencyStructure>,
    ) -> Result<Self, DdError> {
        let mut attached = None;
        let d = parse_into(data, cache.as_ref(), &mut attached)?;
        if attached.is_some() {
            *cache = attached;
        }
        Ok(d)
    }

    /// The active decode targets after this packet: the explicit mask, all targets
    /// when a structure is attached without one, else `None` (unchanged).
    pub fn effective_active_decode_targets(&self, structure: &DependencyStructure) -> Option<u32> {
        self.active_decode_targets.or_else(|| {
            self.structure_attached
                .then(|| structure.all_decode_targets())
        })
    }

    /// Writes the descriptor into `out` and returns its length.
    ///
    /// `structure` is written if `structure_attached` is set, and is used for the
    /// decode-target and chain counts either way. Per-frame values are written only
    /// where the `custom_*` flags say so; otherwise the template's apply.
    pub fn write(&self, structure: &DependencyStructure, out: &mut [u8]) -> Result<usize, DdError> {
        let dt_cnt = u32::from(structure.decode_target_count());
        if self.template_id >= 64 {
            return Err(DdError::Invalid("template id over 6 bits"));
        }
        // A descriptor naming no template would not parse back.
        structure.template(self.template_id)?;
        let extended = self.structure_attached
            || self.active_decode_targets.is_some()
            || self.custom_dtis
            || self.custom_fdiffs
            || self.custom_chains;
        let mut w = BitWriter::new(out);
        w.bit(self.start_of_frame)?;
        w.bit(self.end_of_frame)?;
        w.f(u32::from(self.template_id), 6)?;
        w.f(u32::from(self.frame_number), 16)?;
        if extended {
            w.bit(self.structure_attached)?;
            w.bit(self.active_decode_targets.is_some())?;
            w.bit(self.custom_dtis)?;
            w.bit(self.custom_fdiffs)?;
            w.bit(self.custom_chains)?;
            if self.structure_attached {
                structure.write(&mut w)?;
            }
            if let Some(mask) = self.active_decode_targets {
                w.f(mask, dt_cnt)?;
            }
        }
        if self.custom_dtis {
            if self.frame.dtis.len() != usize::from(structure.decode_target_count()) {
                return Err(DdError::Invalid("custom DTI count"));
            }
            for d in self.frame.dtis.iter() {
                w.f(dti_bits(d), 2)?;
            }
        }
        if self.custom_fdiffs {
            for &d in self.frame.fdiffs.as_slice() {
                let size = match d {
                    1..=16 => 1,
                    17..=256 => 2,
                    257..=4096 => 3,
                    _ => return Err(DdError::Invalid("frame diff out of range")),
                };
                w.f(size, 2)?;
                w.f(u32::from(d) - 1, 4 * size)?;
            }
            w.f(0, 2)?;
        }
        if self.custom_chains {
            if self.frame.chain_diffs.as_slice().len() != usize::from(structure.chain_count()) {
                return Err(DdError::Invalid("custom chain count"));
            }
            for &c in self.frame.chain_diffs.as_slice() {
                w.f(u32::from(c), 8)?;
            }
        }
        w.finish()
    }
}

fn dti_bits(d: Dti) -> u32 {
    match d {
        Dti::NotPresent => 0,
        Dti::Discardable => 1,
        Dti::Switch => 2,
        Dti::Required => 3,
    }
}

/// Rewrites the descriptor in `data` with `mask` as its active decode targets, into
/// `out`; returns the new length.
///
/// The result can be longer than the input (by the mask bits, or by the extended
/// flags byte when the input had none), so the caller rebuilds the extension block.
pub fn rewrite_active_decode_targets(
    data: &[u8],
    cached: Option<&DependencyStructure>,
    mask: u32,
    out: &mut [u8],
) -> Result<usize, DdError> {
    let mut attached = None;
    let mut d = parse_into(data, cached, &mut attached)?;
    let structure = attached.as_ref().or(cached).ok_or(DdError::NoStructure)?;
    d.active_decode_targets = Some(mask & structure.all_decode_targets());
    d.write(structure, out)
}

fn parse_into(
    data: &[u8],
    cached: Option<&DependencyStructure>,
    attached: &mut Option<DependencyStructure>,
) -> Result<DependencyDescriptor, DdError> {
    if data.len() < 3 {
        return Err(DdError::Truncated);
    }
    let mut r = BitReader::new(data);
    let start_of_frame = r.bit()?;
    let end_of_frame = r.bit()?;
    let template_id = r.f(6)? as u8;
    let frame_number = r.f(16)? as u16;
    let (mut structure_attached, mut active_present) = (false, false);
    let (mut custom_dtis, mut custom_fdiffs, mut custom_chains) = (false, false, false);
    let mut active_decode_targets = None;
    if data.len() > 3 {
        structure_attached = r.bit()?;
        active_present = r.bit()?;
        custom_dtis = r.bit()?;
        custom_fdiffs = r.bit()?;
        custom_chains = r.bit()?;
        if structure_attached {
            *attached = Some(DependencyStructure::read(&mut r)?);
        }
    }
    let structure = attached.as_ref().or(cached).ok_or(DdError::NoStructure)?;
    let dt_cnt = usize::from(structure.decode_target_count());
    if active_present {
        active_decode_targets = Some(r.f(dt_cnt as u32)?);
    }
    let template = structure.template(template_id)?;
    let mut frame = FrameDependency {
        spatial_id: template.spatial_id,
        temporal_id: template.temporal_id,
        dtis: template.dtis,
        fdiffs: template.fdiffs,
        chain_diffs: template.chain_diffs,
        resolution: structure
            .resolutions()
            .and_then(|r| r.get(usize::from(template.spatial_id)).copied()),
    };
    if custom_dtis {
        let mut dtis = [Dti::NotPresent; MAX_DECODE_TARGETS];
        // dt_cnt <= 32 = MAX_DECODE_TARGETS by the 5-bit field.
        for d in &mut dtis[..dt_cnt] {
            *d = match r.f(2)? {
                0 => Dti::NotPresent,
                1 => Dti::Discardable,
                2 => Dti::Switch,
                _ => Dti::Required,
            };
        }
        frame.dtis = Dtis::from_slice(&dtis[..dt_cnt])?;
    }
    if custom_fdiffs {
        frame.fdiffs = FrameDiffs::default();
        loop {
            let size = r.f(2)?;
            if size == 0 {
                break;
            }
            frame.fdiffs.push(r.f(4 * size)? as u16 + 1)?;
        }
    }
    if custom_chains {
        frame.chain_diffs = ChainDiffs::read(&mut r, usize::from(structure.chain_count()), 8)?;
    }
    Ok(DependencyDescriptor {
        start_of_frame,
        end_of_frame,
        template_id,
        frame_number,
        structure_attached,
        active_decode_targets,
        custom_dtis,
        custom_fdiffs,
        custom_chains,
        frame,
    })
}

#[cfg(test)]
#[path = "dependency_descriptor_tests.rs"]
mod tests;
