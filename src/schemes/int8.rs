//! Symmetric int8 weights, one scale per output channel (embedding tables: per row); the
//! activations are quantized per token at run time by the int8 kernels.

use anyhow::Result;

use super::{Role, Scheme, SchemeRef};
use crate::kernels::int8::quantize::quantize_per_output_channel;
use crate::layers::{Int8Matrix, Weight};

#[derive(Debug)]
pub struct Int8;

pub(super) fn parse(name: &str) -> Option<Result<SchemeRef>> {
    (name == "int8").then(|| Ok(SchemeRef::new(Int8)))
}

impl Scheme for Int8 {
    fn name(&self) -> String {
        "int8".into()
    }

    fn bits(&self) -> u32 {
        8
    }

    fn granularity(&self) -> String {
        "per_channel".into()
    }

    fn quantize(&self, w: &[f32], rows: usize, cols: usize, _role: Role) -> Weight {
        let q = quantize_per_output_channel(w, rows, cols);
        Weight::Int8(Int8Matrix {
            codes: q.values,
            scales: q.scales,
        })
    }
}
