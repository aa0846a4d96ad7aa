//! `quantserve fetch PATH`: registers a Marian model the user has (a folder, or a `.zip` /
//! `.tar` / `.tar.gz` archive holding one) as `<models>/<pair>/fp32`, where `<pair>` is the
//! language pair its files name (Opus-MT's `tokenizer_config.json`, Bergamot's
//! `model_info.json`) or `--pair`. The model is loaded once first, so only a folder that
//! serves is registered.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use super::kind::language_pair;
use crate::models::marian::{MarianTranslator, is_hf_dir};

/// Whether `dir` looks like a Marian model folder this build loads.
fn is_model_dir(dir: &Path) -> bool {
    if is_hf_dir(dir) {
        return true;
    }
    let has = |suffix: &str| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(suffix))
        })
    };
    dir.join("tokenizer.json").is_file() && has(".bin")
}

/// The model folder at or under `dir` (archives often wrap it in a folder or two).
fn find_model_dir(dir: &Path, depth: usize) -> Option<PathBuf> {
    if is_model_dir(dir) {
        return Some(dir.to_path_buf());
    }
    if depth == 0 {
        return None;
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    subdirs
        .into_iter()
        .find_map(|d| find_model_dir(&d, depth - 1))
}

/// Unpacks `archive` into `dest` (zip with the zip crate, tar archives with the system's `tar`).
fn unpack(archive: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest)?;
    let name = archive.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".zip") {
        let file = std::fs::File::open(archive)?;
        let mut zip = zip::ZipArchive::new(file)
            .with_context(|| format!("{} is not a zip archive", archive.display()))?;
        // `extract` refuses entries that would land outside `dest`.
        zip.extract(dest)
            .with_context(|| format!("unpacking {}", archive.display()))?;
        return Ok(());
    }
    if [".tar", ".tar.gz", ".tgz"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        let status = Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(dest)
            .status()
            .context("running tar")?;
        ensure!(
            status.success(),
            "tar could not unpack {}",
            archive.display()
        );
        return Ok(());
    }
    bail!(
        "{}: not a folder, .zip, .tar or .tar.gz archive",
        archive.display()
    )
}

/// Copies the files of `src` (not its sub-folders) into `dest`, written under a temporary name
/// and renamed, so an interrupted import leaves no half model.
fn copy_model(src: &Path, dest: &Path) -> Result<usize> {
    let tmp = dest.with_extension(format!("partial-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    let mut n = 0;
    for e in std::fs::read_dir(src)?.flatten() {
        let p = e.path();
        if p.is_file() {
            std::fs::copy(&p, tmp.join(e.file_name()))
                .with_context(|| format!("copying {}", p.display()))?;
            n += 1;
        }
    }
    std::fs::rename(&tmp, dest).with_context(|| format!("moving into {}", dest.display()))?;
    Ok(n)
}

/// Registers the Marian model at `path` in the repository `root`; returns its name (the pair)
/// and folder.
pub fn import_marian(root: &Path, path: &Path, pair: Option<&str>) -> Result<(String, PathBuf)> {
    ensure!(path.exists(), "{} does not exist", path.display());
    let unpacked = root
        .join("_downloads")
        .join(format!("import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&unpacked);
    let source = if path.is_dir() {
        path.to_path_buf()
    } else {
        unpack(path, &unpacked)?;
        unpacked.clone()
    };
    let result = (|| {
        let dir = find_model_dir(&source, 3).with_context(|| {
            format!(
                "no Marian model folder in {} (an Opus-MT folder has config.json, \
                 model.safetensors, source.spm and vocab.json; a Bergamot one a model .bin and \
                 tokenizer.json)",
                path.display()
            )
        })?;
        let name = match pair {
            Some(p) => {
                let (s, t) = p
                    .split_once('-')
                    .context("--pair must read SOURCE-TARGET")?;
                ensure!(
                    !s.is_empty() && !t.is_empty() && !t.contains('-'),
                    "--pair must read SOURCE-TARGET, e.g. en-de"
                );
                p.to_string()
            }
            None => {
                let (s, t) = language_pair(&dir, "").context(
                    "the model's files do not name its languages; pass --pair SOURCE-TARGET",
                )?;
                format!("{s}-{t}")
            }
        };
        MarianTranslator::load(&dir)
            .with_context(|| format!("{} does not load as a Marian model", dir.display()))?;
        let dest = root.join(&name).join("fp32");
        ensure!(
            !dest.exists(),
            "{} exists already; remove it to import again",
            dest.display()
        );
        std::fs::create_dir_all(dest.parent().unwrap())?;
        copy_model(&dir, &dest)?;
        Ok((name, dest))
    })();
    let _ = std::fs::remove_dir_all(&unpacked);
    result
}
