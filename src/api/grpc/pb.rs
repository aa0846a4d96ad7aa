//! The code `build.rs` generates from `proto/quantserve.proto`: messages, the `Inference` server
//! trait and a client generic over its transport.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("quantserve.v1");

/// The encoded `FileDescriptorSet` of `quantserve.proto`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/quantserve_descriptor.bin"));
