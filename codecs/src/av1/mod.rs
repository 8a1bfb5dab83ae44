//! AV1: the RTP payload (aggregation header and OBU headers) and the Dependency
//! Descriptor header extension, which any video codec may use for layer info.

pub(crate) mod bits;
pub mod dependency_descriptor;
mod payload;
mod template_structure;

pub use dependency_descriptor::{
    DdError, DependencyDescriptor, DependencyStructure, FrameDependency,
};
pub use payload::{
    read_leb128, Av1Error, Av1Payload, ObuHeader, OBU_FRAME, OBU_FRAME_HEADER, OBU_SEQUENCE_HEADER,
    OBU_TEMPORAL_DELIMITER,
};
