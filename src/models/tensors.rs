//! Taking a model's layers out of a tensor store: the helpers every model family's loader uses,
//! and reading a variant file.

use std::path::Path;

use anyhow::{Context, Result, ensure};

use crate::format::{TensorStore, VariantInfo};
use crate::layers::LinearParts;
use crate::layers::encoder::Norm;

/// A dense layer's weight `w` (`[n_out, n_in]`, any stored form) and optional bias `b`.
pub fn take_linear(
    store: &mut TensorStore,
    w: &str,
    b: Option<&str>,
    n_out: usize,
    n_in: usize,
) -> Result<LinearParts> {
    let weight = store.take_weight(w, &[n_out, n_in])?;
    let bias = b.map(|b| store.take(b, &[n_out])).transpose()?;
    Ok(LinearParts {
        weight,
        bias,
        n_out,
        n_in,
    })
}

/// A layer norm's scale and bias, by their tensor names.
pub fn take_norm(store: &mut TensorStore, gamma: &str, beta: &str, d: usize) -> Result<Norm> {
    Ok(Norm {
        gamma: store.take(gamma, &[d])?,
        beta: store.take(beta, &[d])?,
    })
}

/// The hidden width of an FFN whose first matrix is the tensor `w1` (`[width, dim]`): the
/// configured width, or fewer units for a pruned model. The caller then takes `b1` and `w2` at
/// this width, so a bias or second matrix that disagrees is reported under its own name.
pub fn ffn_width(store: &TensorStore, w1: &str, configured: usize) -> Result<usize> {
    let shape = store
        .shape(w1)
        .with_context(|| format!("tensor `{w1}` is missing"))?;
    let width = shape.first().copied().unwrap_or(0);
    ensure!(
        shape.len() == 2 && (1..=configured).contains(&width),
        "tensor `{w1}` has shape {shape:?}: an FFN needs 1 to {configured} units"
    );
    Ok(width)
}

/// The tensors of a variant file meant for a `model_kind` model, after checking that this build
/// can read it.
pub fn read_variant(path: &Path, model_kind: &str) -> Result<(TensorStore, VariantInfo)> {
    let store = TensorStore::from_safetensors(path)?;
    let info = VariantInfo::from_metadata(&store.metadata, model_kind)
        .and_then(|info| crate::schemes::ensure_supported(&info).map(|()| info))
        .with_context(|| format!("{}", path.display()))?;
    Ok((store, info))
}
