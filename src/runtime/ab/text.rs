//! The verdict of a period as text, shared by the server's report and `quantserve ab-report`.

use std::fmt::Write as _;

use serde_json::json;

use super::analysis::{Analysis, Metric};

/// The verdict lines, shared with `quantserve ab-report`.
pub fn verdict_text(a: &Analysis) -> String {
    let metric = match a.metric {
        Metric::OnlineAccuracy => "online accuracy (feedback)",
        Metric::ShadowAgreement => "shadow agreement",
    };
    let mut out = format!(
        "\nVerdicts on {metric}, margin {:.1} pt (always-valid intervals, Holm over {} variant(s)):\n",
        a.margin * 100.0,
        a.comparisons.len()
    );
    for c in &a.comparisons {
        let verdict = json!(c.verdict).as_str().unwrap_or("").to_string();
        let _ = writeln!(
            out,
            "  {:<10} vs {:<8} {:<13} diff {:+.2} pt [{:+.2}, {:+.2}] ({:.1}%)  p={:.4}  n={}/{}{}{}",
            c.variant,
            c.reference,
            verdict,
            c.difference * 100.0,
            c.ci_low * 100.0,
            c.ci_high * 100.0,
            c.ci_level * 100.0,
            c.p_value_holm,
            c.trials,
            c.reference_trials,
            c.users.map_or_else(String::new, |u| format!(" users={u}")),
            c.withheld
                .map_or_else(String::new, |w| format!(" (withheld: {w})")),
        );
    }
    let s = &a.srm;
    let _ = writeln!(
        out,
        "Sample ratio ({}): {:?} for {:?} expected {:?}: p = {:.4} -> {}",
        s.unit,
        s.observed,
        s.variants,
        s.expected.iter().map(|e| e.round()).collect::<Vec<_>>(),
        s.p_value,
        if s.valid {
            "ok"
        } else {
            "MISMATCH: the split is not what was configured; do not trust the verdicts"
        }
    );
    let p = &a.power;
    match (p.needed_per_arm, p.remaining_per_arm) {
        (Some(n), Some(r)) => {
            let _ = writeln!(
                out,
                "Power {:.0}%: a variant as good as the reference needs {} trials (reference {}) \
                 for a verdict; {} more to go; detectable now: {:.2} pt beyond the margin",
                p.power * 100.0,
                n.variant,
                n.reference,
                r.variant.max(r.reference),
                p.mde.unwrap_or(f64::NAN) * 100.0
            );
        }
        _ => {
            let _ = writeln!(out, "Power: not computable yet");
        }
    }
    out
}
