//! A small SVG line chart for `kith-sim sweep` and `kith-sim meet`: series against
//! a log-scale x axis, each on its own y scale ([`svg`]) or on one shared y scale
//! ([`svg_shared`]).

use std::fmt::Write as _;

/// Draws `series` (name, points (x, y)) as lines on a log-x chart; each series is
/// scaled to its own maximum, printed in the legend.
pub fn svg(title: &str, x_label: &str, series: &[(&str, Vec<(f64, f64)>)]) -> String {
    chart(title, x_label, series, None)
}

/// Like [`svg`], with every series on one y scale (0 to the largest y of all),
/// labelled `y_label`: for series meant to be compared.
pub fn svg_shared(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> String {
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.0, f64::max)
        .max(1e-9);
    chart(title, x_label, series, Some((y_label, ymax)))
}

fn chart(
    title: &str,
    x_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    shared: Option<(&str, f64)>,
) -> String {
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
    if let Some((y_label, ymax)) = shared {
        let _ = write!(
            out,
            "<text x='{}' y='{}' text-anchor='end'>{ymax:.0}</text><text x='{}' y='{}' text-anchor='end'>0</text><text x='15' y='{}' transform='rotate(-90 15 {})' text-anchor='middle'>{y_label}</text>",
            m - 5.0,
            m + 4.0,
            m - 5.0,
            h - m + 4.0,
            h / 2.0,
            h / 2.0
        );
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let ymax = match shared {
            Some((_, ymax)) => ymax,
            None => points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9),
        };
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
        let legend = if shared.is_some() {
            name.to_string()
        } else {
            format!("{name}, 0 to {ymax:.0}")
        };
        let _ = write!(
            out,
            "<text x='{}' y='{}' fill='{color}'>{legend}</text>",
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

    #[test]
    fn a_shared_scale_labels_the_axis_once_with_the_largest_value() {
        let s = svg_shared(
            "t",
            "share online",
            "minutes",
            &[
                ("a", vec![(1.0, 10.0), (10.0, 2.0)]),
                ("b", vec![(1.0, 40.0), (10.0, 3.0)]),
            ],
        );
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains(">40</text>") && s.contains(">minutes</text>"));
        assert!(!s.contains("0 to"));
    }
}
