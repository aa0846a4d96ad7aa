//! A/B experiments in the server: per model an experiment (id = its configured name, else the
//! model's), split into analysis periods that end whenever the split, the reference or a
//! variant's file changes (old periods are kept and reported). Requests are assigned by the
//! salted rendezvous hashing of `experiment::assignment` (in `registry::route`); this book
//! counts what the verdicts need, in memory for `/v1/models/{m}/ab` and in Prometheus
//! (`metrics::ab`) for `quantserve ab-report` across replicas:
//!
//! * assignments (and distinct sticky users) by *assigned* variant, fallbacks included: SRM;
//! * requests, failures and latency of analysed requests (randomised, not fallbacks, not
//!   overrides), a reservoir per period and variant with failures as +∞;
//! * feedback and shadow comparisons of analysed requests per cluster bucket.
//!
//! Requests that named their variant, fallbacks (in the comparisons) and shadow copies are
//! never analysed; the per-variant lifetime table of `abtest` still shows all traffic.

pub mod analysis;
pub mod feedback;
pub mod settings;
pub mod text;
pub mod ticket;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::metrics::Metrics;
use crate::runtime::experiment::assignment::{cluster_bucket, key_hash};
use crate::runtime::experiment::latency::{LatencySummary, Reservoir, summarize};
use crate::runtime::routing::random_u64;
use analysis::{Analysis, ArmTotals, PeriodTotals, analyse};
use feedback::ServedMemory;
use settings::ExperimentSettings;
use ticket::{Kind, Ticket};

/// Latencies kept per variant and period for exact percentiles.
const RESERVOIR: usize = 10_000;
/// Distinct users remembered per variant and period (8 bytes each); beyond it the count stops
/// growing and the report says so.
const MAX_USERS: usize = 1_000_000;

/// What defines an analysis period: a change to any of it starts a new one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Setup {
    pub split: BTreeMap<String, u32>,
    pub reference: String,
    pub shadow_reference: Option<String>,
    pub sticky: bool,
}

/// How the router chose a request's variant.
#[derive(Clone, Debug)]
pub struct Choice {
    pub served: String,
    /// `None` for an override.
    pub assigned: Option<String>,
    pub fallback: bool,
    /// The sticky key's value, when the routing has one and the request carried it.
    pub sticky_value: Option<String>,
}

/// How an analysed request ended, for the latency guardrail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Failed on the server's side or timed out: latency +∞.
    Failed,
    /// The client's fault (bad input): not a latency at all.
    Rejected,
}

#[derive(Default)]
struct ArmCounts {
    totals: ArmTotals,
    users: HashSet<u64>,
    latency: Option<Reservoir>,
}

struct Period {
    number: u32,
    started_at: u64,
    ended_at: Option<u64>,
    reason: String,
    setup: Setup,
    arms: BTreeMap<String, ArmCounts>,
}

struct Experiment {
    id: String,
    started_at: u64,
    settings: ExperimentSettings,
    periods: Vec<Period>,
}

pub struct ExperimentBook {
    metrics: Arc<Metrics>,
    models: Mutex<BTreeMap<String, Experiment>>,
    pub served: ServedMemory,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ExperimentBook {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            models: Mutex::new(BTreeMap::new()),
            served: ServedMemory::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Experiment>> {
        self.models.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings `model`'s experiment up to date with its routing (a new experiment for a new
    /// name, a new period for a new setup) and returns it.
    fn current<'a>(
        &self,
        all: &'a mut BTreeMap<String, Experiment>,
        model: &str,
        settings: &ExperimentSettings,
        setup: &Setup,
    ) -> &'a mut Experiment {
        let id = settings.id(model);
        let fresh = all.get(model).is_none_or(|e| e.id != id);
        if fresh {
            let t = now();
            all.insert(
                model.to_string(),
                Experiment {
                    id,
                    started_at: t,
                    settings: settings.clone(),
                    periods: Vec::new(),
                },
            );
        }
        let e = all.get_mut(model).expect("inserted above");
        e.settings = settings.clone();
        let reason = match e.periods.last() {
            None => Some("experiment started".to_string()),
            Some(p) if p.setup.split != setup.split => Some("split changed".into()),
            Some(p) if p.setup.reference != setup.reference => Some("reference changed".into()),
            Some(p) if p.setup.shadow_reference != setup.shadow_reference => {
                Some("shadow reference changed".into())
            }
            Some(p) if p.setup.sticky != setup.sticky => Some("sticky key changed".into()),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            self.start_period(model, e, setup.clone(), reason);
        }
        e
    }

    fn start_period(&self, model: &str, e: &mut Experiment, setup: Setup, reason: String) {
        let t = now();
        if let Some(last) = e.periods.last_mut() {
            last.ended_at = Some(t);
        }
        let number = e.periods.len() as u32 + 1;
        let period = number.to_string();
        let m = &self.metrics.ab;
        for (v, w) in &setup.split {
            m.weight
                .with_label_values(&[model, &e.id, &period, v])
                .set(i64::from(*w));
        }
        let s = &e.settings;
        m.period_info
            .with_label_values(&[
                model,
                &e.id,
                &period,
                &setup.reference,
                setup.shadow_reference.as_deref().unwrap_or(""),
                if setup.sticky { "true" } else { "false" },
                &s.margin.to_string(),
                &s.alpha.to_string(),
                &s.power.to_string(),
            ])
            .set(t as i64);
        e.periods.push(Period {
            number,
            started_at: t,
            ended_at: None,
            reason,
            setup,
            arms: BTreeMap::new(),
        });
    }

    /// Brings the experiment up to date without counting anything (before a report).
    pub fn sync(&self, model: &str, settings: &ExperimentSettings, setup: &Setup) {
        let mut all = self.lock();
        self.current(&mut all, model, settings, setup);
    }

    /// A variant's file was replaced (hot swap): a new period if the variant takes part.
    pub fn swapped(&self, model: &str, variant: &str) {
        let mut all = self.lock();
        let Some(e) = all.get_mut(model) else { return };
        let Some(setup) = e.periods.last().map(|p| p.setup.clone()) else {
            return;
        };
        let involved = setup.split.get(variant).is_some_and(|w| *w > 0)
            || setup.reference == variant
            || setup.shadow_reference.as_deref() == Some(variant);
        if involved {
            self.start_period(model, e, setup, format!("{variant} reloaded"));
        }
    }

    /// The ticket of a routed request; counts its assignment (not for overrides).
    pub fn assign(
        &self,
        model: &str,
        settings: &ExperimentSettings,
        setup: &Setup,
        choice: Choice,
    ) -> Ticket {
        let mut all = self.lock();
        let e = self.current(&mut all, model, settings, setup);
        let salt = e.id.clone();
        let bucket = match (&choice.sticky_value, setup.sticky) {
            (Some(key), true) => cluster_bucket(&salt, key, settings.buckets),
            _ => 0,
        };
        let (assigned, kind) = match choice.assigned {
            None => (choice.served.clone(), Kind::Override),
            Some(a) if choice.fallback => (a, Kind::Fallback),
            Some(a) => (a, Kind::Randomised),
        };
        let period = e.periods.last_mut().expect("current() starts one");
        let ticket = Ticket {
            model: model.to_string(),
            experiment: salt.clone(),
            period: period.number,
            assigned,
            served: choice.served,
            bucket,
            kind,
        };
        if kind != Kind::Override {
            let labels = [model, &salt, &period.number.to_string(), &ticket.assigned];
            let m = &self.metrics.ab;
            m.assignments.with_label_values(&labels).inc();
            let arm = period.arms.entry(ticket.assigned.clone()).or_default();
            arm.totals.assigned += 1;
            if let Some(key) = &choice.sticky_value
                && arm.users.len() < MAX_USERS
                && arm.users.insert(key_hash(&salt, key))
            {
                m.users.with_label_values(&labels).inc();
            }
        }
        ticket
    }

    /// Runs `f` on the counts of the ticket's variant in the ticket's period, if it still
    /// exists (same experiment).
    fn with_arm(&self, ticket: &Ticket, f: impl FnOnce(&mut ArmCounts)) {
        let mut all = self.lock();
        let Some(e) = all
            .get_mut(&ticket.model)
            .filter(|e| e.id == ticket.experiment)
        else {
            return;
        };
        if let Some(p) = e.periods.get_mut(ticket.period as usize - 1) {
            f(p.arms.entry(ticket.served.clone()).or_default());
        }
    }

    fn labels(ticket: &Ticket) -> [String; 4] {
        [
            ticket.model.clone(),
            ticket.experiment.clone(),
            ticket.period.to_string(),
            ticket.served.clone(),
        ]
    }

    /// An analysed request's outcome and latency.
    pub fn record_request(&self, ticket: &Ticket, outcome: Outcome, latency: Duration) {
        if !ticket.analysed() || outcome == Outcome::Rejected {
            return;
        }
        let failed = outcome == Outcome::Failed;
        let l = Self::labels(ticket);
        let l = [l[0].as_str(), &l[1], &l[2], &l[3]];
        let m = &self.metrics.ab;
        m.requests.with_label_values(&l).inc();
        if failed {
            m.failures.with_label_values(&l).inc();
        } else {
            m.latency
                .with_label_values(&l)
                .observe(latency.as_secs_f64());
        }
        self.with_arm(ticket, |arm| {
            arm.totals.requests += 1;
            arm.totals.failures += u64::from(failed);
            let value = if failed {
                f64::INFINITY
            } else {
                latency.as_secs_f64()
            };
            arm.latency
                .get_or_insert_with(|| Reservoir::new(RESERVOIR))
                .push(value, random_u64());
        });
    }

    /// Compared units (inputs) of an analysed request: feedback or shadow agreement.
    fn record_units(&self, ticket: &Ticket, metric: &str, successes: u64, trials: u64) {
        if !ticket.analysed() || trials == 0 {
            return;
        }
        let l = Self::labels(ticket);
        let bucket = ticket.bucket.to_string();
        let l = [l[0].as_str(), &l[1], &l[2], &l[3], metric, &bucket];
        let m = &self.metrics.ab;
        m.trials.with_label_values(&l).inc_by(trials);
        m.successes.with_label_values(&l).inc_by(successes);
        self.with_arm(ticket, |arm| {
            let map = if metric == "feedback" {
                &mut arm.totals.feedback
            } else {
                &mut arm.totals.shadow
            };
            let cell = map.entry(ticket.bucket).or_default();
            cell.0 += successes;
            cell.1 += trials;
        });
    }

    pub fn record_shadow(&self, ticket: &Ticket, agreed: u64, compared: u64) {
        self.record_units(ticket, "shadow", agreed, compared);
    }

    pub fn record_shadow_dropped(&self, ticket: &Ticket, inputs: u64) {
        if !ticket.analysed() {
            return;
        }
        let l = Self::labels(ticket);
        self.metrics
            .ab
            .shadow_dropped
            .with_label_values(&[l[0].as_str(), &l[1], &l[2], &l[3]])
            .inc_by(inputs);
        self.with_arm(ticket, |arm| arm.totals.shadow_dropped += inputs);
    }

    pub fn record_feedback(&self, ticket: &Ticket, correct: bool) {
        self.record_units(ticket, "feedback", u64::from(correct), 1);
    }

    /// The current experiment and period of `model` (after [`Self::sync`]).
    pub fn current_period(&self, model: &str) -> Option<(String, u32)> {
        let all = self.lock();
        let e = all.get(model)?;
        Some((e.id.clone(), e.periods.last()?.number))
    }

    /// `model`'s experiment with every period's analysis, newest period first.
    pub fn report(&self, model: &str) -> Option<ExperimentReport> {
        let all = self.lock();
        let e = all.get(model)?;
        let config = e.settings.verdict_config();
        let periods = e
            .periods
            .iter()
            .rev()
            .map(|p| {
                let totals = period_totals(p);
                let arms = totals
                    .arms
                    .iter()
                    .map(|(name, t)| {
                        let sample = p.arms.get(name).and_then(|a| a.latency.as_ref());
                        arm_view(name, t, sample, config.alpha)
                    })
                    .collect();
                PeriodReport {
                    period: p.number,
                    started_at: p.started_at,
                    ended_at: p.ended_at,
                    reason: p.reason.clone(),
                    setup: p.setup.clone(),
                    analysis: analyse(&config, &totals),
                    variants: arms,
                }
            })
            .collect::<Vec<_>>();
        Some(ExperimentReport {
            id: e.id.clone(),
            started_at: e.started_at,
            period: e.periods.last().map_or(0, |p| p.number),
            settings: e.settings.clone(),
            periods,
        })
    }
}

fn period_totals(p: &Period) -> PeriodTotals {
    let mut arms: BTreeMap<String, ArmTotals> = p
        .setup
        .split
        .iter()
        .map(|(v, w)| {
            (
                v.clone(),
                ArmTotals {
                    weight: *w,
                    ..ArmTotals::default()
                },
            )
        })
        .collect();
    for (v, counts) in &p.arms {
        let t = arms.entry(v.clone()).or_default();
        let weight = t.weight;
        *t = counts.totals.clone();
        t.weight = weight;
        t.users = p.setup.sticky.then_some(counts.users.len() as u64);
    }
    PeriodTotals {
        reference: p.setup.reference.clone(),
        shadow_reference: p.setup.shadow_reference.clone(),
        sticky: p.setup.sticky,
        arms,
    }
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn arm_view(name: &str, t: &ArmTotals, sample: Option<&Reservoir>, alpha: f64) -> VariantReport {
    let sample = sample.map(Reservoir::sample).unwrap_or_default();
    let (feedback, compared) = (t.feedback_trials(), t.shadow_compared());
    VariantReport {
        variant: name.to_string(),
        weight: t.weight,
        assigned: t.assigned,
        users: t.users,
        requests: t.requests,
        feedback,
        feedback_rate: rate(feedback, t.requests),
        shadow_compared: compared,
        shadow_drop_rate: rate(t.shadow_dropped, t.shadow_dropped + compared),
        error_rate: rate(t.failures, t.requests),
        latency: summarize(&sample, t.requests, t.failures, alpha),
    }
}

/// One variant in one period (analysed requests only).
#[derive(Clone, Debug, Serialize)]
pub struct VariantReport {
    pub variant: String,
    pub weight: u32,
    /// Requests assigned to it (fallbacks included).
    pub assigned: u64,
    /// Distinct sticky keys assigned to it; `None` without a sticky key.
    pub users: Option<u64>,
    /// Analysed requests it served.
    pub requests: u64,
    /// Feedback received (inputs) and per analysed request.
    pub feedback: u64,
    pub feedback_rate: Option<f64>,
    pub shadow_compared: u64,
    /// Dropped over sampled shadow inputs.
    pub shadow_drop_rate: Option<f64>,
    pub error_rate: Option<f64>,
    /// p50/p95/p99 with intervals; failures and timeouts count as +∞ ("inf").
    pub latency: LatencySummary,
}

#[derive(Clone, Debug, Serialize)]
pub struct PeriodReport {
    pub period: u32,
    /// Unix seconds.
    pub started_at: u64,
    pub ended_at: Option<u64>,
    /// What started it.
    pub reason: String,
    #[serde(flatten)]
    pub setup: Setup,
    pub variants: Vec<VariantReport>,
    #[serde(flatten)]
    pub analysis: Analysis,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExperimentReport {
    pub id: String,
    /// Unix seconds.
    pub started_at: u64,
    /// The current period.
    pub period: u32,
    pub settings: ExperimentSettings,
    /// Newest first: the current period, then the earlier ones.
    pub periods: Vec<PeriodReport>,
}
