//! fp32: the reference, kept as it is.

use anyhow::Result;

use super::{Role, Scheme, SchemeRef};
use crate::layers::Weight;

#[derive(Debug)]
pub struct Fp32;

pub(super) fn parse(name: &str) -> Option<Result<SchemeRef>> {
    (name == "fp32").then(|| Ok(SchemeRef::new(Fp32)))
}

impl Scheme for Fp32 {
    fn name(&self) -> String {
        "fp32".into()
    }

    fn bits(&self) -> u32 {
        32
    }

    fn granularity(&self) -> String {
        "none".into()
    }

    fn quantize(&self, w: &[f32], _rows: usize, _cols: usize, _role: Role) -> Weight {
        Weight::F32(w.to_vec())
    }
}
