//! `quantserve ab-report --prometheus URL --model M`: an experiment's verdict from the counters
//! every replica exports (`metrics::ab`), summed in Prometheus, through the same function the
//! server's own report uses (`runtime::ab::analysis::analyse`): across replicas, the verdict of
//! all their traffic.
//!
//! Caveats, documented in the README: a replica's counters restart from zero when it restarts
//! (its earlier counts drop out of the sums), period numbers are per process (replicas agree when
//! they receive the same routing changes), and distinct users are counted once per replica.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::metrics::ab::AB_LATENCY_BOUNDS;
use crate::runtime::ab::analysis::{ArmTotals, PeriodTotals, analyse};
use crate::runtime::ab::text::verdict_text;
use crate::runtime::experiment::latency::Histogram;
use crate::runtime::experiment::verdict;

#[derive(Args)]
pub struct AbReportArgs {
    /// Prometheus base URL, http://HOST:PORT (plain HTTP).
    #[arg(long)]
    pub prometheus: String,
    /// The model whose experiment to report (as named in the server's configuration).
    #[arg(long)]
    pub model: String,
    /// Experiment id (default: the one whose latest period started last).
    #[arg(long)]
    pub experiment: Option<String>,
    /// Analysis period (default: the experiment's latest).
    #[arg(long)]
    pub period: Option<u32>,
    /// Print JSON (the same `comparisons`, `srm` and `power` as the server's report).
    #[arg(long)]
    pub json: bool,
}

/// A plain-HTTP GET (Prometheus serves HTTP/1.0 fine); returns the body.
fn http_get(base: &str, path_and_query: &str) -> Result<String> {
    let rest = base
        .strip_prefix("http://")
        .context("--prometheus must be an http:// URL")?;
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_end_matches('/');
    let path = if prefix.is_empty() {
        path_and_query.to_string()
    } else {
        format!("/{prefix}{path_and_query}")
    };
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let mut s = TcpStream::connect(&addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nhost: {host}\r\naccept: application/json\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        bail!("Prometheus answered {status}: {body}");
    }
    Ok(body.to_string())
}

fn encode(q: &str) -> String {
    percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Prometheus label value quoting.
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An instant query's series: (labels, value).
fn query(base: &str, q: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>> {
    let body = http_get(base, &format!("/api/v1/query?query={}", encode(q)))?;
    let v: Value = serde_json::from_str(&body).context("Prometheus answered no JSON")?;
    if v["status"] != "success" {
        bail!("query {q} failed: {}", v["error"]);
    }
    let mut out = Vec::new();
    for r in v["data"]["result"].as_array().into_iter().flatten() {
        let labels = r["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let value = r["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        out.push((labels, value));
    }
    Ok(out)
}

/// Which experiment and period, and the period's settings (from `quantserve_ab_period_info`).
struct PeriodInfo {
    experiment: String,
    period: u32,
    labels: BTreeMap<String, String>,
}

fn pick_period(args: &AbReportArgs) -> Result<PeriodInfo> {
    let mut selector = format!("model={}", quote(&args.model));
    if let Some(e) = &args.experiment {
        selector.push_str(&format!(",experiment={}", quote(e)));
    }
    let infos = query(
        &args.prometheus,
        &format!(
            "max by (experiment, period, reference, shadow_reference, sticky, margin, alpha, power) (quantserve_ab_period_info{{{selector}}})"
        ),
    )?;
    let parsed: Vec<(u32, f64, BTreeMap<String, String>)> = infos
        .into_iter()
        .filter_map(|(l, started)| Some((l.get("period")?.parse().ok()?, started, l)))
        .collect();
    // The experiment of the newest period, then the wanted (or latest) period of it.
    let experiment = match &args.experiment {
        Some(e) => e.clone(),
        None => parsed
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .and_then(|p| p.2.get("experiment").cloned())
            .with_context(|| format!("no experiment of model {:?} in Prometheus", args.model))?,
    };
    let candidates = parsed
        .into_iter()
        .filter(|p| p.2.get("experiment") == Some(&experiment));
    let chosen = match args.period {
        Some(n) => candidates
            .filter(|p| p.0 == n)
            .max_by(|a, b| a.1.total_cmp(&b.1)),
        None => candidates.max_by_key(|p| p.0),
    }
    .with_context(|| format!("no such period of experiment {experiment:?}"))?;
    Ok(PeriodInfo {
        experiment,
        period: chosen.0,
        labels: chosen.2,
    })
}

/// The period's totals, summed over replicas.
fn totals(
    args: &AbReportArgs,
    info: &PeriodInfo,
) -> Result<(PeriodTotals, BTreeMap<String, Histogram>)> {
    let sel = format!(
        "model={},experiment={},period=\"{}\"",
        quote(&args.model),
        quote(&info.experiment),
        info.period
    );
    let base = &args.prometheus;
    let label = |l: &BTreeMap<String, String>, k: &str| l.get(k).cloned().unwrap_or_default();
    let mut t = PeriodTotals {
        reference: label(&info.labels, "reference"),
        shadow_reference: Some(label(&info.labels, "shadow_reference")).filter(|s| !s.is_empty()),
        sticky: info.labels.get("sticky").is_some_and(|s| s == "true"),
        arms: BTreeMap::new(),
    };
    for (l, w) in query(
        base,
        &format!("max by (variant) (quantserve_ab_weight{{{sel}}})"),
    )? {
        t.arms.entry(label(&l, "variant")).or_default().weight = w as u32;
    }
    let per_variant = |name: &str| -> Result<Vec<(String, u64)>> {
        Ok(query(base, &format!("sum by (variant) ({name}{{{sel}}})"))?
            .into_iter()
            .map(|(l, v)| (label(&l, "variant"), v.round() as u64))
            .collect())
    };
    for (v, n) in per_variant("quantserve_ab_assignments_total")? {
        t.arms.entry(v).or_default().assigned = n;
    }
    for (v, n) in per_variant("quantserve_ab_requests_total")? {
        t.arms.entry(v).or_default().requests = n;
    }
    for (v, n) in per_variant("quantserve_ab_failures_total")? {
        t.arms.entry(v).or_default().failures = n;
    }
    for (v, n) in per_variant("quantserve_ab_shadow_dropped_total")? {
        t.arms.entry(v).or_default().shadow_dropped = n;
    }
    if t.sticky {
        for arm in t.arms.values_mut() {
            arm.users = Some(0);
        }
        for (v, n) in per_variant("quantserve_ab_users_total")? {
            t.arms.entry(v).or_default().users = Some(n);
        }
    }
    for (series, is_trials) in [
        ("quantserve_ab_trials_total", true),
        ("quantserve_ab_successes_total", false),
    ] {
        let q = format!("sum by (variant, metric, bucket) ({series}{{{sel}}})");
        for (l, v) in query(base, &q)? {
            let arm: &mut ArmTotals = t.arms.entry(label(&l, "variant")).or_default();
            let map = if label(&l, "metric") == "feedback" {
                &mut arm.feedback
            } else {
                &mut arm.shadow
            };
            let bucket = label(&l, "bucket").parse().unwrap_or(0);
            let cell = map.entry(bucket).or_default();
            if is_trials {
                cell.1 = v.round() as u64;
            } else {
                cell.0 = v.round() as u64;
            }
        }
    }
    let mut cumulative: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    let q = format!("sum by (variant, le) (quantserve_ab_latency_seconds_bucket{{{sel}}})");
    for (l, v) in query(base, &q)? {
        let le = label(&l, "le");
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        cumulative
            .entry(label(&l, "variant"))
            .or_default()
            .push((bound, v.round() as u64));
    }
    let histograms = cumulative
        .into_iter()
        .map(|(v, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let counts: Vec<u64> = points
                .iter()
                .filter(|p| p.0.is_finite())
                .map(|p| p.1)
                .chain(points.last().map(|p| p.1))
                .collect();
            let failures = t.arms.get(&v).map_or(0, |a| a.failures);
            (
                v,
                Histogram::from_cumulative(AB_LATENCY_BOUNDS.to_vec(), &counts, failures),
            )
        })
        .collect();
    Ok((t, histograms))
}

pub fn run(args: AbReportArgs) -> Result<()> {
    let info = pick_period(&args)?;
    let (totals, histograms) = totals(&args, &info)?;
    let number = |k: &str, default: f64| {
        info.labels
            .get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let d = verdict::Config::default();
    let config = verdict::Config {
        margin: number("margin", d.margin),
        alpha: number("alpha", d.alpha),
        power: number("power", d.power),
        tau: None,
    };
    let analysis = analyse(&config, &totals);
    let latency: BTreeMap<&String, Value> = histograms
        .iter()
        .map(|(v, h)| {
            let p = |q| h.percentile(q, config.alpha).map(|p| json!(p));
            (v, json!({"p50": p(0.5), "p95": p(0.95), "p99": p(0.99)}))
        })
        .collect();
    if args.json {
        let out = json!({
            "model": args.model,
            "experiment": {"id": info.experiment, "period": info.period},
            "totals": totals,
            "metric": analysis.metric,
            "comparisons": analysis.comparisons,
            "srm": analysis.srm,
            "power": analysis.power,
            "latency": latency,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "Experiment {} of {}, period {} (summed over every replica Prometheus scrapes)",
            info.experiment, args.model, info.period
        );
        for (v, arm) in &totals.arms {
            println!(
                "  {v:<10} weight {:>3}  assigned {:>7}  users {:>6}  requests {:>7}  failures {:>4}  feedback {:>6}  shadow {:>6}",
                arm.weight,
                arm.assigned,
                arm.users.map_or_else(|| "-".into(), |u| u.to_string()),
                arm.requests,
                arm.failures,
                arm.feedback_trials(),
                arm.shadow_compared(),
            );
        }
        print!("{}", verdict_text(&analysis));
    }
    Ok(())
}
