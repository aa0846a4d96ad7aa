//! The HTTP/JSON and gRPC APIs over the runtime.

pub mod ab;
pub mod admin;
pub mod auth;
pub mod compare;
mod conn_io;
pub mod console;
pub mod docs;
pub mod errors;
pub mod grpc;
pub mod http;
pub mod json_body;
pub mod libretranslate;
pub mod listener;
pub mod middleware;
pub mod openai;
pub mod openapi;
pub mod request_id;
pub mod serve;
pub mod tei;
pub mod wire;
