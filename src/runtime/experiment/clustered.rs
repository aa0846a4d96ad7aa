//! User-level (cluster-robust) variance of a rate when users, not requests, are randomised.
//!
//! With a sticky key each user sees one variant, and a user's feedbacks are correlated (some
//! users send hard inputs). The binomial variance p(1 − p)/n then understates the variance of the
//! rate by the design effect 1 + (m − 1)ρ (m feedbacks per user, intra-user correlation ρ), and
//! intervals computed as if requests were independent under-cover. Here the rate
//! p̂ = Σsᵤ / Σnᵤ is a ratio estimator over users, and its variance comes from the delta method
//! (linearisation) with a sandwich over clusters (Liang & Zeger 1986; the standard survey
//! "ratio estimator" variance, Cochran 1977 §6.4; Deng, Lu & Litz 2018 for A/B tests):
//!
//! V(p̂) = G/(G − 1) · Σᵤ (sᵤ − p̂ nᵤ)² / (Σnᵤ)²,
//!
//! which needs only G, Σs, Σn, Σs², Σsn, Σn² — sums, so partial results merge by addition.
//!
//! Clusters may be whole users or *hash buckets of users* (every user's requests in one
//! bucket): a union of independent clusters is still a cluster, so the estimator stays valid
//! with buckets, at G − 1 degrees of freedom. Buckets are what make it summable across replicas:
//! a user whose requests reach two replicas is still in one bucket, so per-bucket counters add up
//! (see `assignment::cluster_bucket`), whereas per-user squared sums from two replicas do not.

use serde::{Deserialize, Serialize};

/// Sufficient statistics of one arm's per-cluster (user or bucket) successes sᵤ and trials nᵤ.
/// Clusters with no trials do not count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterSums {
    /// G: clusters with at least one trial.
    pub clusters: u64,
    pub successes: f64,
    pub trials: f64,
    /// Σ sᵤ².
    pub sum_s2: f64,
    /// Σ sᵤ nᵤ.
    pub sum_sn: f64,
    /// Σ nᵤ².
    pub sum_n2: f64,
}

impl ClusterSums {
    /// Sums over clusters given as (successes, trials).
    pub fn from_clusters(clusters: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut sums = Self::default();
        for (s, n) in clusters {
            sums.add_cluster(s, n);
        }
        sums
    }

    pub fn add_cluster(&mut self, successes: u64, trials: u64) {
        if trials == 0 {
            return;
        }
        let (s, n) = (successes as f64, trials as f64);
        self.clusters += 1;
        self.successes += s;
        self.trials += n;
        self.sum_s2 += s * s;
        self.sum_sn += s * n;
        self.sum_n2 += n * n;
    }

    /// Adds another set of clusters; valid only if no cluster appears in both (different users,
    /// or different buckets). Summing one bucket's counts across replicas must happen *before*
    /// building the sums.
    pub fn merge(&mut self, other: &Self) {
        self.clusters += other.clusters;
        self.successes += other.successes;
        self.trials += other.trials;
        self.sum_s2 += other.sum_s2;
        self.sum_sn += other.sum_sn;
        self.sum_n2 += other.sum_n2;
    }

    pub fn rate(&self) -> Option<f64> {
        (self.trials > 0.0).then(|| self.successes / self.trials)
    }

    /// Cluster-robust variance of the rate, G/(G − 1) · Σ(sᵤ − p̂nᵤ)² / N²; `None` with fewer
    /// than two clusters (no between-cluster variation to estimate from).
    pub fn variance(&self) -> Option<f64> {
        if self.clusters < 2 {
            return None;
        }
        let p = self.rate()?;
        let residual = (self.sum_s2 - 2.0 * p * self.sum_sn + p * p * self.sum_n2).max(0.0);
        let g = self.clusters as f64;
        Some(g / (g - 1.0) * residual / (self.trials * self.trials))
    }

    /// Design effect: the cluster-robust variance over the binomial one, p(1 − p)/N, floored
    /// at one. The floor is deliberate: randomising users cannot make requests *more* informative than
    /// independent ones in a way worth trusting from a noisy estimate, and a value below 1 from
    /// few clusters would narrow the interval by chance. `None` when either variance is 0 or
    /// unknown (rate 0 or 1, fewer than two clusters): the caller then uses 1.
    pub fn design_effect(&self) -> Option<f64> {
        let p = self.rate()?;
        let binomial = p * (1.0 - p) / self.trials;
        let robust = self.variance()?;
        (binomial > 0.0).then(|| (robust / binomial).max(1.0))
    }

    /// Mean trials per cluster.
    pub fn mean_cluster_size(&self) -> Option<f64> {
        (self.clusters > 0).then(|| self.trials / self.clusters as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variance_matches_a_hand_computation() {
        // Clusters (s, n): (1, 2), (2, 2), (0, 2), (3, 4): N = 10, p̂ = 0.6,
        // residuals 1 − 1.2, 2 − 1.2, 0 − 1.2, 3 − 2.4 → squares 0.04, 0.64, 1.44, 0.36 = 2.48;
        // V = 4/3 · 2.48 / 100.
        let sums = ClusterSums::from_clusters([(1, 2), (2, 2), (0, 2), (3, 4), (0, 0)]);
        assert_eq!(sums.clusters, 4);
        assert!((sums.rate().unwrap() - 0.6).abs() < 1e-15);
        let v = sums.variance().unwrap();
        assert!((v - 4.0 / 3.0 * 2.48 / 100.0).abs() < 1e-15, "{v}");
        // Binomial: 0.24 / 10 = 0.024 → design effect 0.03307 / 0.024 = 1.378.
        let deff = sums.design_effect().unwrap();
        assert!((deff - 4.0 / 3.0 * 2.48 / 100.0 / 0.024).abs() < 1e-12);
    }

    #[test]
    fn independent_singletons_have_the_binomial_variance() {
        // One trial per cluster: Σ(sᵤ − p̂)² = N p̂(1 − p̂), so V = G/(G−1) · p̂(1−p̂)/N.
        let sums = ClusterSums::from_clusters((0..1000).map(|i| (u64::from(i % 10 != 0), 1)));
        let v = sums.variance().unwrap();
        let want = 1000.0 / 999.0 * 0.9 * 0.1 / 1000.0;
        assert!((v - want).abs() < 1e-15, "{v} vs {want}");
        assert!((sums.design_effect().unwrap() - 1000.0 / 999.0).abs() < 1e-12);
    }

    #[test]
    fn merging_disjoint_clusters_is_adding() {
        let a = [(3, 5), (4, 4), (0, 1)];
        let b = [(7, 9), (2, 3)];
        let mut merged = ClusterSums::from_clusters(a);
        merged.merge(&ClusterSums::from_clusters(b));
        assert_eq!(merged, ClusterSums::from_clusters(a.into_iter().chain(b)));
        assert_eq!(ClusterSums::from_clusters([(1, 1)]).variance(), None);
        assert_eq!(
            ClusterSums::from_clusters([(2, 2), (3, 3)]).design_effect(),
            None
        );
    }
}
