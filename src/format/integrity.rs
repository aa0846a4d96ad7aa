//! Content checks of weight files: a folder's `SHA256SUMS` (the `sha256sum` format, written by
//! `quantserve quantize` and `quantserve fetch`, committed beside the committed models) lists the
//! sha256 of its weight files, and every weight file it lists is checked when it is read, so a
//! corrupted or altered file is a load error naming the file instead of silently different
//! scores. A folder without a manifest (a user's own model) is read unchecked, with a warning.

use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The manifest's file name, in the folder of the files it lists.
pub const MANIFEST: &str = "SHA256SUMS";

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sha256 the manifest beside `path` records for it, if there is a manifest that lists it.
fn recorded(path: &Path) -> Result<Option<String>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(None);
    };
    let manifest = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&manifest) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", manifest.display())),
    };
    for line in text.lines() {
        // `<hex>  <file>` (or `<hex> *<file>`, sha256sum's binary mode).
        let Some((hash, file)) = line.split_once(' ') else {
            continue;
        };
        if file.trim_start_matches([' ', '*']) == name {
            return Ok(Some(hash.to_ascii_lowercase()));
        }
    }
    Ok(None)
}

/// Fails, naming the file, when the manifest beside `path` records another sha256 for `bytes`
/// (the file's content, already read).
pub fn check(path: &Path, bytes: &[u8]) -> Result<()> {
    match recorded(path)? {
        Some(want) => {
            let got = sha256_hex(bytes);
            if got != want {
                bail!(
                    "{} is corrupted or was altered: its sha256 is {got}, {MANIFEST} records {want}",
                    path.display()
                );
            }
        }
        None => tracing::warn!(
            file = %path.display(),
            "no {MANIFEST} entry for this weight file: its content is not checked"
        ),
    }
    Ok(())
}

/// Writes `dir/SHA256SUMS` listing `files` (names inside `dir`).
pub fn write_manifest(dir: &Path, files: &[&str]) -> Result<()> {
    let mut text = String::new();
    for f in files {
        let bytes = std::fs::read(dir.join(f)).with_context(|| format!("reading {f}"))?;
        text.push_str(&format!("{}  {f}\n", sha256_hex(&bytes)));
    }
    std::fs::write(dir.join(MANIFEST), text).with_context(|| format!("writing {MANIFEST}"))
}

/// Whether `name` is a weight file a manifest should list.
pub fn is_weight_file(name: &str) -> bool {
    name.ends_with(".safetensors") || (name.starts_with("model") && name.ends_with(".bin"))
}
