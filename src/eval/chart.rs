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
    for p in finite {
        let (x, y) = (sx(p.x), sy(p.y));
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="#1f77b4"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            x + 6.0,
            y - 6.0,
            escape(&p.label)
        );
    }
    s.push_str("</svg>\n");
    s
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
}
