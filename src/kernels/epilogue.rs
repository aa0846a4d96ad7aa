//! The one activation function type: what model configs name (`relu`, `gelu`, ...) and what the
//! kernels' epilogues apply after the bias. ReLU and exact GELU are vectorized in `simd`; the
//! others run lane by lane through the same scalar functions, so every path agrees bit for bit.

use super::simd::gelu;

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
            Self::Silu => y / (1.0 + (-y).exp()),
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
}
