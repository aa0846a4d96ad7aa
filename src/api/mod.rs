//! The HTTP/JSON API over the runtime.

pub mod errors;
pub mod http;
pub mod openapi;
pub mod serve;
pub mod wire;
