//! Element-wise math every kernel shares, once per vector width: exact GELU through a
//! faithfully rounded erf, and the activation step of the epilogues. `avx512.rs` and `avx2.rs`
//! repeat the scalar sequence of IEEE operations exactly (plain multiplies and adds where the
//! scalar code has them, fused multiply-adds where it has those, selects instead of branches), so
//! every ISA path gives bit-identical outputs. Nothing here relies on the compiler contracting or
//! reassociating floating-point math (Rust never does).

/// The vector versions of [`gelu`] (through [`erf`]) and of `Activation::activate`, written once
/// over a width's primitives: `$v` the vector type, `$feature` its target features, `$lanes` its
/// f32 lanes, then the intrinsics for splat, fused multiply-add, mul, div, add, sub, min, max, zero,
/// unaligned load and store, and four helpers each width defines itself: `abs`, `with_sign_of`
/// (OR in a sign bit), `select_gt` (`a > b ? x : y`, ordered) and `pow2` (2^k for integral k).
///
/// They are `#[inline(always)] unsafe fn`s without target features (Rust allows no
/// `inline(always)` on `target_feature` functions): inlined into the kernels' store loops, which
/// have the features, they compile to straight vector code, where an out-of-line call would
/// spill every accumulator register. Safety: the caller runs with `$feature`.
#[cfg(target_arch = "x86_64")]
macro_rules! vector_math {
    (
        $v:ty, $feature:literal, $lanes:literal,
        $splat:ident, $fma:ident, $mul:ident, $div:ident, $add:ident, $sub:ident, $min:ident, $max:ident,
        $zero:ident, $load:ident, $store:ident
    ) => {
        /// `Activation::activate` on every lane.
        ///
        /// # Safety
        /// The CPU must support the width's features.
        #[inline(always)]
        pub(crate) unsafe fn activate(y: $v, activation: Activation) -> $v {
            // SAFETY: the caller runs with the width's features.
            unsafe {
                match activation {
                    Activation::None => y,
                    Activation::Relu => $max(y, $zero()),
                    Activation::Gelu => gelu(y),
                    Activation::Silu => silu(y),
                    _ => by_lane(y, activation),
                }
            }
        }

        /// Activations no served model fuses, lane by lane through the scalar function; out of
        /// line, so that the store loops stay small.
        #[cold]
        #[inline(never)]
        #[target_feature(enable = $feature)]
        fn by_lane(y: $v, activation: Activation) -> $v {
            let mut lanes = [0.0f32; $lanes];
            // SAFETY: `lanes` holds one vector of f32.
            unsafe { $store(lanes.as_mut_ptr(), y) };
            lanes.iter_mut().for_each(|v| *v = activation.activate(*v));
            // SAFETY: as above.
            unsafe { $load(lanes.as_ptr()) }
        }

        /// [`super::gelu`] on every lane.
        ///
        /// # Safety
        /// The CPU must support the width's features.
        #[inline(always)]
        pub(crate) unsafe fn gelu(x: $v) -> $v {
            let mut x = [x];
            // SAFETY: the caller runs with the width's features.
            unsafe { gelu_n(&mut x) };
            x[0]
        }

        /// [`gelu`] on `N` vectors at once, each step applied to all of them before the next:
        /// the same operations on every lane, but `N` independent dependency chains in flight.
        /// One vector's erf is a chain of ~25 dependent multiply-adds, which on its own leaves
        /// the FMA pipes idle most of the time.
        ///
        /// # Safety
        /// The CPU must support the width's features.
        #[inline(always)]
        #[allow(clippy::needless_range_loop)] // index-parallel steps over equal-length arrays
        pub(crate) unsafe fn gelu_n<const N: usize>(x: &mut [$v; N]) {
            // SAFETY: the caller runs with the width's features.
            unsafe {
                let mut e = [$zero(); N];
                for i in 0..N {
                    e[i] = $mul(x[i], $splat(FRAC_1_SQRT_2));
                }
                erf_n(&mut e);
                for i in 0..N {
                    let half_x = $mul(x[i], $splat(0.5));
                    x[i] = $mul(half_x, $add($splat(1.0), e[i]));
                }
            }
        }

        /// [`super::erf`] on every lane of `N` vectors, in place: both branches, then a select.
        #[inline(always)]
        #[allow(clippy::needless_range_loop)] // index-parallel steps over equal-length arrays
        unsafe fn erf_n<const N: usize>(x: &mut [$v; N]) {
            // SAFETY: the caller runs with the width's features.
            unsafe {
                let fma = |a, b, c| $fma(a, b, c);
                let (mut small, mut tc, mut r, mut u) =
                    ([$zero(); N], [$zero(); N], [$zero(); N], [$zero(); N]);
                for i in 0..N {
                    let s = $mul(x[i], x[i]);
                    r[i] = fma($splat(ERF_S0), s, $splat(ERF_S1));
                    r[i] = fma(r[i], s, $splat(ERF_S2));
                    r[i] = fma(r[i], s, $splat(ERF_S3));
                    r[i] = fma(r[i], s, $splat(ERF_S4));
                    r[i] = fma(r[i], s, $splat(ERF_S5));
                }
                for i in 0..N {
                    small[i] = fma(r[i], x[i], x[i]);
                    tc[i] = $min(abs(x[i]), $splat(ERF_CLAMP));
                }
                for i in 0..N {
                    let sc = $mul(tc[i], tc[i]);
                    r[i] = fma($splat(ERF_L0), tc[i], $splat(ERF_L1));
                    u[i] = fma($splat(ERF_L2), tc[i], $splat(ERF_L3));
                    r[i] = fma(r[i], sc, u[i]);
                }
                for i in 0..N {
                    r[i] = fma(r[i], tc[i], $splat(ERF_L4));
                    r[i] = fma(r[i], tc[i], $splat(ERF_L5));
                    r[i] = fma(r[i], tc[i], $splat(ERF_L6));
                    r[i] = fma(r[i], tc[i], $sub($zero(), tc[i]));
                }
                exp_for_erf_n(&mut r);
                for i in 0..N {
                    let magnitude = $sub($splat(1.0), r[i]);
                    // copysign: the magnitude is positive, so OR-ing in the sign bit of x is
                    // exact.
                    let large = with_sign_of(magnitude, x[i]);
                    x[i] = select_gt(abs(x[i]), $splat(ERF_SPLIT), large, small[i]);
                }
            }
        }

        /// [`super::silu`] on every lane.
        ///
        /// # Safety
        /// The CPU must support the width's features.
        #[inline(always)]
        pub(crate) unsafe fn silu(y: $v) -> $v {
            // SAFETY: the caller runs with the width's features.
            unsafe {
                let e = exp_nonpositive($sub($zero(), abs(y)));
                let numerator = select_gt($zero(), y, e, $splat(1.0));
                $mul(y, $div(numerator, $add($splat(1.0), e)))
            }
        }

        /// [`super::exp_nonpositive`] on every lane.
        ///
        /// # Safety
        /// The CPU must support the width's features.
        #[inline(always)]
        pub(crate) unsafe fn exp_nonpositive(x: $v) -> $v {
            // SAFETY: the caller runs with the width's features.
            unsafe {
                let mut x = [$max($min(x, $zero()), $splat(EXP_MIN))];
                exp_for_erf_n(&mut x);
                x[0]
            }
        }

        /// `exp` for arguments in [-87, 0] on every lane of `N` vectors, in place, as
        /// [`super::exp_for_erf`].
        #[inline(always)]
        #[allow(clippy::needless_range_loop)] // index-parallel steps over equal-length arrays
        unsafe fn exp_for_erf_n<const N: usize>(x: &mut [$v; N]) {
            // SAFETY: the caller runs with the width's features.
            unsafe {
                let fma = |a, b, c| $fma(a, b, c);
                let magic = $splat(ROUND_MAGIC);
                let (mut k, mut f) = ([$zero(); N], [$zero(); N]);
                for i in 0..N {
                    k[i] = $sub(fma(x[i], $splat(LOG2_E), magic), magic);
                    f[i] = fma(k[i], $splat(-LN2_HI), x[i]);
                    f[i] = fma(k[i], $splat(-LN2_LO), f[i]);
                }
                for i in 0..N {
                    let p = fma($splat(EXP_P0), f[i], $splat(EXP_P1));
                    let p = fma(p, f[i], $splat(EXP_P2));
                    let p = fma(p, f[i], $splat(EXP_P3));
                    let p = fma(p, f[i], $splat(EXP_P4));
                    let p = fma(p, f[i], $splat(EXP_P5));
                    let p = $add(fma(p, $mul(f[i], f[i]), f[i]), $splat(1.0));
                    x[i] = $mul(p, pow2(k[i]));
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

use std::f32::consts::{FRAC_1_SQRT_2, LN_2, LOG2_E};

/// Exact GELU, `x · Φ(x) = 0.5 · x · (1 + erf(x / √2))`; absolute error < 1e-6 for |x| ≤ 10.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let e = erf(x * FRAC_1_SQRT_2);
    (x * 0.5) * (1.0 + e)
}

// erf after N. Juffa's faithfully rounded `erff` (max error < 1 ulp): an odd polynomial up to
// |x| = 0.9277, beyond it `1 − exp(p(|x|))`. Clamping |x| at 4 keeps `exp` in range; erf(4)
// already rounds to 1.0 in f32.
pub(super) const ERF_SPLIT: f32 = 475.0 / 512.0;
pub(super) const ERF_CLAMP: f32 = 4.0;
pub(super) const ERF_S0: f32 = -5.967_617e-4;
pub(super) const ERF_S1: f32 = 4.991_194_2e-3;
pub(super) const ERF_S2: f32 = -2.676_813_5e-2;
pub(super) const ERF_S3: f32 = 1.128_199_25e-1;
pub(super) const ERF_S4: f32 = -3.761_253_4e-1;
pub(super) const ERF_S5: f32 = 1.283_791_7e-1;
pub(super) const ERF_L0: f32 = -1.728_534_7e-5;
pub(super) const ERF_L1: f32 = 3.831_971_3e-4;
pub(super) const ERF_L2: f32 = -3.883_964_4e-3;
pub(super) const ERF_L3: f32 = 2.425_462_2e-2;
pub(super) const ERF_L4: f32 = -1.067_778_8e-1;
pub(super) const ERF_L5: f32 = -6.348_467e-1;
pub(super) const ERF_L6: f32 = -1.287_175_1e-1;

// exp for arguments in [-87, 0] (erf needs [-18, 0]): round-to-nearest range reduction by ln 2 (the 1.5·2^23 trick,
// exact in IEEE arithmetic), Cephes `expf` polynomial, scale by 2^k built from the exponent bits.
pub(super) const ROUND_MAGIC: f32 = 12_582_912.0;
pub(super) const LN2_HI: f32 = LN_2;
pub(super) const LN2_LO: f32 = -1.904_654_2e-9;
pub(super) const EXP_P0: f32 = 1.987_569_1e-4;
pub(super) const EXP_P1: f32 = 1.398_199_9e-3;
pub(super) const EXP_P2: f32 = 8.333_452e-3;
pub(super) const EXP_P3: f32 = 4.166_579_6e-2;
pub(super) const EXP_P4: f32 = 1.666_666_6e-1;
pub(super) const EXP_P5: f32 = 0.5;

/// The error function, max error ≈ 1 ulp; identical bits to the vector versions.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let t = x.abs();
    if t > ERF_SPLIT {
        let t = t.min(ERF_CLAMP);
        let s = t * t;
        let r = ERF_L0.mul_add(t, ERF_L1);
        let u = ERF_L2.mul_add(t, ERF_L3);
        let r = r.mul_add(s, u);
        let r = r.mul_add(t, ERF_L4);
        let r = r.mul_add(t, ERF_L5);
        let r = r.mul_add(t, ERF_L6);
        let r = r.mul_add(t, -t);
        (1.0 - exp_for_erf(r)).copysign(x)
    } else {
        let s = x * x;
        let r = ERF_S0.mul_add(s, ERF_S1);
        let r = r.mul_add(s, ERF_S2);
        let r = r.mul_add(s, ERF_S3);
        let r = r.mul_add(s, ERF_S4);
        let r = r.mul_add(s, ERF_S5);
        r.mul_add(x, x)
    }
}

/// SiLU (swish), `y · σ(y)`, with σ from `e = exp(−|y|)` (never overflows): `1 / (1 + e)` for
/// y ≥ 0, `e / (1 + e)` below. The vector versions compute exactly the same bits (Opus-MT's FFN
/// activation: through libm's `expf` one lane at a time it was 7.6 % of Opus-MT decoding).
#[inline(always)]
pub fn silu(y: f32) -> f32 {
    let e = exp_nonpositive(-y.abs());
    // `0 > y` (false for NaN and −0.0), as the vector select compares.
    let numerator = if 0.0 > y { e } else { 1.0 };
    y * (numerator / (1.0 + e))
}

/// The lowest argument of [`exp_nonpositive`]: 2^k stays a normal float above it.
pub(super) const EXP_MIN: f32 = -87.0;

/// `exp(x)` for `x ≤ 0` (softmax after subtracting the row maximum), clamped to `[-87, 0]`
/// (exp(-87) ≈ 1.6e-38; below that the result is that), within ~1 ulp; the vector versions
/// compute exactly the same bits.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    exp_for_erf(x.clamp(EXP_MIN, 0.0))
}

#[inline(always)]
pub(super) fn exp_for_erf(x: f32) -> f32 {
    let k = x.mul_add(LOG2_E, ROUND_MAGIC) - ROUND_MAGIC;
    let f = k.mul_add(-LN2_HI, x);
    let f = k.mul_add(-LN2_LO, f);
    let p = EXP_P0.mul_add(f, EXP_P1);
    let p = p.mul_add(f, EXP_P2);
    let p = p.mul_add(f, EXP_P3);
    let p = p.mul_add(f, EXP_P4);
    let p = p.mul_add(f, EXP_P5);
    let p = p.mul_add(f * f, f) + 1.0;
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}
