//! Text ↔ token ids through the `tokenizers` crate, loaded offline from `tokenizer.json` (or
//! converted from a SentencePiece model by `spm`, with the model's ids from a `vocab.json`).

use std::collections::HashMap;
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
    /// Opus-MT: the model's ids are `vocab.json`'s, not the tokenizer's own.
    vocab: Option<PieceVocab>,
}

/// A model vocabulary over pieces (`vocab.json` of an Opus-MT model), as `MarianTokenizer` uses it.
pub struct PieceVocab {
    /// Model id of each tokenizer id (`<unk>`'s for a piece the vocabulary lacks).
    from_piece: Vec<u32>,
    ids: HashMap<String, u32>,
    /// Piece of each model id (empty where the vocabulary has a gap).
    pieces: Vec<String>,
    /// Ids that decoding drops: `</s>`, `<unk>`, `<pad>`.
    special: Vec<u32>,
}

impl PieceVocab {
    /// `model_vocab` is the model's vocabulary size: every id must be below it (ids come from a
    /// file, and size the piece table).
    pub fn new(
        ids: HashMap<String, u32>,
        tokenizer: &tokenizers::Tokenizer,
        model_vocab: usize,
    ) -> Result<Self> {
        if let Some((p, &i)) = ids.iter().find(|&(_, &i)| i as usize >= model_vocab) {
            anyhow::bail!("id {i} of {p:?} is outside the model's {model_vocab} tokens");
        }
        let unk = *ids.get("<unk>").context("vocab.json has no <unk>")?;
        let from_piece = (0..tokenizer.get_vocab_size(true) as u32)
            .map(|i| {
                tokenizer
                    .id_to_token(i)
                    .and_then(|p| ids.get(&p).copied())
                    .unwrap_or(unk)
            })
            .collect();
        let size = ids.values().max().map_or(0, |&m| m as usize + 1);
        let mut pieces = vec![String::new(); size];
        for (p, &i) in &ids {
            pieces[i as usize] = p.clone();
        }
        let special = ["</s>", "<unk>", "<pad>"]
            .iter()
            .filter_map(|t| ids.get(*t).copied())
            .collect();
        Ok(Self {
            from_piece,
            ids,
            pieces,
            special,
        })
    }

    /// A leading language code (`>>por<<`, multilingual Opus-MT) is one token, as in `MarianTokenizer`.
    fn split_language_code<'a>(&self, text: &'a str) -> (Option<u32>, &'a str) {
        match text.strip_prefix(">>").and_then(|rest| rest.find("<<")) {
            Some(end) => {
                let code = &text[..end + 4];
                let id = self.ids.get(code).or_else(|| self.ids.get("<unk>"));
                (id.copied(), &text[end + 4..])
            }
            None => (None, text),
        }
    }
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
        Ok(Self { inner, vocab: None })
    }

    /// A tokenizer whose ids are mapped into `vocab` (Opus-MT's `vocab.json`).
    pub fn with_vocab(inner: tokenizers::Tokenizer, vocab: PieceVocab) -> Self {
        Self {
            inner,
            vocab: Some(vocab),
        }
    }

    /// Token ids of `text`, with the tokenizer's own special tokens when `add_special` is set.
    /// (A `vocab.json` tokenizer has no special tokens of its own: the model appends `</s>`.)
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let Some(vocab) = &self.vocab else {
            let enc = self
                .inner
                .encode(text, add_special)
                .map_err(|e| anyhow!("tokenizing: {e}"))?;
            return Ok(enc.get_ids().to_vec());
        };
        let (code, text) = vocab.split_language_code(text);
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(code
            .into_iter()
            .chain(enc.get_ids().iter().map(|&i| vocab.from_piece[i as usize]))
            .collect())
    }

    /// Token ids of a sentence pair with the tokenizer's pair template (`[CLS] a [SEP] b [SEP]`).
    pub fn encode_pair(&self, first: &str, second: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode((first, second), true)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids` (ids outside the vocabulary are refused), with or without special tokens.
    pub fn decode_with(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let size = self.vocab_size();
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= size) {
            return Err(anyhow!(
                "token id {bad} is outside the vocabulary of {size}"
            ));
        }
        if self.vocab.is_some() {
            return self.decode(ids);
        }
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| anyhow!("detokenizing: {e}"))
    }

    /// Every token of `text`: id, the input's text it covers (the token string for special
    /// tokens), whether it is special, and its byte span.
    pub fn tokens(&self, text: &str, add_special: bool) -> Result<Vec<crate::models::TokenInfo>> {
        let enc = self
            .inner
            .encode(text, add_special)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        let mut out = Vec::with_capacity(enc.len());
        for i in 0..enc.len() {
            let special = enc.get_special_tokens_mask()[i] == 1;
            let (start, stop) = enc.get_offsets()[i];
            let token = &enc.get_tokens()[i];
            let covered = text.get(start..stop).filter(|_| !special && stop > start);
            out.push(crate::models::TokenInfo {
                id: enc.get_ids()[i],
                text: covered.map_or_else(|| token.clone(), str::to_string),
                special,
                span: (!special).then_some((start, stop)),
            });
        }
        Ok(out)
    }

    /// Text of `ids`, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let Some(vocab) = &self.vocab else {
            return self
                .inner
                .decode(ids, true)
                .map_err(|e| anyhow!("detokenizing: {e}"));
        };
        // SentencePiece decoding of the pieces: "▁" is a space, the first one is dropped.
        let mut text = String::new();
        for &id in ids.iter().filter(|id| !vocab.special.contains(id)) {
            text.push_str(vocab.pieces.get(id as usize).map_or("", String::as_str));
        }
        Ok(text.replace('▁', " ").trim().to_string())
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.vocab {
            Some(v) => v.ids.get(token).copied(),
            None => self.inner.token_to_id(token),
        }
    }

    /// The piece (token string) of model id `id`.
    pub fn piece(&self, id: u32) -> Option<String> {
        match &self.vocab {
            Some(v) => v.pieces.get(id as usize).filter(|p| !p.is_empty()).cloned(),
            None => self.inner.id_to_token(id),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match &self.vocab {
            Some(v) => v.pieces.len(),
            None => self.inner.get_vocab_size(true),
        }
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
