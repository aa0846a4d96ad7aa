//! Which instruction-set path runs: the CPU's features, the `QUANTSERVE_ISA` override, and the
//! one place an [`Isa`] is matched to its code ([`Isa::kernels`]). A new ISA path is a variant
//! here, its detection, and one [`Kernels`] table naming its functions in `int8/`, `lowbit/`.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use super::int8::{self, Job};
use super::lowbit::{self, TileJob};

/// Environment variable that forces an ISA path: `amx`, `avx512vnni`, `avxvnni`, `avx2`, `scalar`
/// or `auto`.
pub const ISA_ENV_VAR: &str = "QUANTSERVE_ISA";

/// An instruction-set path of the kernels, fastest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Intel AMX `tdpbusd` on 16×16 tiles for blocks of ≥ 16 rows (amx-tile + amx-int8, the
    /// kernel's tile-data permission, and the AVX-512 VNNI features for the epilogue and for the
    /// rows that do not fill a tile, which run the `Avx512Vnni` code).
    Amx,
    /// 512-bit `vpdpbusd` (avx512f + avx512bw + avx512vnni).
    Avx512Vnni,
    /// 256-bit VEX `vpdpbusd` (avxvnni + avx2 + fma).
    AvxVnni,
    /// `vpmaddubsw` + `vpmaddwd` on `|a|` and the weights XOR the activations' sign masks, plus
    /// a per-row correction (avx2 + fma): exact for every code, no s16 saturation.
    Avx2,
    /// Portable Rust.
    Scalar,
}

impl Isa {
    /// Every path, fastest first.
    pub const ALL: [Isa; 5] = [
        Isa::Amx,
        Isa::Avx512Vnni,
        Isa::AvxVnni,
        Isa::Avx2,
        Isa::Scalar,
    ];

    /// The name used by [`ISA_ENV_VAR`] and [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Isa::Amx => "amx",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx2 => "avx2",
            Isa::Scalar => "scalar",
        }
    }

    /// The CPU features this path needs, as `is_x86_feature_detected!` names them.
    pub fn required_features(self) -> &'static str {
        match self {
            Isa::Amx => {
                "amx-tile, amx-int8 with tile data permitted (Linux), avx512f, avx512bw, avx512vnni"
            }
            Isa::Avx512Vnni => "avx512f, avx512bw, avx512vnni",
            Isa::AvxVnni => "avxvnni, avx2, fma",
            Isa::Avx2 => "avx2, fma",
            Isa::Scalar => "none",
        }
    }

    /// Whether this CPU can run the path (the detection result is cached by std; for `Amx`,
    /// once per process by amx.rs, which also requests the tile permission and logs the outcome).
    pub fn is_available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Amx => crate::kernels::int8::amx::usable(),
                Isa::Avx512Vnni => {
                    is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vnni")
                }
                Isa::AvxVnni => {
                    is_x86_feature_detected!("avxvnni")
                        && is_x86_feature_detected!("avx2")
                        && is_x86_feature_detected!("fma")
                }
                Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                Isa::Scalar => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Scalar
        }
    }

    /// The fastest path this CPU supports, ignoring [`ISA_ENV_VAR`].
    pub fn best_available() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.is_available())
            .unwrap_or(Isa::Scalar)
    }

    /// Every path this CPU supports, fastest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }

    /// `Ok(self)` if the CPU supports the path, otherwise an error naming the missing features.
    pub fn ensure_available(self) -> Result<Isa, IsaError> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(IsaError::Unavailable(self))
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = IsaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| IsaError::Unknown(s.to_string()))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IsaError {
    #[error("unknown ISA {0:?}: expected one of amx, avx512vnni, avxvnni, avx2, scalar or auto")]
    Unknown(String),
    #[error(
        "ISA {0} was requested but this CPU lacks the features it needs ({features})",
        features = .0.required_features()
    )]
    Unavailable(Isa),
}

/// The path to use for a setting such as a config value or [`ISA_ENV_VAR`]: `None`, `""` or
/// `"auto"` pick the fastest available path; a named path is refused if the CPU lacks it.
pub fn isa_from_setting(setting: Option<&str>) -> Result<Isa, IsaError> {
    match setting.map(str::trim) {
        None | Some("") => Ok(Isa::best_available()),
        Some(s) if s.eq_ignore_ascii_case("auto") => Ok(Isa::best_available()),
        Some(s) => s.parse::<Isa>()?.ensure_available(),
    }
}

/// The path to use, honouring [`ISA_ENV_VAR`]; read on every call, so call it once at start-up.
pub fn detect_isa() -> Result<Isa, IsaError> {
    let setting = std::env::var(ISA_ENV_VAR).ok();
    isa_from_setting(setting.as_deref())
}

/// The kernel path for this process: the best the CPU has, or [`ISA_ENV_VAR`]. Checked once,
/// when the first quantized layer is built, so a bad setting fails at load time, not mid-request.
pub fn kernel_isa() -> anyhow::Result<Isa> {
    static ISA: std::sync::OnceLock<Result<Isa, String>> = std::sync::OnceLock::new();
    ISA.get_or_init(|| detect_isa().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// The kernels of one ISA path. Each runs on a part of a call that the call's driver (in
/// `int8/mod.rs`, `lowbit/mod.rs`) split off, so an indirect call per unit or row costs nothing
/// measurable.
pub(crate) struct Kernels {
    /// Quantizes one activation row to u8 (`q + 128`); returns its scale.
    ///
    /// Safety: the CPU must support the ISA; `q` holds `x.len()` bytes rounded up to 4.
    pub(crate) quantize_row: unsafe fn(&[f32], &mut [u8]) -> f32,
    /// int8 GEMM of rows × panels of a job.
    ///
    /// Safety: the CPU must support the ISA; the job's output covers those rows and panels' columns
    /// and no other thread writes them meanwhile.
    pub(crate) int8_unit: unsafe fn(&Job, Range<usize>, Range<usize>),
    /// Low-bit GEMM of one 64-column tile, every row (same contract).
    pub(crate) lowbit_tile: unsafe fn(&TileJob),
}

impl Isa {
    /// The kernels of this path. The caller checks [`Isa::is_available`] before running them.
    pub(crate) fn kernels(self) -> &'static Kernels {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                // AMX runs the AVX-512 code for everything but its row blocks of 16.
                Isa::Amx => &Kernels {
                    quantize_row: int8::quantize_row_avx512,
                    int8_unit: int8::amx::run,
                    lowbit_tile: lowbit::avx512::tile,
                },
                Isa::Avx512Vnni => &Kernels {
                    quantize_row: int8::quantize_row_avx512,
                    int8_unit: int8::avx512vnni::run,
                    lowbit_tile: lowbit::avx512::tile,
                },
                Isa::AvxVnni => &Kernels {
                    quantize_row: int8::quantize_row_avx2,
                    int8_unit: int8::avxvnni::run,
                    lowbit_tile: lowbit::avx2::tile_vnni,
                },
                Isa::Avx2 => &Kernels {
                    quantize_row: int8::quantize_row_avx2,
                    int8_unit: int8::avx2::run,
                    lowbit_tile: lowbit::avx2::tile_avx2,
                },
                Isa::Scalar => &SCALAR,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            &SCALAR
        }
    }
}

/// The portable path, and the only one off x86.
static SCALAR: Kernels = Kernels {
    quantize_row: int8::quantize_row_portable,
    int8_unit: int8::scalar::run,
    lowbit_tile: lowbit::scalar::tile,
};
