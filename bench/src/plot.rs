//! The latency plot of a run: push latency and sequential RPC latency,
//! side by side, as HdrHistogram-style percentile plots (x: percentile on
//! a "nines" scale, y: milliseconds on a log scale), one line per system.
//!
//! Only plotters' `svg_backend` and `line_series` features are enabled: no
//! font is loaded, the SVG backend writes `<text>` elements and leaves the
//! glyphs to the viewer, and plotters estimates text sizes for the layout.

use anyhow::anyhow;
use plotters::prelude::*;

use crate::results::{Latency, Outcome, Report, Scenario};

/// Width and height of the whole picture, in pixels.
const SIZE: (u32, u32) = (1280, 560);
/// Latencies below this, in milliseconds, are drawn at it (log scale).
const FLOOR_MS: f64 = 0.001;
/// Fewest nines the x axis shows (99.9 %), before "max".
const MIN_NINES: u32 = 3;
/// Most nines the x axis shows; higher quantiles are drawn there.
const MAX_NINES: u32 = 6;
/// Line colours, one per system, the same in both panels.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One system's line: its name and `(quantile, milliseconds)` points.
struct Line {
    system: String,
    points: Vec<(f64, f64)>,
}

/// Renders the push-latency and sequential-RPC latency distributions of
/// `report` as an SVG document: two panels, one line per measured system
/// (from [`Latency::cdf`], or from the percentiles when the CDF is empty),
/// with titles, axis labels and a legend. A panel without data says so.
pub fn latency_svg(report: &Report) -> anyhow::Result<String> {
    let panels = [
        (Scenario::PushLatency, "Push latency, publish to delivery"),
        (
            Scenario::RpcSequential,
            "RPC round trip, one call at a time",
        ),
    ];
    let lines: Vec<Vec<Line>> = panels
        .iter()
        .map(|(scenario, _)| lines_of(report, *scenario))
        .collect();
    // One colour per system, in order of first appearance.
    let mut systems: Vec<&str> = Vec::new();
    for line in lines.iter().flatten() {
        if !systems.contains(&line.system.as_str()) {
            systems.push(&line.system);
        }
    }
    let color = |system: &str| {
        let index = systems.iter().position(|s| *s == system).unwrap_or(0);
        COLORS[index % COLORS.len()]
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let areas = root.split_evenly((1, panels.len()));
        for ((area, (_, title)), lines) in areas.iter().zip(panels).zip(&lines) {
            draw_panel(area, title, lines, &color).map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The lines of the measured rows of `scenario` that have a latency.
fn lines_of(report: &Report, scenario: Scenario) -> Vec<Line> {
    report
        .rows
        .iter()
        .filter(|row| row.scenario == scenario)
        .filter_map(|row| match &row.outcome {
            Outcome::Measured(m) => m.latency.as_ref().map(|latency| Line {
                system: row.system.clone(),
                points: points(latency),
            }),
            Outcome::Failed { .. } => None,
        })
        .filter(|line| !line.points.is_empty())
        .collect()
}

/// `(quantile, milliseconds)` of a distribution, sorted by quantile.
fn points(latency: &Latency) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = if latency.cdf.is_empty() {
        vec![
            (0.5, latency.p50_us),
            (0.99, latency.p99_us),
            (0.999, latency.p999_us),
            (1.0, latency.max_us),
        ]
    } else {
        latency.cdf.clone()
    };
    points.retain(|(q, us)| q.is_finite() && us.is_finite());
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
        .into_iter()
        .map(|(q, us)| (q.clamp(0.0, 1.0), (us / 1000.0).max(FLOOR_MS)))
        .collect()
}

/// `-log10(1 - q)`: 0 at the median's left end, 1 at 90 %, 2 at 99 %...;
/// infinite at `q = 1`.
fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        f64::INFINITY
    } else {
        -(1.0 - q).log10()
    }
}

/// The nines the x axis shows before "max", which sits one step further.
fn axis_nines(lines: &[Line]) -> u32 {
    let finite = lines
        .iter()
        .flat_map(|line| &line.points)
        .map(|(q, _)| nines(*q))
        .filter(|n| n.is_finite())
        .fold(0.0_f64, f64::max);
    ((finite - 1e-6).ceil().max(0.0) as u32).clamp(MIN_NINES, MAX_NINES)
}

/// The x-axis label at `x` nines, `top` being the position of "max";
/// none between whole nines.
fn percentile_label(x: f64, top: u32) -> String {
    if (x - x.round()).abs() > 1e-6 {
        return String::new();
    }
    let n = x.round() as u32;
    match n {
        _ if n >= top => "max".into(),
        0 => "0%".into(),
        1 => "90%".into(),
        _ => format!("99.{}%", "9".repeat(n as usize - 2)).replace(".%", "%"),
    }
}

/// A y-axis label, in milliseconds, without trailing zeros.
fn ms_label(ms: f64) -> String {
    let text = if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.3}")
    };
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

/// The y axis of a panel whose latencies span `low..=high` ms: whole
/// decades (so that at least two of them are labelled), with room at the
/// top for a legend of `entries` lines above the data.
fn y_bounds(low: f64, high: f64, entries: usize) -> (f64, f64) {
    let (low, high) = (low.max(FLOOR_MS).log10(), high.max(FLOOR_MS).log10());
    let span = (high - low).max(0.5);
    // Share of the plot's height the legend takes, over the plot's height.
    let legend = ((18 * entries + 24) as f64 / f64::from(SIZE.1 - 130)).min(0.6);
    let top = high + span * legend / (1.0 - legend);
    // A hair below the decade, so that its label is drawn.
    (
        10f64.powf(low.floor()) * 0.999,
        10f64.powf(top.ceil().max(low.floor() + 1.0)),
    )
}

/// Draws one panel into `area`.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    lines: &[Line],
    color: &dyn Fn(&str) -> RGBColor,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let top = axis_nines(lines) + 1;
    let (mut low, mut high) = lines
        .iter()
        .flat_map(|line| &line.points)
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), (_, ms)| {
            (lo.min(*ms), hi.max(*ms))
        });
    if !low.is_finite() || high <= 0.0 {
        (low, high) = (0.01, 10.0);
    }
    let x_range = 0.0..f64::from(top);
    let (low, high) = y_bounds(low, high, lines.len());
    let y_range = (low..high).log_scale();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .x_labels(top as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x, top))
        .y_label_formatter(&|y| ms_label(*y))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    if lines.is_empty() {
        let x = chart.x_range().start + 0.1;
        let y = (low * high).sqrt();
        chart.draw_series(std::iter::once(Text::new(
            "no data in this run",
            (x, y),
            ("sans-serif", 18).into_font().color(&BLACK.mix(0.6)),
        )))?;
        return Ok(());
    }
    let to_x = |q: f64| nines(q).min(f64::from(top));
    for line in lines {
        let stroke = color(&line.system).stroke_width(2);
        let series = LineSeries::new(line.points.iter().map(|(q, ms)| (to_x(*q), *ms)), stroke);
        chart
            .draw_series(series)?
            .label(line.system.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], stroke));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

/// A plotters error as an [`anyhow::Error`].
fn plot_error<E: std::error::Error + Send + Sync>(error: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("drawing the latency plot: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::sample;

    #[test]
    fn svg_has_titles_legend_and_one_line_per_system() {
        let report = sample();
        let svg = latency_svg(&report).expect("plot");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .and_then(|(_, rest)| rest.split_once("</text>"))
            })
            .map(|(text, _)| text.trim())
            .collect();
        for wanted in [
            "Push latency, publish to delivery",
            "RPC round trip, one call at a time",
            "percentile",
            "latency (ms, log scale)",
            "90%",
            "99.9%",
            "max",
        ] {
            assert!(texts.contains(&wanted), "no text {wanted:?} in {texts:?}");
        }
        let push = lines_of(&report, Scenario::PushLatency);
        let rpc = lines_of(&report, Scenario::RpcSequential);
        assert_eq!(push.len(), 4);
        assert_eq!(rpc.len(), 4);
        for line in push.iter().chain(&rpc) {
            assert!(
                texts.contains(&line.system.as_str()),
                "no legend for {}",
                line.system
            );
        }
        // A polyline per line, and one per legend entry.
        assert!(svg.matches("<polyline").count() >= 2 * (push.len() + rpc.len()));
        // Each line goes through its points: as many as the CDF has.
        let longest = svg
            .split("<polyline")
            .skip(1)
            .map(|p| {
                p.split("points=\"").nth(1).map_or(0, |pts| {
                    pts.split('"')
                        .next()
                        .unwrap_or("")
                        .split_whitespace()
                        .count()
                })
            })
            .max();
        assert_eq!(longest, Some(10));
    }

    #[test]
    fn an_empty_run_still_plots() {
        let mut report = sample();
        report.rows.clear();
        let svg = latency_svg(&report).expect("plot");
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("no data in this run").count(), 2);
    }

    #[test]
    fn nines_scale() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert!(nines(1.0).is_infinite());
        assert_eq!(percentile_label(0.0, 4), "0%");
        assert_eq!(percentile_label(2.0, 4), "99%");
        assert_eq!(percentile_label(3.0, 4), "99.9%");
        assert_eq!(percentile_label(4.0, 5), "99.99%");
        assert_eq!(percentile_label(4.0, 4), "max");
        assert_eq!(ms_label(0.05), "0.05");
        assert_eq!(ms_label(20.0), "20");
        let (low, high) = y_bounds(0.3, 0.8, 0);
        assert!((low - 0.0999).abs() < 1e-9 && (high - 1.0).abs() < 1e-9);
        let (low, high) = y_bounds(0.05, 90.0, 4);
        assert!((low - 0.00999).abs() < 1e-9);
        assert!(high >= 1000.0, "{high}");
        let points = points(&Latency {
            p50_us: 100.0,
            p99_us: 0.0,
            p999_us: 300.0,
            max_us: 400.0,
            ..Latency::default()
        });
        assert_eq!(
            points,
            [(0.5, 0.1), (0.99, FLOOR_MS), (0.999, 0.3), (1.0, 0.4)]
        );
    }
}
