//! The statistics and assignment behind experiment reports: is a cheaper variant (int8, 4-bit,
//! ternary…) at most a margin worse than the reference, with an answer that stays valid while
//! operators watch it live, users are the randomised units and several variants run at once?
//!
//! Pure functions and plain data, no I/O, no clocks, no global state, so that every replica, and
//! a CLI reading summed Prometheus counters, computes the same result from the same totals:
//!
//! * [`assignment`]: salted weighted rendezvous hashing of sticky keys (and random draws) to
//!   variants, with fallback order and hash buckets for summable user-level counts;
//! * [`verdict`]: non-inferiority verdicts per variant (`non_inferior`, `inferior`,
//!   `inconclusive`) from always-valid confidence sequences with Holm's correction;
//! * [`monitoring`]: the always-valid machinery (normal-mixture and beta-binomial mSPRT);
//! * [`clustered`]: user-level (cluster-robust) variance of a rate;
//! * [`proportions`]: Wilson, Newcombe hybrid score, Fisher's exact test;
//! * [`power`]: minimum detectable effect and the trials still needed;
//! * [`srm`]: sample-ratio mismatch (χ² goodness of fit of assignments);
//! * [`latency`]: percentiles with order-statistic intervals, failures counted as +∞;
//! * [`stats`]: the distribution functions underneath.
//!
//! # Integration
//!
//! Fixed before an experiment starts: its salt, the split, margin, α, power and τ
//! ([`verdict::Config`]). Per experiment (and per weight epoch, see below), count only sums:
//!
//! * per (variant, metric ∈ {feedback, shadow}, bucket): successes and trials, where bucket =
//!   [`assignment::cluster_bucket`]`(salt, sticky key, B)` with B ≈ 64–128 (B = 1 and no
//!   cluster sums without a sticky key). Feedback arrives later than the request, so the served
//!   request must remember its bucket and whether it was a fallback. Summed across replicas per
//!   bucket, these give [`clustered::ClusterSums`] and [`verdict::Arm`] exactly as one process
//!   would: the verdict is a function of these totals only, so every replica and a CLI agree;
//! * requests served as a **fallback** are left out of those counts, but counted to their
//!   *assigned* variant for SRM, like every assignment;
//! * for SRM: distinct users by assigned variant (sticky) or requests by assigned variant.
//!   Distinct users do **not** sum across replicas (one user on two replicas counts twice):
//!   either route users to replicas by key at the load balancer, or export a mergeable sketch
//!   (HyperLogLog, merged by register-wise max) instead of a count;
//! * latency: a Prometheus histogram per variant with fixed bounds plus failure and timeout
//!   counters; [`latency::Histogram`] turns summed buckets into percentile intervals at bucket
//!   resolution. Percentiles, reservoirs and per-user squared sums do not sum across replicas;
//!   in one process a [`latency::Reservoir`] per period gives exact order statistics.
//!
//! When weights change (a ramp), start a new epoch of the comparison counters (keeping the
//! salt, so nobody is reshuffled): pooling periods with different allocations mixes time
//! trends into the comparison (Simpson's paradox). Verdicts are stateless; a caller may latch
//! the first non-`inconclusive` verdict, since stopping there is what the guarantee covers.

pub mod assignment;
pub mod clustered;
pub mod latency;
pub mod monitoring;
pub mod power;
pub mod proportions;
pub mod srm;
pub mod stats;
pub mod verdict;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod simulation;
