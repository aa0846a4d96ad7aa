//! Distribution functions the experiment reports need, implemented here rather than pulled in
//! from a statistics crate: the normal CDF and quantile, log-gamma, the regularized incomplete
//! gamma function (for χ² tail probabilities), and binomial and hypergeometric probabilities.
//! Each is checked against closed forms or published values in the tests below.

use std::f64::consts::{PI, SQRT_2};

/// Relative precision the iterative evaluations stop at.
const EPS: f64 = 1e-15;
/// Keeps Lentz's continued fraction away from division by zero.
const TINY: f64 = 1e-300;

/// Standard normal CDF Φ(z), from `erfc` so the lower tail keeps full relative precision
/// (Φ(−8) ≈ 6.2e-16 rather than 0).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / SQRT_2)
}

/// Standard normal upper tail 1 − Φ(z), precise for large z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / SQRT_2)
}

/// Standard normal density φ(z).
pub fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * PI).sqrt()
}

/// Standard normal quantile Φ⁻¹(p): the Abramowitz & Stegun 26.2.23 rational approximation
/// (error < 4.5e-4) as a start, then Halley steps on the erfc-based CDF, which converge
/// cubically to full double precision. Works on the smaller tail so p near 1 keeps precision.
/// Returns ∓∞ at 0 and 1 and NaN outside [0, 1].
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let q = p.min(1.0 - p);
    let t = (-2.0 * q.ln()).sqrt();
    let upper = t
        - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
            / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t);
    // Solve Φ(x) = q for the lower-tail x < 0 (A&S gives the upper-tail point).
    let mut x = -upper;
    for _ in 0..3 {
        let density = normal_pdf(x);
        if density == 0.0 {
            break;
        }
        let u = (normal_cdf(x) - q) / density;
        x -= u / (1.0 + 0.5 * x * u);
    }
    if p < 0.5 { x } else { -x }
}

/// ln Γ(x) for x > 0 by the Lanczos approximation (g = 7, 9 terms; relative error ~1e-15),
/// with the reflection formula below 1/2.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Γ(x)Γ(1 − x) = π / sin(πx)
        return (PI / (PI * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln of the binomial coefficient C(n, k).
pub fn ln_choose(n: u64, k: u64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// ln B(a, b), the log of the Beta function.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// The regularized lower incomplete gamma function P(a, x) = γ(a, x) / Γ(a): by its power
/// series where x < a + 1 and as 1 − Q from the continued fraction elsewhere (Numerical
/// Recipes §6.2), each where it converges fast.
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x < a + 1.0 {
        gamma_series(a, x)
    } else {
        1.0 - gamma_continued_fraction(a, x)
    }
}

/// The regularized upper incomplete gamma function Q(a, x) = 1 − P(a, x), computed directly in
/// the upper tail so tiny tail probabilities keep their relative precision.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < a + 1.0 {
        1.0 - gamma_series(a, x)
    } else {
        gamma_continued_fraction(a, x)
    }
}

/// Common prefactor x^a e^−x / Γ(a), in logs.
fn gamma_prefactor(a: f64, x: f64) -> f64 {
    (a * x.ln() - x - ln_gamma(a)).exp()
}

fn gamma_series(a: f64, x: f64) -> f64 {
    let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
    for _ in 0..10_000 {
        ap += 1.0;
        term *= x / ap;
        sum += term;
        if term.abs() < sum.abs() * EPS {
            break;
        }
    }
    sum * gamma_prefactor(a, x)
}

/// Q(a, x) by the modified Lentz evaluation of its continued fraction.
fn gamma_continued_fraction(a: f64, x: f64) -> f64 {
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..10_000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    gamma_prefactor(a, x) * h
}

/// Upper tail P(χ²_k ≥ x) of the chi-squared distribution with k degrees of freedom:
/// Q(k/2, x/2).
pub fn chi2_sf(x: f64, k: f64) -> f64 {
    gamma_q(0.5 * k, 0.5 * x)
}

/// P(X = k) for X ~ Binomial(n, p).
pub fn binomial_pmf(k: u64, n: u64, p: f64) -> f64 {
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return if k == 0 { 1.0 } else { 0.0 };
    }
    if p >= 1.0 {
        return if k == n { 1.0 } else { 0.0 };
    }
    (ln_choose(n, k) + k as f64 * p.ln() + (n - k) as f64 * (-p).ln_1p()).exp()
}

/// P(X ≤ k) for X ~ Binomial(n, p), by summing the pmf over the shorter side.
pub fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    if k < n / 2 {
        (0..=k).map(|i| binomial_pmf(i, n, p)).sum::<f64>().min(1.0)
    } else {
        (1.0 - (k + 1..=n).map(|i| binomial_pmf(i, n, p)).sum::<f64>()).max(0.0)
    }
}

/// P(X = k) for the hypergeometric distribution: k successes in `draws` draws without
/// replacement from `population` items of which `successes` are successes.
pub fn hypergeometric_pmf(k: u64, population: u64, successes: u64, draws: u64) -> f64 {
    if k > successes || k > draws || draws - k > population - successes {
        return 0.0;
    }
    (ln_choose(successes, k) + ln_choose(population - successes, draws - k)
        - ln_choose(population, draws))
    .exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        let err = (got - want).abs() / want.abs().max(f64::MIN_POSITIVE);
        assert!(
            err <= rel,
            "got {got:e}, want {want:e} (relative error {err:e})"
        );
    }

    #[test]
    fn normal_cdf_matches_published_values() {
        // Φ(1.96) = 0.9750021048517795, Φ(−3) = 0.0013498980316301 (tables; R pnorm).
        close(normal_cdf(1.96), 0.975_002_104_851_779_5, 1e-14);
        close(normal_cdf(-3.0), 0.001_349_898_031_630_095_7, 1e-12);
        // Deep lower tail: pnorm(-8) = 6.220960574271785e-16.
        close(normal_cdf(-8.0), 6.220_960_574_271_8e-16, 1e-9);
        close(normal_sf(8.0), 6.220_960_574_271_8e-16, 1e-9);
        assert_eq!(normal_cdf(0.0), 0.5);
    }

    #[test]
    fn normal_quantile_matches_published_values() {
        // qnorm: 0.975 → 1.959963984540054, 0.8 → 0.8416212335729143,
        // 0.999 → 3.090232306167813, 1e-10 → −6.361340902404056.
        close(normal_quantile(0.975), 1.959_963_984_540_054, 1e-14);
        close(normal_quantile(0.8), 0.841_621_233_572_914_3, 1e-14);
        close(normal_quantile(0.999), 3.090_232_306_167_813, 1e-14);
        close(normal_quantile(1e-10), -6.361_340_902_404_056, 1e-13);
        close(normal_quantile(0.025), -1.959_963_984_540_054, 1e-14);
        assert!(normal_quantile(0.5).abs() < 1e-15);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
        assert!(normal_quantile(1.5).is_nan());
        for i in 1..1000 {
            let p = i as f64 / 1000.0;
            close(normal_cdf(normal_quantile(p)), p, 1e-13);
        }
    }

    #[test]
    fn ln_gamma_matches_closed_forms() {
        // Γ(1/2) = √π; Γ(10) = 9! = 362880; lgamma(100) = 359.1342053695754 (R lgamma);
        // Stirling at 10⁶: lgamma(1e6) = 12815504.569147612.
        close(ln_gamma(0.5), 0.5 * PI.ln(), 1e-14);
        close(ln_gamma(10.0), 362_880f64.ln(), 1e-14);
        close(ln_gamma(100.0), 359.134_205_369_575_4, 1e-14);
        close(ln_gamma(1e6), 12_815_504.569_147_612, 1e-14);
        // Reflection branch: lgamma(0.1) = 2.252712651734206.
        close(ln_gamma(0.1), 2.252_712_651_734_206, 1e-13);
        assert!(ln_gamma(1.0).abs() < 1e-14 && ln_gamma(2.0).abs() < 1e-14);
        close(ln_choose(100, 5), 75_287_520f64.ln(), 1e-14);
    }

    #[test]
    fn incomplete_gamma_matches_closed_forms() {
        // P(1, x) = 1 − e^−x; P(1/2, x) = erf(√x); Q(3, 2) = 5 e^−2.
        for x in [0.01, 0.5, 1.0, 3.0, 10.0, 40.0] {
            close(gamma_p(1.0, x), -(-x).exp_m1(), 1e-13);
            close(gamma_p(0.5, x), libm::erf(x.sqrt()), 1e-13);
        }
        close(gamma_q(3.0, 2.0), 5.0 * (-2.0f64).exp(), 1e-14);
        close(gamma_p(3.0, 2.0) + gamma_q(3.0, 2.0), 1.0, 1e-15);
    }

    #[test]
    fn chi_squared_tail_matches_tables() {
        // Critical values at 5 %: 3.841458820694124 (1 df), 5.991464547107979 (2 df),
        // 7.814727903251178 (3 df).
        close(chi2_sf(3.841_458_820_694_124, 1.0), 0.05, 1e-12);
        close(chi2_sf(5.991_464_547_107_979, 2.0), 0.05, 1e-12);
        close(chi2_sf(7.814_727_903_251_178, 3.0), 0.05, 1e-12);
        // Closed forms for even df: Q(2, 5) = 6 e^−5, Q(3, 5) = 18.5 e^−5.
        close(chi2_sf(10.0, 4.0), 0.040_427_681_994_512_8, 1e-13);
        close(chi2_sf(10.0, 6.0), 0.124_652_019_483_081_13, 1e-13);
        // Deep tail for 1 df: erfc(√10) = 7.744216431044074e-6.
        close(chi2_sf(20.0, 1.0), 7.744_216_431_044_074e-6, 1e-11);
    }

    #[test]
    fn binomial_and_hypergeometric_match_exact_fractions() {
        // P(Bin(10, 1/2) ≤ 1) = 11/1024; P(Bin(100, 1/2) ≤ 39) = 0.017600100108852407
        // (exact rational arithmetic).
        close(binomial_cdf(1, 10, 0.5), 11.0 / 1024.0, 1e-13);
        close(binomial_cdf(39, 100, 0.5), 0.017_600_100_108_852_407, 1e-12);
        close(
            binomial_cdf(60, 100, 0.5),
            1.0 - 0.017_600_100_108_852_407,
            1e-13,
        );
        close(binomial_pmf(3, 3, 0.5), 0.125, 1e-14);
        assert_eq!(binomial_pmf(0, 5, 0.0), 1.0);
        // C(90, 5) / C(100, 5) = 43949268 / 75287520.
        close(
            hypergeometric_pmf(0, 100, 5, 10),
            43_949_268.0 / 75_287_520.0,
            1e-13,
        );
        let total: f64 = (0..=5).map(|k| hypergeometric_pmf(k, 100, 5, 10)).sum();
        close(total, 1.0, 1e-13);
    }
}
