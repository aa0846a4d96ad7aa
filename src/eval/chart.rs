//! A small SVG scatter chart (speed vs quality, one labelled point per variant), written by hand:
//! a plotting crate would add minutes of compile time on the shared 2-core machine for a chart
//! that is a few dozen SVG elements.

use std::fmt::Write;

/// One labelled point.
pub struct Point {
    pub label: String,
    pub x: f64,
    pub y: f64,
}

const W: f64 = 720.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Renders `points` with a logarithmic x axis (speeds span orders of magnitude) and a linear
/// y axis.
pub fn scatter_svg(title: &str, x_label: &str, y_label: &str, points: &[Point]) -> String {
    let finite: Vec<&Point> = points
        .iter()
        .filter(|p| p.x > 0.0 && p.x.is_finite() && p.y.is_finite())
        .collect();
    let (mut x0, mut x1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.x.log10()), b.max(p.x.log10()))
    });
    let (mut y0, mut y1) = finite
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.y), b.max(p.y)));
    if finite.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = |a: f64, b: f64| ((b - a) * 0.08).max(0.05);
    let (px, py) = (pad(x0, x1), pad(y0, y1));
    (x0, x1, y0, y1) = (x0 - px, x1 + px, (y0 - py).max(0.0), y1 + py);
    let sx = |x: f64| LEFT + (x.log10() - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let sy = |y: f64| H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    let (bx, by) = (H - BOTTOM, W - RIGHT);
    let _ = writeln!(
        s,
        r#"<path d="M{LEFT},{TOP} V{bx} H{by}" stroke="black" fill="none"/>"#
    );
    // Ticks: powers of 1, 2, 5 along x; five steps along y.
    for e in (x0.floor() as i32)..=(x1.ceil() as i32) {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if (x0..=x1).contains(&v.log10()) {
                let x = sx(v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bx}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                    bx + 16.0,
                    fmt_num(v)
                );
            }
        }
    }
    for i in 0..=5 {
        let v = y0 + (y1 - y0) * f64::from(i) / 5.0;
        let y = sy(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{by}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.1}</text>"##,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 18.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
        H / 2.0,
        H / 2.0,
        escape(y_label)
    );
    let mut placed: Vec<LabelBox> = Vec::new();
    for p in finite {
        let (x, y) = (sx(p.x), sy(p.y));
        let label = place_label(x, y, &p.label, &placed);
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="#1f77b4"/><text x="{:.1}" y="{:.1}" text-anchor="{}">{}</text>"##,
            label.anchor_x(),
            label.baseline,
            if label.end_anchored { "end" } else { "start" },
            escape(&p.label)
        );
        placed.push(label);
    }
    s.push_str("</svg>\n");
    s
}

/// Where a point's label goes: its box (left, right, baseline) in SVG units.
struct LabelBox {
    left: f64,
    right: f64,
    baseline: f64,
    end_anchored: bool,
}

/// Approximate extent of 12-px sans-serif text: enough to keep labels apart.
const CHAR_W: f64 = 7.0;
const LINE_H: f64 = 14.0;

impl LabelBox {
    fn anchor_x(&self) -> f64 {
        if self.end_anchored {
            self.right
        } else {
            self.left
        }
    }

    /// The area two label boxes share (0 when apart).
    fn overlap(&self, other: &LabelBox) -> f64 {
        let w = self.right.min(other.right) - self.left.max(other.left);
        let h = LINE_H - (self.baseline - other.baseline).abs();
        w.max(0.0) * h.max(0.0)
    }
}

/// Variants measured side by side (a trained variant and its post-training twin) often land on
/// the same spot; the label takes the first of four places around its point (above right,
/// below right, above left, below left) that no earlier label occupies, so both stay readable
/// (where all four are taken, the one it shares least).
fn place_label(x: f64, y: f64, label: &str, placed: &[LabelBox]) -> LabelBox {
    let width = CHAR_W * label.chars().count() as f64;
    let candidates = [(false, -6.0), (false, 16.0), (true, -6.0), (true, 16.0)].map(|(end, dy)| {
        let (left, right) = if end {
            (x - 6.0 - width, x - 6.0)
        } else {
            (x + 6.0, x + 6.0 + width)
        };
        LabelBox {
            left,
            right,
            baseline: y + dy,
            end_anchored: end,
        }
    });
    let crowding = |c: &LabelBox| placed.iter().map(|p| c.overlap(p)).sum::<f64>();
    let mut best = 0;
    for (i, c) in candidates.iter().enumerate() {
        if crowding(c) < crowding(&candidates[best]) {
            best = i;
        }
    }
    candidates.into_iter().nth(best).expect("four candidates")
}

fn fmt_num(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_every_point_and_is_well_formed() {
        let points = vec![
            Point {
                label: "fp32".into(),
                x: 10.0,
                y: 85.7,
            },
            Point {
                label: "int4<g64>".into(),
                x: 40.0,
                y: 85.6,
            },
        ];
        let svg = scatter_svg("t", "speed", "quality", &points);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("int4&lt;g64&gt;"));
    }

    #[test]
    fn labels_of_points_on_the_same_spot_do_not_overlap() {
        let points: Vec<Point> = ["mixed", "mixed-kd", "int4", "int4-kd", "bcq2"]
            .iter()
            .map(|l| Point {
                label: (*l).into(),
                x: 90.0,
                y: 84.8,
            })
            .collect();
        let mut placed: Vec<LabelBox> = Vec::new();
        for p in &points[..4] {
            let b = place_label(300.0, 200.0, &p.label, &placed);
            assert!(
                placed.iter().all(|q| b.overlap(q) == 0.0),
                "{} overlaps",
                p.label
            );
            placed.push(b);
        }
        // A fifth has nowhere free: it takes the place it shares least (a tie here, so the
        // first), never a panic; a longer one avoids the longest neighbour ("mixed-kd").
        let fifth = place_label(300.0, 200.0, "bcq2", &placed);
        assert!(!fifth.end_anchored && fifth.baseline == 194.0);
        let long = place_label(300.0, 200.0, "a-much-longer-label", &placed);
        assert!(long.end_anchored && long.baseline == 194.0);
        let svg = scatter_svg("t", "speed", "quality", &points);
        assert!(svg.contains(r#"text-anchor="start">mixed<"#), "{svg}");
        assert!(svg.contains(r#"text-anchor="end">int4<"#), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 5);
    }
}
