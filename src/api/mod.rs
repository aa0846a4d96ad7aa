//! The HTTP/JSON and gRPC APIs over the runtime.

pub mod admin;
pub mod errors;
pub mod grpc;
pub mod http;
pub mod openapi;
pub mod serve;
pub mod wire;
