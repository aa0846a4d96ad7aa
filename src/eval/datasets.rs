//! The committed evaluation sets: the sentiment split (`data/sentiment/*.tsv`, made by
//! `tools/make_sentiment_split.py`) and the 500 Bible verse pairs (`data/bible/sample500.tsv`,
//! made by `tools/make_bible_sample.py`).

use std::path::Path;

use anyhow::{Context, Result, ensure};

/// One labelled sentence.
pub struct LabelledText {
    pub label: String,
    pub text: String,
}

/// Reads `label\ttext` lines.
pub fn read_labelled(path: &Path) -> Result<Vec<LabelledText>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let (label, text) = l
                .split_once('\t')
                .with_context(|| format!("{}:{}: no tab", path.display(), i + 1))?;
            Ok(LabelledText {
                label: label.to_string(),
                text: text.to_string(),
            })
        })
        .collect()
}

/// Parallel sentences in one direction.
pub struct Parallel {
    pub sources: Vec<String>,
    pub references: Vec<String>,
}

/// Reads the Bible sample (`book chapter verse en pt`, with a header) in the direction `from → to`.
pub fn read_bible(path: &Path, from: &str, to: &str) -> Result<Parallel> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty file")?.split('\t').collect();
    let col = |lang: &str| {
        header
            .iter()
            .position(|h| *h == lang)
            .with_context(|| format!("{} has no `{lang}` column", path.display()))
    };
    let (src, tgt) = (col(from)?, col(to)?);
    let mut out = Parallel {
        sources: Vec::new(),
        references: Vec::new(),
    };
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        ensure!(
            fields.len() == header.len(),
            "{}:{}: expected {} fields",
            path.display(),
            i + 2,
            header.len()
        );
        out.sources.push(fields[src].to_string());
        out.references.push(fields[tgt].to_string());
    }
    Ok(out)
}
