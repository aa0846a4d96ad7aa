//! Weight quantization schemes, one file per family, behind one trait and one registry.
//!
//! A scheme turns an fp32 matrix into a stored form (`layers::Weight`); `format` writes and
//! reads that form, `layers` builds kernels from it. The same [`Scheme::quantize`] runs for a
//! variant folder written by `quantserve quantize` and for a variant derived at load time, so
//! both give the same model.
//!
//! Names: `fp32`, `int8`, `int4`/`int6` (uniform symmetric, per output channel),
//! `int4-g<G>`/`int6-g<G>` (one scale per G columns, G a multiple of 64), `ternary` (TWN, one α
//! per matrix), `ternary-row` (one α per row), `bcq<q>` (q = 1..=4 binary planes, α per plane per
//! row). Token embedding tables take the same scheme per row (ternary: always per row, as
//! TernaryBERT).
//!
//! A new scheme: a file here implementing [`Scheme`] with a `parse` function, and one line in
//! [`FAMILIES`].

pub mod bcq;
pub mod fp32;
pub mod int8;
pub mod ternary;
pub mod uniform;

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use anyhow::{Result, bail};

use crate::format::{TensorStore, VariantInfo};
use crate::layers::Weight;

/// What a matrix is used for, where a scheme treats them differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A dense layer's weights `[out][in]`.
    Matrix,
    /// A token embedding table `[tokens][dim]`, read row by row.
    Embedding,
}

/// A weight storage scheme.
pub trait Scheme: Send + Sync + fmt::Debug {
    /// The scheme's name as variants and recipes spell it (`int4-g64`).
    fn name(&self) -> String;
    /// Nominal bits per weight code (bcq: planes); scales come on top.
    fn bits(&self) -> u32;
    /// What the scales cover, for the variant metadata (`per_channel`, `group_64`, ...).
    fn granularity(&self) -> String;
    /// The row-major `rows × cols` matrix `w` in this scheme's stored form.
    fn quantize(&self, w: &[f32], rows: usize, cols: usize, role: Role) -> Weight;
}

/// A family's parser: `None` when `name` is not one of its names, `Some(Err)` when it is but its
/// parameters are invalid.
type Parser = fn(&str) -> Option<Result<SchemeRef>>;

/// Every family, in the order names are tried.
const FAMILIES: &[Parser] = &[
    fp32::parse,
    int8::parse,
    uniform::parse,
    ternary::parse,
    bcq::parse,
];

/// A parsed scheme; equal to another when their names are.
#[derive(Clone)]
pub struct SchemeRef(Arc<dyn Scheme>);

impl SchemeRef {
    pub fn new(scheme: impl Scheme + 'static) -> Self {
        Self(Arc::new(scheme))
    }

    /// The scheme `variant` names.
    pub fn parse(variant: &str) -> Result<Self> {
        parse(variant)
    }

    pub fn is_fp32(&self) -> bool {
        self.name() == "fp32"
    }
}

impl Deref for SchemeRef {
    type Target = dyn Scheme;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl PartialEq for SchemeRef {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl fmt::Debug for SchemeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The scheme `variant` names.
pub fn parse(variant: &str) -> Result<SchemeRef> {
    for family in FAMILIES {
        if let Some(scheme) = family(variant) {
            return scheme;
        }
    }
    bail!(
        "unknown variant `{variant}` (available: fp32, int8, int4, int6[-g<G>], ternary, \
         ternary-row, bcq<1-4>)"
    )
}

/// The error for a name of a known family with invalid parameters.
pub(crate) fn invalid(variant: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "unknown variant `{variant}` (uniform bits must be 4 or 6, groups a multiple of 64, bcq \
         planes 1..=4)"
    )
}

/// Fails unless this build can run a variant file that `info` describes.
pub fn ensure_supported(info: &VariantInfo) -> Result<()> {
    let known = match info.scheme.as_str() {
        "int8-shipped" => info.bits == 8,
        // Each tensor carries its own format; `bits` is the widest block's.
        "mixed" => info.granularity == "recipe",
        s => parse(s).is_ok_and(|s| s.bits() == info.bits),
    };
    if !known {
        bail!(
            "variant scheme `{}` with {} bits is not supported by this build",
            info.scheme,
            info.bits
        );
    }
    Ok(())
}

/// Quantizes every fp32 matrix of `store` that `role_of(name, shape)` says a model uses as a
/// matrix or embedding table, with `scheme_for(name)` (fp32 leaves it as it is). The one place
/// a scheme meets a model's tensors: `quantserve quantize` writes the result, a variant derived
/// at load runs it.
pub fn quantize_store(
    store: &mut TensorStore,
    scheme_for: impl Fn(&str) -> SchemeRef,
    role_of: impl Fn(&str, &[usize]) -> Option<Role>,
) -> Result<()> {
    let progress = crate::progress::counter("quantize: tensors");
    let result = store.convert(|name, t| {
        let Some(role) = role_of(name, &t.shape) else {
            return Ok(None);
        };
        let scheme = scheme_for(name);
        if scheme.is_fp32() {
            return Ok(None);
        }
        anyhow::ensure!(t.shape.len() == 2, "only matrices are quantized");
        crate::format::ensure_finite(&t.data)?;
        progress.inc(1);
        Ok(Some(scheme.quantize(&t.data, t.shape[0], t.shape[1], role)))
    });
    progress.finish_and_clear();
    result
}
