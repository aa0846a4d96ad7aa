//! API keys: `Authorization: Bearer <key>` over HTTP, the `authorization` metadata over gRPC.

use crate::runtime::Runtime;

/// Whether an `Authorization` value (`Bearer <key>`) passes: always when no API key is
/// configured. Shared with the gRPC front end (its `authorization` metadata).
pub fn authorized(rt: &Runtime, authorization: Option<&str>) -> bool {
    bearer_matches(rt.config.server.api_key.as_deref(), authorization)
}

/// Whether `authorization` is `Bearer <key>`; true when there is no key to check.
pub fn bearer_matches(key: Option<&str>, authorization: Option<&str>) -> bool {
    let Some(key) = key else {
        return true;
    };
    let given = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    same_secret(given.as_bytes(), key.as_bytes())
}

/// Compares without stopping at the first difference, so timing does not reveal the key.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
