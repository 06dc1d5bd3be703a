//! Every chart the CLI draws (the sweep's `--plot`, the figures of `cascade report`): SVG text
//! from plotters, drawn to one set of rules so that a chart reads without squinting.
//!
//! - An axis is logarithmic when its data span more than 1.5 decades (and are positive), else
//!   linear; a log axis is drawn in log10 space with ticks only at whole powers of ten.
//! - Tick labels are few (at most [`MAX_TICKS`]) and short: SI prefixes with the axis unit
//!   (`200 µs`, `1.5 GB/s`), so neighbours never overlap.
//! - Every axis names its quantity and unit; the legend sits in its own panel to the right of
//!   the plot, never over the data.
//! - Colours are the Okabe–Ito palette, distinguishable with the common colour-vision
//!   deficiencies; fonts are the viewer's `sans-serif`, so a page needs nothing from a network.

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

/// The most tick labels on one axis.
pub const MAX_TICKS: usize = 7;

/// Width of the legend panel, in pixels.
const LEGEND_WIDTH: u32 = 220;

/// Data spanning more decades than this get a log axis.
const LOG_DECADES: f64 = 1.5;

/// A chart that cannot be drawn: no data, or a drawing failure.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotError(pub String);

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlotError {}

fn drawing<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError(format!("drawing failed: {e}"))
}

/// One axis: what it measures and the SI unit its ticks carry (`None`: a plain number).
#[derive(Debug, Clone)]
pub struct Axis {
    /// The quantity and its unit, e.g. `latency (s)`.
    pub label: String,
    pub unit: Option<&'static str>,
    /// Logarithmic whatever the span (a roofline's axes); otherwise chosen from the data.
    pub always_log: bool,
}

impl Axis {
    pub fn new(label: impl Into<String>, unit: Option<&'static str>) -> Axis {
        Axis {
            label: label.into(),
            unit,
            always_log: false,
        }
    }

    /// The same axis, logarithmic for any positive data.
    pub fn log(self) -> Axis {
        Axis {
            always_log: true,
            ..self
        }
    }
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Points,
    Line,
    /// A dashed line: a bound (a roof) rather than data.
    Dashed,
    /// A filled bar (legends of bar charts only).
    Bar,
    /// A cross at each point: a marked event on a curve (where communication stops hiding).
    Cross,
}

/// One labelled set of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub mark: Mark,
    /// Index into the palette; series of one subject share it.
    pub colour: usize,
}

/// An x-y chart: points, lines and bounds.
#[derive(Debug, Clone)]
pub struct Scatter {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
}

/// A horizontal bar chart: one bar per category, each made of coloured segments (stacked left
/// to right) that belong to the named series.
#[derive(Debug, Clone)]
pub struct Bars {
    pub title: String,
    pub value: Axis,
    pub series: Vec<String>,
    /// (category label, segments as (series index, value)), drawn top to bottom.
    pub categories: Vec<(String, Vec<(usize, f64)>)>,
}

/// The Okabe–Ito palette (black last).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

pub fn colour(k: usize) -> RGBColor {
    PALETTE[k % PALETTE.len()]
}

/// `v` with an SI prefix and `unit`, in at most three significant digits: `1.5 ms`, `20 GB/s`.
/// A plain number (`unit` `None`) keeps 0.01 to 9,999 as they are.
pub fn si(v: f64, unit: Option<&str>) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}{}", unit.map(|u| format!(" {u}")).unwrap_or_default());
    }
    const PREFIXES: [(f64, &str); 11] = [
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
        (1.0, ""),
        (1e-3, "m"),
        (1e-6, "µ"),
        (1e-9, "n"),
        (1e-12, "p"),
    ];
    let a = v.abs();
    let (scale, prefix) = if unit.is_none() && (1e-2..1e4).contains(&a) {
        (1.0, "")
    } else {
        PREFIXES
            .iter()
            .copied()
            .find(|&(s, _)| a >= s * 0.9995)
            .unwrap_or((1e-12, "p"))
    };
    let x = v / scale;
    // Three significant digits, trailing zeros dropped.
    let digits = if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    let mut text = format!("{x:.digits$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    match unit {
        Some(u) => format!("{text} {prefix}{u}"),
        None => format!("{text}{prefix}"),
    }
}

/// How an axis maps data: linear, or log10 (positive data spanning decades).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    log: bool,
    lo: f64,
    hi: f64,
}

impl Scale {
    /// The scale for values `lo..=hi` (finite), padded by 5% (of the span, or of the decades).
    fn fit(lo: f64, hi: f64, from_zero: bool, always_log: bool) -> Scale {
        let log = lo > 0.0 && (always_log || hi / lo > 10f64.powf(LOG_DECADES));
        if log {
            let (a, b) = (lo.log10(), hi.log10());
            let pad = ((b - a) * 0.05).max(0.05);
            // Under two decades the axis runs from decade to decade, so that it has at least
            // two whole-decade ticks and nothing between them to label.
            let (lo, hi) = if b - a + 2.0 * pad < 2.0 {
                (a.floor(), b.ceil().max(a.floor() + 1.0))
            } else {
                (a - pad, b + pad)
            };
            Scale { log, lo, hi }
        } else {
            let lo = if from_zero { lo.min(0.0) } else { lo };
            let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
            let pad = span * 0.05;
            Scale {
                log,
                lo: if from_zero && lo >= 0.0 {
                    0.0
                } else {
                    lo - pad
                },
                hi: hi + pad,
            }
        }
    }

    fn map(&self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }

    fn value(&self, t: f64) -> f64 {
        if self.log { 10f64.powf(t) } else { t }
    }

    /// A tick's label: on a log axis only whole decades are labelled.
    fn label(&self, t: f64, unit: Option<&str>) -> String {
        if self.log && (t - t.round()).abs() > 1e-6 {
            String::new()
        } else {
            si(self.value(t), unit)
        }
    }

    /// Tick labels to ask plotters for: on a log axis, few enough that its nice steps are
    /// whole decades.
    fn ticks(&self) -> usize {
        if self.log {
            ((self.hi - self.lo).floor() as usize + 1).clamp(2, MAX_TICKS)
        } else {
            MAX_TICKS - 1
        }
    }

    fn describe(&self, axis: &Axis) -> String {
        if self.log {
            format!("{} — log scale", axis.label)
        } else {
            axis.label.clone()
        }
    }
}

/// The finite (and, for a log axis, positive) range of `values`.
fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
}

/// A legend panel: a swatch and a label per entry, top to bottom.
fn legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[(String, usize, Mark)],
) -> Result<(), PlotError> {
    let style = ("sans-serif", 13).into_font().color(&BLACK);
    for (i, (label, colour_index, mark)) in entries.iter().enumerate() {
        let y = 50 + 22 * i as i32;
        let c = colour(*colour_index);
        match mark {
            Mark::Points => area
                .draw(&Circle::new((14, y), 4, c.filled()))
                .map_err(drawing)?,
            Mark::Line => area
                .draw(&PathElement::new(vec![(4, y), (24, y)], c.stroke_width(2)))
                .map_err(drawing)?,
            Mark::Bar => area
                .draw(&Rectangle::new([(6, y - 6), (22, y + 6)], c.filled()))
                .map_err(drawing)?,
            Mark::Cross => area
                .draw(&Cross::new((14, y), 5, c.stroke_width(2)))
                .map_err(drawing)?,
            Mark::Dashed => {
                for x in [4, 17] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 7, y)],
                        c.stroke_width(2),
                    ))
                    .map_err(drawing)?;
                }
            }
        }
        // Long names are cut so the panel keeps its width.
        let text: String = if label.chars().count() > 26 {
            label.chars().take(25).chain(['…']).collect()
        } else {
            label.clone()
        };
        area.draw(&Text::new(text, (32, y - 7), style.clone()))
            .map_err(drawing)?;
    }
    Ok(())
}

/// Draws an x-y chart as SVG text.
pub fn scatter(chart: &Scatter) -> Result<String, PlotError> {
    // Bounds (dashed) are part of what is shown, so they set the range too.
    let data = || chart.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) =
        extent(data().map(|p| p.0)).ok_or_else(|| PlotError("no data to plot".into()))?;
    let (y0, y1) =
        extent(data().map(|p| p.1)).ok_or_else(|| PlotError("no data to plot".into()))?;
    let sx = Scale::fit(x0, x1, false, chart.x.always_log);
    let sy = Scale::fit(y0, y1, false, chart.y.always_log);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let (plot, side) = root.split_horizontally(900 - LEGEND_WIDTH);
        let mut c = ChartBuilder::on(&plot)
            .caption(&chart.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(84)
            .build_cartesian_2d(sx.lo..sx.hi, sy.lo..sy.hi)
            .map_err(drawing)?;
        let (xu, yu) = (chart.x.unit, chart.y.unit);
        c.configure_mesh()
            .x_labels(sx.ticks())
            .y_labels(sy.ticks())
            .x_label_formatter(&|t| sx.label(*t, xu))
            .y_label_formatter(&|t| sy.label(*t, yu))
            .x_desc(sx.describe(&chart.x))
            .y_desc(sy.describe(&chart.y))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(drawing)?;
        let inside = |&(x, y): &(f64, f64)| {
            x.is_finite() && y.is_finite() && (!sx.log || x > 0.0) && (!sy.log || y > 0.0)
        };
        for s in &chart.series {
            let col = colour(s.colour);
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|p| inside(p))
                .map(|&(x, y)| (sx.map(x), sy.map(y)))
                .collect();
            match s.mark {
                Mark::Points => {
                    c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled())))
                        .map_err(drawing)?;
                }
                Mark::Line | Mark::Bar => {
                    c.draw_series(LineSeries::new(pts, col.stroke_width(2)))
                        .map_err(drawing)?;
                }
                Mark::Dashed => {
                    c.draw_series(DashedLineSeries::new(pts, 8, 5, col.stroke_width(2)))
                        .map_err(drawing)?;
                }
                Mark::Cross => {
                    c.draw_series(pts.iter().map(|&p| Cross::new(p, 6, col.stroke_width(3))))
                        .map_err(drawing)?;
                }
            }
        }
        let entries: Vec<(String, usize, Mark)> = chart
            .series
            .iter()
            .map(|s| (s.label.clone(), s.colour, s.mark))
            .collect();
        legend(&side, &entries)?;
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

/// Charts side by side in one SVG under a title: each chart's own SVG placed at its offset
/// (`x`), so every panel keeps this module's rules.
pub fn row(title: &str, charts: &[String]) -> String {
    let size = |svg: &str, key: &str| -> u32 {
        let at = svg
            .find(&format!("{key}=\""))
            .map_or(0, |k| k + key.len() + 2);
        svg[at..]
            .split('"')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let top = 36;
    let width: u32 = charts.iter().map(|c| size(c, "width")).sum();
    let height = charts.iter().map(|c| size(c, "height")).max().unwrap_or(0) + top;
    let mut out = format!(
        "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" xmlns=\"http://www.w3.org/2000/svg\">\n<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n<text x=\"12\" y=\"24\" font-family=\"sans-serif\" font-size=\"18\">{}</text>\n",
        escape_xml(title)
    );
    let mut x = 0;
    for c in charts {
        let body = c.trim_start_matches(|ch| ch != '<');
        let body = body.strip_prefix("<?xml").map_or(body, |rest| {
            rest.split_once("?>")
                .map_or(rest, |(_, after)| after.trim_start())
        });
        out.push_str(&body.replacen("<svg ", &format!("<svg x=\"{x}\" y=\"{top}\" "), 1));
        out.push('\n');
        x += size(c, "width");
    }
    out.push_str("</svg>\n");
    out
}

/// `text` with XML's special characters escaped.
fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws a horizontal bar chart as SVG text; its height grows with the categories. Segments
/// stack on a linear axis; where the values span decades (and the axis goes log) each series
/// gets its own thin bar in the category's row instead, since stacks do not add on a log axis.
pub fn bars(chart: &Bars) -> Result<String, PlotError> {
    let n = chart.categories.len();
    if n == 0 {
        return Err(PlotError("no bars to plot".into()));
    }
    let positive = |v: &f64| v.is_finite() && *v > 0.0;
    let totals: Vec<f64> = chart
        .categories
        .iter()
        .map(|(_, segs)| segs.iter().map(|s| s.1).filter(positive).sum())
        .collect();
    let values = chart
        .categories
        .iter()
        .flat_map(|(_, segs)| segs.iter().map(|s| s.1))
        .filter(positive);
    let (lo, _) = extent(values).ok_or_else(|| PlotError("no positive value to plot".into()))?;
    let (_, hi) = extent(totals.iter().copied().filter(positive)).unwrap_or((lo, lo));
    let scale = Scale::fit(lo, hi, true, chart.value.always_log);
    // On a log axis a bar starts at the left edge, below the smallest value.
    let scale = if scale.log {
        Scale {
            lo: (lo.log10() - 0.3).floor(),
            ..scale
        }
    } else {
        scale
    };
    let grouped = scale.log && chart.categories.iter().any(|(_, segs)| segs.len() > 1);
    let per = if grouped {
        chart.series.len().max(1)
    } else {
        1
    };
    let rows = n * per;
    let label_chars = chart
        .categories
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(4)
        .min(34);
    let height = (96 + (24 * n + 10 * (rows - n)) as u32).max(220);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let (plot, side) = root.split_horizontally(900 - LEGEND_WIDTH);
        // `0..=rows - 1` as segments: one per row.
        let mut c = ChartBuilder::on(&plot)
            .caption(&chart.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(16 + 7 * label_chars as u32)
            .build_cartesian_2d(scale.lo..scale.hi, (0..rows - 1).into_segmented())
            .map_err(drawing)?;
        let names: Vec<String> = chart
            .categories
            .iter()
            .map(|(l, _)| {
                if l.chars().count() > 34 {
                    l.chars().take(33).chain(['…']).collect()
                } else {
                    l.clone()
                }
            })
            .collect();
        // Row 0 is drawn at the top; a category's label sits on its first row.
        let flip = |r: usize| rows - 1 - r;
        let unit = chart.value.unit;
        c.configure_mesh()
            .disable_y_mesh()
            .x_labels(scale.ticks())
            .y_labels(rows)
            .x_label_formatter(&|t| scale.label(*t, unit))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(r) if *r < rows && flip(*r) % per == 0 => {
                    names[flip(*r) / per].clone()
                }
                _ => String::new(),
            })
            .x_desc(scale.describe(&chart.value))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(drawing)?;
        for (i, (_, segs)) in chart.categories.iter().enumerate() {
            let mut at = 0.0;
            for &(series, v) in segs {
                if !positive(&v) {
                    continue;
                }
                let (a, b, r) = if grouped {
                    (scale.lo, v.log10(), flip(i * per + series.min(per - 1)))
                } else if scale.log {
                    (scale.lo, v.log10(), flip(i))
                } else {
                    (at, at + v, flip(i))
                };
                at += v;
                let corners = [(a, SegmentValue::Exact(r)), (b, SegmentValue::Exact(r + 1))];
                // A white outline keeps neighbouring bars and segments apart.
                c.draw_series([
                    Rectangle::new(corners.clone(), colour(series).filled()),
                    Rectangle::new(corners, WHITE.stroke_width(2)),
                ])
                .map_err(drawing)?;
            }
        }
        let entries: Vec<(String, usize, Mark)> = chart
            .series
            .iter()
            .enumerate()
            .map(|(k, s)| (s.clone(), k, Mark::Bar))
            .collect();
        legend(&side, &entries)?;
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

/// The sweep's chart: latency against area per workload point, the design points as dots and
/// each point's Pareto front as a line (`cascade sweep --plot`, and the report's sweep figure).
/// `labels[k]` names the workload point of the design points in group `k`.
pub fn pareto(
    labels: &[String],
    points: &[(usize, cascade_sim::sweep::DesignPoint)],
) -> Result<Scatter, PlotError> {
    let mut series = Vec::new();
    for (k, label) in labels.iter().enumerate() {
        let mut group: Vec<&cascade_sim::sweep::DesignPoint> = points
            .iter()
            .filter(|(p, d)| *p == k && d.infeasible.is_none())
            .map(|(_, d)| d)
            .collect();
        if group.is_empty() {
            continue;
        }
        group.sort_by(|a, b| a.area_mm2.total_cmp(&b.area_mm2));
        series.push(Series {
            label: label.clone(),
            points: group.iter().map(|d| (d.area_mm2, d.latency_s)).collect(),
            mark: Mark::Points,
            colour: k,
        });
        series.push(Series {
            label: format!("{label}: Pareto front"),
            points: group
                .iter()
                .filter(|d| d.pareto)
                .map(|d| (d.area_mm2, d.latency_s))
                .collect(),
            mark: Mark::Line,
            colour: k,
        });
    }
    if series.is_empty() {
        return Err(PlotError("no feasible design point to plot".into()));
    }
    Ok(Scatter {
        title: "Latency against area".into(),
        x: Axis::new("chip area (mm²)", None),
        y: Axis::new("attention latency (s)", Some("s")),
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_labels_are_short_and_carry_the_unit() {
        // 1.5e-3 s is 1.5 ms; 2.5e10 B/s is 25 GB/s; 123456 plain is 123k (three digits).
        assert_eq!(si(1.5e-3, Some("s")), "1.5 ms");
        assert_eq!(si(2.5e10, Some("B/s")), "25 GB/s");
        assert_eq!(si(123_456.0, None), "123k");
        assert_eq!(si(42.0, None), "42");
        assert_eq!(si(0.25, None), "0.25");
        assert_eq!(si(1e-6, Some("s")), "1 µs");
        // 999.96 rounds to 1 k rather than "1000".
        assert_eq!(si(999.96, Some("J")), "1 kJ");
    }

    /// The text elements of an SVG: (x, y, font size, content).
    fn texts(svg: &str) -> Vec<(f64, f64, f64, String)> {
        let attr = |tag: &str, name: &str| -> f64 {
            let key = format!(" {name}=\"");
            let start = tag.find(&key).map(|i| i + key.len()).expect("attribute");
            tag[start..].split('"').next().unwrap().parse().unwrap()
        };
        svg.split("<text")
            .skip(1)
            .map(|chunk| {
                let (tag, rest) = chunk.split_once('>').unwrap();
                let content = rest.split("</text>").next().unwrap().trim().to_string();
                (
                    attr(tag, "x"),
                    attr(tag, "y"),
                    attr(tag, "font-size"),
                    content,
                )
            })
            .collect()
    }

    /// Whether labels centred at these x positions overlap, at 0.6 em a character (a generous
    /// width for sans-serif digits).
    fn overlap(labels: &[(f64, f64, f64, String)]) -> bool {
        let mut spans: Vec<(f64, f64)> = labels
            .iter()
            .map(|(x, _, size, text)| {
                let half = text.chars().count() as f64 * size * 0.6 / 2.0;
                (x - half, x + half)
            })
            .collect();
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        spans.windows(2).any(|w| w[0].1 > w[1].0)
    }

    #[test]
    fn scatter_ticks_are_few_whole_decades_that_do_not_overlap_and_the_legend_is_outside() {
        // Latency over six decades (1 µs to 1 s) against energy over 0.2 to 0.9 J.
        let chart = Scatter {
            title: "t".into(),
            x: Axis::new("latency (s)", Some("s")),
            y: Axis::new("energy (J)", Some("J")),
            series: (0..3)
                .map(|k| Series {
                    label: format!("a rather long series name number {k}"),
                    points: (0..7)
                        .map(|i| (10f64.powi(i - 6), 0.2 + 0.1 * f64::from(i)))
                        .collect(),
                    mark: Mark::Points,
                    colour: k as usize,
                })
                .collect(),
        };
        let svg = scatter(&chart).unwrap();
        let all = texts(&svg);
        let x_ticks: Vec<_> = all
            .iter()
            .filter(|t| t.3.ends_with('s') && !t.3.contains('('))
            .cloned()
            .collect();
        let y_ticks: Vec<_> = all
            .iter()
            .filter(|t| t.3.ends_with(" J") || t.3.ends_with("mJ"))
            .cloned()
            .collect();
        assert!((2..=MAX_TICKS).contains(&x_ticks.len()), "{x_ticks:?}");
        assert!((2..=MAX_TICKS).contains(&y_ticks.len()), "{y_ticks:?}");
        assert!(!overlap(&x_ticks), "x ticks overlap: {x_ticks:?}");
        // A log axis is ticked at whole decades: 1, 10 or 100 of a prefix.
        for t in &x_ticks {
            let number = t.3.split(' ').next().unwrap();
            assert!(["1", "10", "100"].contains(&number), "{}", t.3);
        }
        // The axes say what and in which unit; the x axis says it is logarithmic.
        assert!(all.iter().any(|t| t.3 == "latency (s) — log scale"));
        assert!(all.iter().any(|t| t.3 == "energy (J)"));
        // Legend entries sit right of the plot area, whose width is 900 - LEGEND_WIDTH.
        let legend: Vec<_> = all
            .iter()
            .filter(|t| t.3.starts_with("a rather long"))
            .collect();
        assert_eq!(legend.len(), 3);
        assert!(
            legend.iter().all(|t| t.0 >= f64::from(900 - LEGEND_WIDTH)),
            "{legend:?}"
        );
    }

    #[test]
    fn a_narrow_log_axis_is_ticked_at_whole_decades_only() {
        // A roofline's throughput over 5 T to 60 T actions/s: about one decade, forced log.
        let chart = Scatter {
            title: "t".into(),
            x: Axis::new("intensity", None).log(),
            y: Axis::new("throughput (actions/s)", Some("op/s")).log(),
            series: vec![Series {
                label: "p".into(),
                points: vec![(20.0, 5e12), (300.0, 6e13)],
                mark: Mark::Points,
                colour: 0,
            }],
        };
        let svg = scatter(&chart).unwrap();
        let ticks: Vec<String> = texts(&svg)
            .into_iter()
            .map(|t| t.3)
            .filter(|t| t.ends_with("op/s"))
            .collect();
        // 10^12.7 to 10^13.8 widens to 10^12..10^14: 1, 10 and 100 T.
        assert_eq!(ticks.len(), 3, "{ticks:?}");
        for t in &ticks {
            assert!(
                ["1 Top/s", "10 Top/s", "100 Top/s"].contains(&t.as_str()),
                "{t}"
            );
        }
    }

    #[test]
    fn bar_labels_each_get_their_own_row() {
        let chart = Bars {
            title: "t".into(),
            value: Axis::new("energy (J)", Some("J")),
            series: vec!["compute".into(), "registers".into()],
            categories: (0..12)
                .map(|i| (format!("E{i}"), vec![(0, f64::from(i + 1)), (1, 0.5)]))
                .collect(),
        };
        let svg = bars(&chart).unwrap();
        let all = texts(&svg);
        let mut rows: Vec<f64> = all
            .iter()
            .filter(|t| t.3.starts_with('E') && t.3.len() <= 3)
            .map(|t| t.1)
            .collect();
        assert_eq!(rows.len(), 12, "one label per category");
        rows.sort_by(f64::total_cmp);
        let size = all[0].2.min(13.0);
        assert!(
            rows.windows(2).all(|w| w[1] - w[0] >= size),
            "rows apart: {rows:?}"
        );
        // 1 to 12.5 J stacked stay linear, from zero.
        assert!(all.iter().any(|t| t.3 == "energy (J)"));
        assert!(all.iter().any(|t| t.3 == "0 J"));
    }

    #[test]
    fn log_axes_only_where_the_data_span_decades() {
        // 10^1.5 ≈ 31.6: a span of 30× stays linear, 40× goes log.
        assert!(!Scale::fit(1.0, 30.0, false, false).log);
        assert!(Scale::fit(1.0, 40.0, false, false).log);
        assert!(
            !Scale::fit(-1.0, 1e6, false, true).log,
            "negative data stay linear"
        );
        assert!(
            Scale::fit(1.0, 2.0, false, true).log,
            "a roofline's axes are log"
        );
        // Six decades ask for 7 whole-decade ticks at most.
        assert!(Scale::fit(1.0, 1e6, false, false).ticks() <= MAX_TICKS);
    }
}
