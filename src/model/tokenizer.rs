//! Text ↔ token ids through the `tokenizers` crate, loaded offline from `tokenizer.json`.

use std::path::Path;

use anyhow::{Context, Result, anyhow};

/// What to do with an input longer than the model accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    Truncate,
    Error,
}

/// The input was longer than the model's limit and truncation was not allowed.
#[derive(Debug, thiserror::Error)]
#[error("input has {tokens} tokens, more than the model's limit of {limit}")]
pub struct InputTooLong {
    pub tokens: usize,
    pub limit: usize,
}

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("loading tokenizer {}: {e}", path.display()))?;
        // Padding and truncation are the model's business (batching, limits), not the tokenizer's:
        // some shipped tokenizer.json files pad everything to 128.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| anyhow!("disabling truncation: {e}"))?;
        Ok(Self { inner })
    }

    /// Token ids of `text`, with the tokenizer's own special tokens when `add_special` is set.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| anyhow!("detokenizing: {e}"))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_id_or(&self, token: &str) -> Result<u32> {
        self.token_id(token)
            .with_context(|| format!("tokenizer has no `{token}` token"))
    }
}

/// Shortens `ids` to `limit` tokens keeping the last one (the closing special token, e.g. [SEP] or
/// </s>), or fails, as `overflow` says.
pub fn fit_to_limit(
    mut ids: Vec<u32>,
    limit: usize,
    overflow: Overflow,
) -> Result<Vec<u32>, InputTooLong> {
    if ids.len() <= limit {
        return Ok(ids);
    }
    match overflow {
        Overflow::Error => Err(InputTooLong {
            tokens: ids.len(),
            limit,
        }),
        Overflow::Truncate => {
            let last = *ids.last().unwrap();
            ids.truncate(limit.saturating_sub(1));
            ids.push(last);
            Ok(ids)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_to_limit_keeps_closing_token() {
        assert_eq!(
            fit_to_limit(vec![1, 2, 3, 4], 3, Overflow::Truncate).unwrap(),
            vec![1, 2, 4]
        );
        assert!(fit_to_limit(vec![1, 2, 3, 4], 3, Overflow::Error).is_err());
        assert_eq!(
            fit_to_limit(vec![1, 2], 3, Overflow::Error).unwrap(),
            vec![1, 2]
        );
    }
}
