//! Always-valid inference: tests and confidence sequences that stay valid however often and
//! whenever the data are looked at, so an operator may refresh the report after every request
//! and stop at the first verdict.
//!
//! Both tests here are mixture sequential probability ratio tests (mSPRT, Robbins 1970): the
//! likelihood ratio of the data under alternatives θ ≠ θ₀, averaged over a mixing distribution
//! fixed in advance, is a nonnegative martingale Λₙ with mean 1 under H₀: θ = θ₀. Ville's
//! inequality then bounds P(∃ n: Λₙ ≥ 1/α) ≤ α. So `p = min(1, 1/Λₙ)` is an always-valid p-value
//! (Johari, Koomen, Pekelis & Walsh 2017, "Peeking at A/B tests") and
//! {θ₀ : Λₙ(θ₀) < 1/α} a (1 − α) confidence sequence: with probability ≥ 1 − α it contains the
//! truth at every n simultaneously (Howard, Ramdas, McAuliffe & Sekhon 2021).
//!
//! A one-sided claim read off the sequence ("θ > θ₀" because the lower bound exceeds θ₀) is
//! wrong only if the sequence missed the truth at that look, so the error of any claim made at
//! any look is also ≤ α, for composite one-sided hypotheses (non-inferiority) too.
//!
//! Everything is a function of the current totals only, so every replica (or a CLI summing
//! Prometheus counters) computes the same bounds; nothing depends on when earlier looks were.

use super::proportions::Interval;
use super::stats::ln_beta;

/// Ratio between successive mixing scales in [`NormalMixture::grid`].
pub const SCALE_RATIO: f64 = 10.0;
/// Largest mixing scale on the rate scale: differences beyond ±0.5 need no finer tuning.
pub const MAX_SCALE: f64 = 0.5;

/// Normal-mixture mSPRT on an asymptotically normal estimate θ̂ₙ ~ N(θ, Vₙ) (a difference of
/// proportions, possibly with a cluster-robust variance). Mixing the alternative θ₀ + h over
/// h ~ N(0, τ²) gives the closed form (Johari et al. 2017, eq. 11)
///
/// Λₙ(θ₀; τ) = √(V/(V+τ²)) · exp(τ²(θ̂ − θ₀)² / (2V(V+τ²))),
///
/// a martingale in the information 1/Vₙ. For one τ the sequence is
/// θ̂ ± √(2V(V+τ²)/τ² · (ln(1/α) + ½ ln((V+τ²)/V))), tightest at V ≈ τ²/8.2 for α = 0.05
/// ([`Self::tuned_for`]), where its half-width is ≈ τ.
///
/// **Scales.** One τ is a bet on the effect size. τ = δ (the margin) makes the sequence tightest
/// about when an equal variant can first be declared non-inferior (half-width ≈ δ), but then it
/// needs V ≪ δ² to say anything: a broken variant at 60 % against 95 % stays `inconclusive`
/// after 200 trials per arm (half-width 0.37). So Λ here is the equal-weight average over the
/// scales τⱼ = δ·10ʲ up to 0.5 ([`Self::grid`]; {0.01, 0.1} for a 1-point margin). An average of
/// martingales with fixed weights is a martingale, so validity is untouched; the cost is at most
/// ln m in the threshold at any one scale (≈ 8 % wider at the non-inferiority sample for m = 2),
/// and large effects are caught after a few hundred trials.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalMixture {
    /// Standard deviations of the mixing normals, on the scale of θ, equally weighted.
    pub taus: Vec<f64>,
}

impl NormalMixture {
    pub fn single(tau: f64) -> Self {
        Self { taus: vec![tau] }
    }

    /// Scales `base`·10ʲ for j = 0, 1, … while ≤ [`MAX_SCALE`] (at least `base` itself).
    pub fn grid(base: f64) -> Self {
        let mut taus = vec![base];
        while let Some(next) = taus.last().map(|t| t * SCALE_RATIO)
            && next <= MAX_SCALE
        {
            taus.push(next);
        }
        Self { taus }
    }

    /// The single τ that makes the (1 − α) sequence narrowest when the estimate's variance is
    /// `variance` (e.g. the variance expected at the planned sample): τ² = r·V where r solves
    /// r = 2 ln(1/α) + ln(1 + r) (minimising the half-width over r = τ²/V).
    pub fn tuned_for(variance: f64, alpha: f64) -> Self {
        let l = 2.0 * (1.0 / alpha).ln();
        let mut r = l;
        for _ in 0..50 {
            r = l + (1.0 + r).ln();
        }
        Self::single((r * variance).sqrt())
    }

    /// ln Λ as a function of x = (θ̂ − θ₀)², with its derivative in x: ln of the mean over
    /// scales of exp(aⱼ + bⱼx), aⱼ = ½ ln(V/(V+τⱼ²)), bⱼ = τⱼ²/(2V(V+τⱼ²)). Convex and
    /// increasing in x (a log-sum-exp of increasing linear functions).
    fn log_lr_and_slope(&self, x: f64, variance: f64) -> (f64, f64) {
        let term = |t: &f64| {
            let tau2 = t * t;
            let b = tau2 / (2.0 * variance * (variance + tau2));
            (0.5 * (variance / (variance + tau2)).ln() + b * x, b)
        };
        let top = self
            .taus
            .iter()
            .map(|t| term(t).0)
            .fold(f64::NEG_INFINITY, f64::max);
        let (mut sum, mut slope) = (0.0, 0.0);
        for t in &self.taus {
            let (e, b) = term(t);
            let w = (e - top).exp();
            sum += w;
            slope += w * b;
        }
        (top + (sum / self.taus.len() as f64).ln(), slope / sum)
    }

    /// ln Λ for H₀: θ = `theta0`, given the estimate and its variance.
    pub fn log_likelihood_ratio(&self, estimate: f64, theta0: f64, variance: f64) -> f64 {
        let d = estimate - theta0;
        self.log_lr_and_slope(d * d, variance).0
    }

    /// Always-valid p-value min(1, 1/Λ) for H₀: θ = `theta0`. For the one-sided H₀: θ ≤ θ₀
    /// (or ≥) it is the same number when θ̂ lies on the alternative's side and 1 otherwise,
    /// because Λ(θ') only grows as θ' moves away from θ̂.
    pub fn p_value(&self, estimate: f64, theta0: f64, variance: f64) -> f64 {
        if variance.is_nan() || variance <= 0.0 {
            return if estimate == theta0 { 1.0 } else { 0.0 };
        }
        (-self.log_likelihood_ratio(estimate, theta0, variance))
            .exp()
            .min(1.0)
    }

    /// Half-width of the (1 − α) confidence sequence at variance `variance`: the root of
    /// ln Λ(x) = ln(1/α) in x = d², by Newton's method from the right, which for a convex
    /// increasing function converges monotonically (and quadratically). The start,
    /// minⱼ of the single-scale root at α/m, is to the right of the root because Λ ≥ Λⱼ/m.
    pub fn half_width(&self, variance: f64, alpha: f64) -> f64 {
        if variance.is_nan() || variance <= 0.0 {
            return 0.0;
        }
        let m = self.taus.len() as f64;
        let target = (1.0 / alpha).ln();
        let single = |tau: f64, level: f64| {
            let tau2 = tau * tau;
            let l = level + 0.5 * ((variance + tau2) / variance).ln();
            2.0 * variance * (variance + tau2) / tau2 * l
        };
        let mut x = self
            .taus
            .iter()
            .map(|t| single(*t, target + m.ln()))
            .fold(f64::INFINITY, f64::min);
        for _ in 0..100 {
            let (f, slope) = self.log_lr_and_slope(x, variance);
            let step = (f - target) / slope;
            if step.is_nan() || step <= 1e-16 * x {
                break;
            }
            x -= step;
        }
        x.max(0.0).sqrt()
    }

    /// The (1 − α) confidence sequence's value at this look.
    pub fn interval(&self, estimate: f64, variance: f64, alpha: f64) -> Interval {
        let w = self.half_width(variance, alpha);
        Interval {
            low: estimate - w,
            high: estimate + w,
        }
    }
}

/// Beta-binomial mixture for a single Bernoulli rate (Robbins 1970): with a Beta(a, b) prior on
/// the rate, Mₙ(p₀) = B(a + s, b + f) / B(a, b) / (p₀ˢ (1 − p₀)ᶠ) after s successes and f
/// failures is an *exact* nonnegative martingale under p = p₀, with no normal approximation. It
/// is the right tool for shadow agreement, where the rate sits at 99–100 % and a handful of
/// disagreements decides the question, so the normal approximation is poorest. Several priors
/// are averaged with equal weights, as the normal mixture averages scales.
#[derive(Clone, Debug, PartialEq)]
pub struct BetaMixture {
    /// (a, b) of each Beta prior.
    pub priors: Vec<(f64, f64)>,
}

impl BetaMixture {
    /// One Beta prior with mean `mean` and standard deviation `sd` (the sd is capped so that
    /// a + b ≥ 2, i.e. never more diffuse than uniform).
    pub fn centered(mean: f64, sd: f64) -> Self {
        Self::centered_on_scales(mean, &[sd])
    }

    /// Equally weighted Beta priors with mean `mean` and the standard deviations `sds`.
    pub fn centered_on_scales(mean: f64, sds: &[f64]) -> Self {
        let mean = mean.clamp(1e-6, 1.0 - 1e-6);
        let priors = sds
            .iter()
            .map(|sd| {
                let total = (mean * (1.0 - mean) / (sd * sd) - 1.0).max(2.0);
                (mean * total, (1.0 - mean) * total)
            })
            .collect();
        Self { priors }
    }

    /// ln Mₙ(p₀) after `successes` of `trials`.
    pub fn log_likelihood_ratio(&self, successes: u64, trials: u64, p0: f64) -> f64 {
        self.log_lr_given(self.log_marginal(successes, trials), successes, trials, p0)
    }

    /// ln of the data's marginal likelihood under the prior mixture: the mean over priors of
    /// B(a + s, b + f)/B(a, b).
    fn log_marginal(&self, successes: u64, trials: u64) -> f64 {
        let (s, f) = (successes as f64, (trials - successes) as f64);
        let logs: Vec<f64> = self
            .priors
            .iter()
            .map(|(a, b)| ln_beta(a + s, b + f) - ln_beta(*a, *b))
            .collect();
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = logs.iter().map(|l| (l - top).exp()).sum::<f64>() / logs.len() as f64;
        top + mean.ln()
    }

    fn log_lr_given(&self, marginal: f64, successes: u64, trials: u64, p0: f64) -> f64 {
        let (s, f) = (successes as f64, (trials - successes) as f64);
        let log_term = |count: f64, p: f64| if count == 0.0 { 0.0 } else { count * p.ln() };
        marginal - log_term(s, p0) - log_term(f, 1.0 - p0)
    }

    /// Always-valid p-value min(1, 1/Mₙ(p₀)); one-sided use as for [`NormalMixture::p_value`].
    pub fn p_value(&self, successes: u64, trials: u64, p0: f64) -> f64 {
        (-self.log_likelihood_ratio(successes, trials, p0))
            .exp()
            .min(1.0)
    }

    /// The (1 − α) confidence sequence {p₀ : Mₙ(p₀) < 1/α} at this look. ln M is convex in p₀
    /// with its minimum (≤ 0) at the observed rate, so the set is an interval found by bisection.
    pub fn interval(&self, successes: u64, trials: u64, alpha: f64) -> Interval {
        if trials == 0 {
            return Interval {
                low: 0.0,
                high: 1.0,
            };
        }
        let bound = (1.0 / alpha).ln();
        let marginal = self.log_marginal(successes, trials);
        let g = |p: f64| self.log_lr_given(marginal, successes, trials, p) - bound;
        let rate = successes as f64 / trials as f64;
        // g(rate) < 0; find where g crosses 0 on each side (g = +∞ at an excluded end).
        let crossing = |mut inside: f64, mut outside: f64| {
            if g(outside) < 0.0 {
                return outside;
            }
            // 60 halvings of an interval within [0, 1]: below 1e-18.
            for _ in 0..60 {
                let mid = 0.5 * (inside + outside);
                if g(mid) < 0.0 {
                    inside = mid;
                } else {
                    outside = mid;
                }
            }
            inside
        };
        Interval {
            low: crossing(rate, 0.0),
            high: crossing(rate, 1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_mixture_matches_its_closed_form() {
        // V = 1e-4, τ = 0.01 (τ² = V): Λ = √½ · exp(d² / (4V)); at d = 0.03, ln Λ = 2.25 − ½ ln 2.
        let m = NormalMixture::single(0.01);
        let l = m.log_likelihood_ratio(0.03, 0.0, 1e-4);
        assert!((l - (2.25 - 0.5 * 2f64.ln())).abs() < 1e-12, "{l}");
        // The sequence's edge is exactly where p = α.
        let ci = m.interval(0.0, 1e-4, 0.05);
        assert!((m.p_value(0.0, ci.high, 1e-4) - 0.05).abs() < 1e-12);
        assert!((m.p_value(0.0, ci.low, 1e-4) - 0.05).abs() < 1e-12);
        // Half-width² = 2V·2·(ln 20 + ½ ln 2).
        let want = (4e-4 * (20f64.ln() + 0.5 * 2f64.ln())).sqrt();
        assert!((ci.high - want).abs() < 1e-14);
        // It is wider than the fixed-sample 95 % interval (1.96 · 0.01).
        assert!(ci.high > 0.0196);
    }

    #[test]
    fn a_grid_of_scales_is_valid_and_catches_large_effects_early() {
        assert_eq!(NormalMixture::grid(0.01).taus, [0.01, 0.1]);
        assert_eq!(NormalMixture::grid(0.005).taus.len(), 3);
        let grid = NormalMixture::grid(0.01);
        for v in [1e-6, 3.6e-5, 1e-3, 0.1] {
            let w = grid.half_width(v, 0.05);
            // p = α exactly at the edge (Newton converged), and the width lies between the best
            // single scale at α and at α/m.
            assert!((grid.p_value(w, 0.0, v) - 0.05).abs() < 1e-9, "{v}");
            let best = |a: f64| {
                grid.taus
                    .iter()
                    .map(|t| NormalMixture::single(*t).half_width(v, a))
                    .fold(f64::INFINITY, f64::min)
            };
            assert!(best(0.05) <= w && w <= best(0.025) * (1.0 + 1e-12), "{v}");
        }
        // 60 % vs 95 % after 200 trials per arm: V = 0.24/200 + 0.0475/200.
        let v = (0.24 + 0.0475) / 200.0;
        assert!(NormalMixture::single(0.01).interval(-0.35, v, 0.05).high > -0.01);
        assert!(grid.interval(-0.35, v, 0.05).high < -0.2);
        // At the non-inferiority sample (V ≈ δ²/8.2) the grid costs < 10 % in width.
        let v = 1e-4 / 8.2;
        let ratio = grid.half_width(v, 0.05) / NormalMixture::single(0.01).half_width(v, 0.05);
        assert!(ratio > 1.0 && ratio < 1.1, "{ratio}");
    }

    #[test]
    fn tuning_minimises_the_half_width() {
        let v = 3.6e-5;
        let tuned = NormalMixture::tuned_for(v, 0.05);
        // r = τ²/V ≈ 8.2 for α = 0.05.
        assert!((tuned.taus[0].powi(2) / v - 8.2).abs() < 0.05, "{tuned:?}");
        let w = tuned.half_width(v, 0.05);
        for f in [0.5, 0.8, 1.25, 2.0] {
            let other = NormalMixture::single(tuned.taus[0] * f);
            assert!(other.half_width(v, 0.05) > w);
        }
    }

    #[test]
    fn beta_mixture_is_exact_and_brackets_the_rate() {
        // Uniform prior, 0 of 1: M(p₀) = B(1, 2)/B(1, 1) / (1 − p₀) = 1 / (2(1 − p₀)).
        let uniform = BetaMixture {
            priors: vec![(1.0, 1.0)],
        };
        let l = uniform.log_likelihood_ratio(0, 1, 0.5);
        assert!(l.abs() < 1e-14, "{l}");
        // 10 successes of 10 under a uniform prior: M(p₀) = B(11, 1)/B(1, 1) / p₀¹⁰ = 1/(11 p₀¹⁰),
        // which reaches 1/α = 20 at p₀ = 220^(−1/10); near 1 it stays at 1/11.
        let ci = uniform.interval(10, 10, 0.05);
        let want_low = 220f64.powf(-0.1);
        assert!((ci.low - want_low).abs() < 1e-9, "{ci:?} vs {want_low}");
        assert_eq!(ci.high, 1.0);
        // A prior centred on 0.99 with sd 0.01 has that mean and sd.
        let prior = BetaMixture::centered(0.99, 0.01);
        let (a, b) = prior.priors[0];
        assert!((a / (a + b) - 0.99).abs() < 1e-12);
        let sd = (a * b / ((a + b).powi(2) * (a + b + 1.0))).sqrt();
        assert!((sd - 0.01).abs() < 1e-12, "{sd}");
        // The interval always contains the observed rate and shrinks with n.
        let small = prior.interval(495, 500, 0.05);
        let large = prior.interval(4950, 5000, 0.05);
        assert!(small.low < 0.99 && small.high > 0.99);
        assert!(large.high - large.low < small.high - small.low);
    }
}
