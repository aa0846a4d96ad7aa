//! `quantserve quantize`: turns a model's fp32 folder into a variant folder
//! (`variant.safetensors` + the tokenizer and config files the model needs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::format::{Int8Matrix, VARIANT_FILE, VariantInfo, quantize_int8, write_variant};
use crate::model::fetch::sha256_file;
use crate::model::marian_bin::MarianBin;
use crate::model::weights::TensorStore;

/// What `quantize` wrote.
#[derive(Debug)]
pub struct QuantizeReport {
    pub info: VariantInfo,
    pub quantized_tensors: usize,
    pub bytes: u64,
}

/// Marian metadata key holding the model's `model.yml`.
pub const MARIAN_YML_KEY: &str = "marian.model_yml";

fn copy_files(src: &Path, out: &Path, skip: impl Fn(&Path) -> bool) -> Result<()> {
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        if path.is_file() && !skip(&path) {
            std::fs::copy(&path, out.join(path.file_name().unwrap()))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

fn marian_model_file(src: &Path) -> Result<PathBuf> {
    std::fs::read_dir(src)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".bin") && !n.ends_with(".s2t.bin")
        })
        .with_context(|| format!("no Marian model (*.bin) in {}", src.display()))
}

/// Quantizes the model in `src` (an HF BERT folder or a Bergamot Marian folder) with `scheme`
/// into the folder `out`.
pub fn quantize_dir(src: &Path, scheme: &str, out: &Path) -> Result<QuantizeReport> {
    ensure!(src != out, "--out must differ from --model");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let is_bert = src.join("config.json").exists() && src.join("model.safetensors").exists();
    let mut count = 0usize;
    let info;
    if is_bert {
        ensure!(
            scheme == "int8",
            "scheme `{scheme}` is not available for BERT models (available: int8)"
        );
        let weights = src.join("model.safetensors");
        let store = TensorStore::from_safetensors(&weights)?;
        info = VariantInfo {
            scheme: scheme.into(),
            bits: 8,
            granularity: "per_channel".into(),
            model_kind: "bert".into(),
            source_sha256: sha256_file(&weights)?,
            quantserve_version: env!("CARGO_PKG_VERSION").into(),
        };
        // Every weight matrix, word embeddings included; position and token-type tables are tiny
        // and stay fp32.
        let select = |name: &str, shape: &[usize], data: &[f32]| -> Option<Int8Matrix> {
            let matrix = shape.len() == 2 && name.ends_with(".weight");
            let small_table =
                name.contains("position_embeddings") || name.contains("token_type_embeddings");
            (matrix && !small_table).then(|| quantize_int8(shape, data))
        };
        write_variant(
            &out.join(VARIANT_FILE),
            &store,
            |n, s, d| select(n, s, d).inspect(|_| count += 1),
            &info,
            HashMap::new(),
        )?;
        copy_files(src, out, |p| p.ends_with("model.safetensors"))?;
    } else {
        let model = marian_model_file(src)?;
        let bin = MarianBin::read(&model)?;
        let shipped = match scheme {
            "int8" => false,
            "int8-shipped" => true,
            other => bail!(
                "scheme `{other}` is not available for Marian models (available: int8, int8-shipped)"
            ),
        };
        info = VariantInfo {
            scheme: scheme.into(),
            bits: 8,
            granularity: if shipped { "per_tensor" } else { "per_channel" }.into(),
            model_kind: "marian".into(),
            source_sha256: sha256_file(&model)?,
            quantserve_version: env!("CARGO_PKG_VERSION").into(),
        };
        let select = |name: &str, shape: &[usize], data: &[f32]| -> Option<Int8Matrix> {
            // Weight matrices only: not the `*_Wo_ln_*` layer-norm vectors, nor activation scales.
            let matrix = name == "Wemb"
                || (name.contains("_W")
                    && !name.contains("_ln_")
                    && !name.ends_with("_QuantMultA"));
            if shape.len() != 2 || shape[0] < 2 || !matrix {
                return None;
            }
            if shipped {
                // The shipped codes, as they are: one multiplier per tensor, w = q / multiplier.
                let s = bin.shipped_int8.get(name)?;
                Some(Int8Matrix {
                    codes: s.codes.clone(),
                    scales: vec![1.0 / s.multiplier; shape[0]],
                })
            } else {
                Some(quantize_int8(shape, data))
            }
        };
        let extra = HashMap::from([(MARIAN_YML_KEY.to_string(), bin.model_yml.clone())]);
        write_variant(
            &out.join(VARIANT_FILE),
            &bin.tensors,
            |n, s, d| select(n, s, d).inspect(|_| count += 1),
            &info,
            extra,
        )?;
        copy_files(src, out, |p| p == model)?;
    }
    let bytes = std::fs::metadata(out.join(VARIANT_FILE))?.len();
    Ok(QuantizeReport {
        info,
        quantized_tensors: count,
        bytes,
    })
}
