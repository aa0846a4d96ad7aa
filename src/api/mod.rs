//! The HTTP/JSON and gRPC APIs over the runtime.

pub mod admin;
pub mod auth;
pub mod docs;
pub mod errors;
pub mod grpc;
pub mod http;
pub mod libretranslate;
pub mod openai;
pub mod openapi;
pub mod request_id;
pub mod serve;
pub mod tei;
pub mod wire;
