//! The variant file and the model files quantserve reads: `variant.safetensors` (metadata,
//! tensor naming, read and write of every stored weight form) and Marian's `.bin`.

pub mod info;
pub mod integrity;
pub mod marian_bin;
pub mod naming;
pub mod store;
pub mod write;

pub use info::{VariantInfo, read_header_metadata};
pub use store::{Tensor, TensorStore};
pub use write::write_store;

/// The file of a variant folder written by `quantserve quantize`.
pub const VARIANT_FILE: &str = "variant.safetensors";
pub const FORMAT_VERSION: &str = "1";

/// Metadata key holding the recipe of a mixed-precision variant.
pub const RECIPE_KEY: &str = "quantserve.recipe";

/// Metadata key: how a trained variant was made (`tools/qat`: method, teacher and data hashes, steps, seed,
/// wall time), JSON text stored as given by `quantserve quantize --training-metadata`.
pub const TRAINING_KEY: &str = "quantserve.training";
/// The same JSON beside a variant file whose header predates the key (the first trained
/// folders were written before `--training-metadata` existed).
pub const TRAINING_FILE: &str = "training.json";

/// Metadata key holding a Marian model's `model.yml`.
pub const MARIAN_YML_KEY: &str = "marian.model_yml";

/// A NaN or infinite weight cannot be quantized (it would silently become 0 or poison a scale):
/// the caller names the tensor.
pub fn ensure_finite(w: &[f32]) -> anyhow::Result<()> {
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        anyhow::bail!(
            "weight {i} is {} (NaN or infinite weights cannot be used)",
            w[i]
        );
    }
    Ok(())
}
