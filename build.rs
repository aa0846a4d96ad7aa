//! Compiles `proto/quantserve.proto` into Rust (messages, server and client) with `protox`, a
//! protobuf compiler in pure Rust, so building needs no system `protoc`. The encoded descriptor
//! set is kept beside the generated code for the server's reflection service.
//!
//! `proto/sentencepiece_model.proto` (the fields of SentencePiece's model file that the Opus-MT
//! tokenizer conversion reads) is compiled the same way, messages only, outside the reflection set.

use std::error::Error;
use std::path::PathBuf;

use protox::prost::Message;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // With source info, so the generated code and reflection clients see the proto's comments.
    let fds = protox::compile(["quantserve.proto"], ["proto"])?;
    std::fs::write(
        out_dir.join("quantserve_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // `connect()` constructors would need tonic's client transport in the library.
        .build_transport(false)
        .compile_fds(fds)?;
    let spm = protox::compile(["sentencepiece_model.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        .compile_fds(spm)?;
    Ok(())
}
