//! What a model folder holds, decided in one place from its files: the task, and for a
//! translator the language pair it serves.

use std::path::Path;

use crate::models::Task;
use crate::models::embedder::is_sentence_dir;
use crate::models::marian::is_hf_dir;

/// A sentence-transformers folder (`modules.json` / `sentence_bert_config.json`) embeds; another
/// HF BERT folder (`config.json`) classifies; a Marian model has none (Bergamot), or is an
/// Opus-MT folder (`config.json` with `source.spm`).
pub fn detect_task(dir: &Path) -> Task {
    if is_sentence_dir(dir) {
        Task::Embed
    } else if dir.join("config.json").is_file() && !is_hf_dir(dir) {
        Task::Classify
    } else {
        Task::Translate
    }
}

/// The (source, target) language codes a translator folder serves: Opus-MT's
/// `tokenizer_config.json` (`source_lang`, `target_lang`), a Bergamot `model_info.json`
/// (`src`, `trg` language names), else the model's name when it reads `xx-yy`.
pub fn language_pair(dir: &Path, model: &str) -> Option<(String, String)> {
    let json = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
    };
    let pair = |a: Option<&str>, b: Option<&str>| Some((a?.to_string(), b?.to_string()));
    if let Some(c) = json("tokenizer_config.json")
        && let Some(p) = pair(c["source_lang"].as_str(), c["target_lang"].as_str())
    {
        return Some(p);
    }
    if let Some(c) = json("model_info.json")
        && let Some(p) = pair(
            c["src"].as_str().and_then(language_code),
            c["trg"].as_str().and_then(language_code),
        )
    {
        return Some(p);
    }
    let (a, b) = model.split_once('-')?;
    let code = |s: &str| (2..=3).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_lowercase());
    (code(a) && code(b)).then(|| (a.to_string(), b.to_string()))
}

/// ISO 639-1 code of a language's English name, for the languages Bergamot models cover.
fn language_code(name: &str) -> Option<&'static str> {
    const CODES: &[(&str, &str)] = &[
        ("English", "en"),
        ("Portuguese", "pt"),
        ("Spanish", "es"),
        ("French", "fr"),
        ("German", "de"),
        ("Italian", "it"),
        ("Czech", "cs"),
        ("Estonian", "et"),
        ("Polish", "pl"),
        ("Russian", "ru"),
        ("Ukrainian", "uk"),
        ("Bulgarian", "bg"),
        ("Icelandic", "is"),
        ("Norwegian Bokmål", "nb"),
        ("Norwegian Nynorsk", "nn"),
        ("Persian", "fa"),
        ("Dutch", "nl"),
    ];
    CODES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_come_from_the_files_then_the_name() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
        assert_eq!(
            language_pair(&root.join("tiny-marian/fp32"), "tiny-marian"),
            Some(("en".into(), "pt".into()))
        );
        let none = root.join("no-such-folder");
        assert_eq!(
            language_pair(&none, "de-en"),
            Some(("de".into(), "en".into()))
        );
        assert_eq!(language_pair(&none, "sentiment"), None);
        assert_eq!(language_pair(&none, "tiny-marian"), None);
    }
}
