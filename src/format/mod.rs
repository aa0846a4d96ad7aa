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

/// Metadata key holding a Marian model's `model.yml`.
pub const MARIAN_YML_KEY: &str = "marian.model_yml";
