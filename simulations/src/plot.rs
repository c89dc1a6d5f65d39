//! A small SVG line chart for `kith-sim sweep`: two series against the number of
//! devices, each on its own axis scale.

use std::fmt::Write as _;

/// Draws `series` (name, points (x, y)) as lines on a log-x chart; each series is
/// scaled to its own maximum, printed in the legend.
pub fn svg(title: &str, x_label: &str, series: &[(&str, Vec<(f64, f64)>)]) -> String {
    let (w, h, m) = (640.0, 400.0, 60.0);
    let mut xs: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let (xmin, xmax) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let lx = |x: f64| {
        if xmax > xmin {
            (x.ln() - xmin.ln()) / (xmax.ln() - xmin.ln())
        } else {
            0.5
        }
    };
    let colors = ["#1f77b4", "#d62728", "#2ca02c"];
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>"
    );
    let _ = write!(
        out,
        "<rect width='100%' height='100%' fill='white'/><text x='{}' y='20' text-anchor='middle' font-size='14'>{title}</text>",
        w / 2.0
    );
    let _ = write!(
        out,
        "<line x1='{m}' y1='{}' x2='{}' y2='{}' stroke='black'/>",
        h - m,
        w - m,
        h - m
    );
    let _ = write!(
        out,
        "<line x1='{m}' y1='{m}' x2='{m}' y2='{}' stroke='black'/>",
        h - m
    );
    let _ = write!(
        out,
        "<text x='{}' y='{}' text-anchor='middle'>{x_label} (log scale)</text>",
        w / 2.0,
        h - 20.0
    );
    for x in &xs {
        let px = m + lx(*x) * (w - 2.0 * m);
        let _ = write!(
            out,
            "<text x='{px}' y='{}' text-anchor='middle'>{x}</text>",
            h - m + 15.0
        );
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let ymax = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
        let color = colors[i % colors.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    m + lx(*x) * (w - 2.0 * m),
                    h - m - y / ymax * (h - 2.0 * m)
                )
            })
            .collect();
        let _ = write!(
            out,
            "<polyline fill='none' stroke='{color}' stroke-width='2' points='{}'/>",
            path.join(" ")
        );
        let _ = write!(
            out,
            "<text x='{}' y='{}' fill='{color}'>{name}, 0 to {ymax:.0}</text>",
            m + 10.0,
            38.0 + 14.0 * i as f64
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_series_and_labels_each_x_once() {
        let s = svg(
            "t",
            "devices",
            &[
                ("a", vec![(10.0, 1.0), (100.0, 2.0)]),
                ("b", vec![(10.0, 5.0), (100.0, 3.0)]),
            ],
        );
        assert_eq!(s.matches("<polyline").count(), 2);
        assert_eq!(s.matches(">100</text>").count(), 1);
        assert!(s.contains("a, 0 to 2") && s.contains("b, 0 to 5"));
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    }
}
