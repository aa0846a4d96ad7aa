//! The one activation function type: what model configs name (`relu`, `gelu`, ...) and what the
//! kernels' epilogues apply after the bias. ReLU, exact GELU and SiLU are vectorized in `simd`
//! (the same operations as the scalar functions); the tanh GELU runs lane by lane through its
//! scalar function, so every path agrees bit for bit.

use super::simd::{gelu, silu};

/// Element-wise function applied after a layer's bias.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// The identity.
    #[default]
    None,
    /// `max(y, 0)`.
    Relu,
    /// Exact (erf-based) GELU, as PyTorch's `gelu(approximate='none')` (HF "gelu").
    Gelu,
    /// Tanh approximation (HF "gelu_new", "gelu_pytorch_tanh", "gelu_fast").
    GeluTanh,
    /// `x·σ(x)` (HF "silu" / "swish").
    Silu,
}

impl Activation {
    /// Parses an HF `hidden_act` / Marian activation name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "relu" => Self::Relu,
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "silu" | "swish" => Self::Silu,
            _ => return None,
        })
    }

    /// The activation of one element, as every vector path computes it.
    #[inline(always)]
    pub fn activate(self, y: f32) -> f32 {
        match self {
            Self::None => y,
            // Written as a select so that it matches `maxps(y, 0)` for −0.0 and NaN as well.
            Self::Relu => {
                if y > 0.0 {
                    y
                } else {
                    0.0
                }
            }
            Self::Gelu => gelu(y),
            Self::GeluTanh => {
                let c = (2.0 / std::f32::consts::PI).sqrt();
                0.5 * y * (1.0 + (c * (y + 0.044715 * y * y * y)).tanh())
            }
            Self::Silu => silu(y),
        }
    }

    /// Applies the activation to every element.
    pub fn apply(self, xs: &mut [f32]) {
        if self != Self::None {
            xs.iter_mut().for_each(|x| *x = self.activate(*x));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_known_values() {
        let mut g = vec![1.0, -1.0];
        Activation::Gelu.apply(&mut g);
        assert!((g[0] - 0.841_344_7).abs() < 1e-6 && (g[1] + 0.158_655_3).abs() < 1e-6);
    }

    /// SiLU against f64 over ±100 (both sides of the exp clamp), and the vector versions give
    /// the scalar bits on every lane.
    #[test]
    fn silu_is_accurate_and_the_same_on_every_width() {
        let xs: Vec<f32> = (-4000..=4000)
            .map(|i| i as f32 * 0.025)
            .chain([-0.0, 1e-30, -1e-30, 88.5, -88.5])
            .collect();
        for &x in &xs {
            let want = f64::from(x) / (1.0 + (-f64::from(x)).exp());
            let got = f64::from(Activation::Silu.activate(x));
            assert!(
                (got - want).abs() <= 3e-7 * want.abs() + 1e-30,
                "silu({x}) = {got}, want {want}"
            );
        }
        assert_eq!(
            Activation::Silu.activate(-0.0).to_bits(),
            (-0.0f32).to_bits()
        );
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::*;
            let scalar: Vec<u32> = xs
                .iter()
                .map(|&x| Activation::Silu.activate(x).to_bits())
                .collect();
            if is_x86_feature_detected!("avx512f") {
                for (chunk, want) in xs.chunks(16).zip(scalar.chunks(16)) {
                    let mut lanes = [0.0f32; 16];
                    lanes[..chunk.len()].copy_from_slice(chunk);
                    // SAFETY: avx512f is available; `lanes` holds 16 floats.
                    unsafe {
                        let y = crate::kernels::simd::avx512::activate(
                            _mm512_loadu_ps(lanes.as_ptr()),
                            Activation::Silu,
                        );
                        _mm512_storeu_ps(lanes.as_mut_ptr(), y);
                    }
                    let got: Vec<u32> = lanes[..chunk.len()].iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, want, "avx512 {chunk:?}");
                }
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                for (chunk, want) in xs.chunks(8).zip(scalar.chunks(8)) {
                    let mut lanes = [0.0f32; 8];
                    lanes[..chunk.len()].copy_from_slice(chunk);
                    // SAFETY: avx2 and fma are available; `lanes` holds 8 floats.
                    unsafe {
                        let y = crate::kernels::simd::avx2::activate(
                            _mm256_loadu_ps(lanes.as_ptr()),
                            Activation::Silu,
                        );
                        _mm256_storeu_ps(lanes.as_mut_ptr(), y);
                    }
                    let got: Vec<u32> = lanes[..chunk.len()].iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, want, "avx2 {chunk:?}");
                }
            }
        }
    }
}
