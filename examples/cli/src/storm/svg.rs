//! A hand-written SVG chart of attempts per 100 ms: one panel per strategy, stacked on a
//! shared time axis, the relay-down interval shaded and the 99%-back moment marked.
//!
//! The y axis is logarithmic and shared by every panel: a lock-step crowd puts all N clients
//! in one bucket, five hundred times what full jitter sends after the relay returns, and on a
//! linear scale one of the two would be unreadable. The panel titles carry the exact numbers
//! (peak/mean, peaks, 99% back).

use super::report::{grouped, BUCKET};
use super::sim::Micros;
use std::fmt::Write as _;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 96.0;
const RIGHT: f64 = 28.0;
const TOP: f64 = 96.0;
const PANEL: f64 = 120.0;
/// Space above each panel for its title.
const PANEL_GAP: f64 = 30.0;
const BOTTOM: f64 = 64.0;
const FONT: &str = "font-family=\"Helvetica, Arial, sans-serif\"";

/// What the whole chart is about.
#[derive(Debug)]
pub(crate) struct Chart<'a> {
    pub(crate) title: String,
    pub(crate) subtitle: String,
    /// The relay is down in `[0, outage)`.
    pub(crate) outage: Micros,
    pub(crate) series: Vec<Series<'a>>,
}

/// One strategy's panel.
#[derive(Debug)]
pub(crate) struct Series<'a> {
    pub(crate) name: &'a str,
    /// CSS colour of the line, fill and legend swatch.
    pub(crate) colour: &'a str,
    /// Panel title after the name, e.g. "peak/mean 1.64 · 99% back at 45.3 s".
    pub(crate) note: String,
    /// Attempts per bucket.
    pub(crate) attempts: &'a [u64],
    /// When 99% were back, if they were.
    pub(crate) t99: Option<Micros>,
}

/// A step of 1, 2 or 5 × 10^k giving at most about `target` intervals up to `max`.
pub(crate) fn nice_step(max: f64, target: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let raw = max / target.max(1.0);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    step.max(1.0)
}

/// `(step, top)`: tick step and the axis end, a whole number of steps at or above `max`.
fn axis(max: f64, target: f64) -> (f64, f64) {
    let step = nice_step(max, target);
    let top = ((max / step).ceil() * step).max(step);
    (step, top)
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the chart as a standalone SVG document.
pub(crate) fn render(chart: &Chart<'_>) -> String {
    let panels = chart.series.len().max(1) as f64;
    let height = TOP + panels * (PANEL_GAP + PANEL) + BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;

    // Shared time axis: long enough for every strategy's last attempt and 99%-back moment.
    let last_bucket = chart
        .series
        .iter()
        .map(|s| s.attempts.len())
        .max()
        .unwrap_or(0);
    let end_s = chart
        .series
        .iter()
        .filter_map(|s| s.t99)
        .chain([chart.outage, last_bucket as u64 * BUCKET])
        .max()
        .unwrap_or(0) as f64
        / 1e6;
    let (x_step, x_end) = axis(end_s.max(1.0), 12.0);
    let x_of = |s: f64| LEFT + s / x_end * plot_w;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" {FONT} font-size=\"12\">"
    );
    let _ = writeln!(svg, "<title>{}</title>", esc(&chart.title));
    let _ = writeln!(
        svg,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>"
    );
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"28\" font-size=\"18\" font-weight=\"bold\">{}</text>",
        esc(&chart.title)
    );
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"48\" fill=\"#4b5563\">{}</text>",
        esc(&chart.subtitle)
    );
    legend(&mut svg, chart);

    let peak = chart
        .series
        .iter()
        .flat_map(|s| s.attempts.iter().copied())
        .max()
        .unwrap_or(0);
    let decades = decades(peak);
    for (i, series) in chart.series.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_GAP + PANEL) + PANEL_GAP;
        let x = XAxis {
            end: x_end,
            step: x_step,
            of: &x_of,
        };
        panel(&mut svg, series, top, chart.outage, &x, decades);
    }

    // The shared x axis under the last panel.
    let axis_y = TOP + panels * (PANEL_GAP + PANEL);
    let _ = writeln!(svg, "<g class=\"x-axis\" text-anchor=\"middle\">");
    let ticks = (x_end / x_step).round() as u64;
    for k in 0..=ticks {
        let s = k as f64 * x_step;
        let x = x_of(s);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{axis_y:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#374151\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\">{}</text>",
            axis_y + 5.0,
            axis_y + 18.0,
            trim_float(s)
        );
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        "<text class=\"x-title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\">\
         time since the relay went down (s)</text>",
        LEFT + plot_w / 2.0,
        axis_y + 42.0
    );
    let mid_y = TOP + (height - TOP - BOTTOM) / 2.0;
    let _ = writeln!(
        svg,
        "<text class=\"y-title\" x=\"18\" y=\"{mid_y:.1}\" text-anchor=\"middle\" font-size=\"13\" \
         transform=\"rotate(-90 18 {mid_y:.1})\">connection attempts per 100 ms \
         (log scale)</text>"
    );
    svg.push_str("</svg>\n");
    svg
}

fn legend(svg: &mut String, chart: &Chart<'_>) {
    let _ = writeln!(svg, "<g class=\"legend\">");
    let y = 72.0;
    let mut x = LEFT;
    for series in &chart.series {
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"14\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            y - 9.0,
            series.colour,
            x + 19.0,
            esc(series.name)
        );
        x += 30.0 + 7.0 * series.name.chars().count() as f64;
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"14\" height=\"10\" fill=\"#e5e7eb\" \
         stroke=\"#9ca3af\"/><text x=\"{:.1}\" y=\"{y:.1}\">relay down</text>",
        y - 9.0,
        x + 19.0
    );
    x += 100.0;
    let _ = writeln!(
        svg,
        "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#111827\" \
         stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{y:.1}\">99% back</text>",
        y - 4.0,
        x + 16.0,
        y - 4.0,
        x + 21.0
    );
    let _ = writeln!(svg, "</g>");
}

/// Decades on the log axis: enough for `peak` (at least one).
fn decades(peak: u64) -> u32 {
    let mut d = 1;
    while 10u64.saturating_pow(d) < peak {
        d += 1;
    }
    d
}

/// The shared time axis.
struct XAxis<'a> {
    end: f64,
    step: f64,
    of: &'a dyn Fn(f64) -> f64,
}

fn panel(
    svg: &mut String,
    series: &Series<'_>,
    top: f64,
    outage: Micros,
    x: &XAxis<'_>,
    decades: u32,
) {
    let (x_end, x_step, x_of) = (x.end, x.step, x.of);
    let bottom = top + PANEL;
    let right = WIDTH - RIGHT;
    // Log scale from 1 (the baseline, where empty buckets sit too) to 10^decades.
    let y_of = |n: f64| bottom - n.max(1.0).log10() / f64::from(decades) * PANEL;

    let _ = writeln!(
        svg,
        "<g class=\"panel\" data-strategy=\"{}\">",
        esc(series.name)
    );
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"{:.1}\"><tspan font-weight=\"bold\" fill=\"{}\">{}</tspan> \
         <tspan fill=\"#374151\">{}</tspan></text>",
        top - 8.0,
        series.colour,
        esc(series.name),
        esc(&series.note)
    );
    // Relay down.
    let down_end = x_of((outage as f64 / 1e6).min(x_end));
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{PANEL}\" fill=\"#e5e7eb\"/>",
        down_end - LEFT
    );
    // Grid and y ticks, one per decade.
    for k in 0..=decades {
        let n = 10u64.saturating_pow(k);
        let y = y_of(n as f64);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\" stroke=\"#e5e7eb\" \
             stroke-width=\"0.8\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            y + 4.0,
            grouped(n)
        );
    }
    let x_ticks = (x_end / x_step).round() as u64;
    for k in 0..=x_ticks {
        let x = x_of(k as f64 * x_step);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" \
             stroke=\"#f3f4f6\" stroke-width=\"0.8\"/>"
        );
    }
    // The series as a filled step line.
    let mut path = format!("M{LEFT:.1},{bottom:.1}");
    for (b, &n) in series.attempts.iter().enumerate() {
        let x1 = x_of((b + 1) as f64 * BUCKET as f64 / 1e6);
        let _ = write!(path, "V{:.1}H{x1:.1}", y_of(n as f64));
    }
    let _ = write!(path, "V{bottom:.1}Z");
    let _ = writeln!(
        svg,
        "<path d=\"{path}\" fill=\"{c}\" fill-opacity=\"0.25\" stroke=\"{c}\" \
         stroke-width=\"1.2\" stroke-linejoin=\"round\"/>",
        c = series.colour
    );
    if let Some(t) = series.t99 {
        let x = x_of(t as f64 / 1e6);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#111827\" \
             stroke-dasharray=\"4 3\"/>"
        );
    }
    // Axes.
    let _ = writeln!(
        svg,
        "<path d=\"M{LEFT},{top:.1}V{bottom:.1}H{right:.1}\" fill=\"none\" stroke=\"#374151\"/>"
    );
    let _ = writeln!(svg, "</g>");
}

/// `5` for 5.0, `2.5` for 2.5.
fn trim_float(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal XML well-formedness check: tags nest and close, attributes are quoted,
    /// text has no bare `<` or `&`.
    fn check_well_formed(doc: &str) -> Result<Vec<String>, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        let mut rest = doc;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            if let Some(amp) = text.find('&') {
                let entity = &text[amp..];
                if !["&amp;", "&lt;", "&gt;", "&quot;"]
                    .iter()
                    .any(|e| entity.starts_with(e))
                {
                    return Err(format!("bare & in {text:?}"));
                }
            }
            let close = rest[open..].find('>').ok_or("unterminated tag")? + open;
            let tag = &rest[open + 1..close];
            if tag.matches('"').count() % 2 != 0 {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                if top != name {
                    return Err(format!("</{name}> closes <{top}>"));
                }
            } else {
                let name = tag
                    .split(|c: char| c.is_whitespace() || c == '/')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                if name.is_empty() {
                    return Err(format!("empty tag name in <{tag}>"));
                }
                seen.push(name.clone());
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        if !stack.is_empty() {
            return Err(format!("unclosed: {stack:?}"));
        }
        Ok(seen)
    }

    fn sample() -> String {
        let spike: Vec<u64> = (0..330).map(|b| if b == 320 { 4000 } else { 0 }).collect();
        let spread: Vec<u64> = (0..500).map(|b| (b % 7) * 10).collect();
        render(&Chart {
            title: "Reconnect storm: 5,000 clients & a 30 s outage".into(),
            subtitle: "abrupt drop <test>".into(),
            outage: 30_000_000,
            series: vec![
                Series {
                    name: "full",
                    colour: "#2563eb",
                    note: "peak/mean 1.64".into(),
                    attempts: &spread,
                    t99: Some(45_000_000),
                },
                Series {
                    name: "none",
                    colour: "#dc2626",
                    note: "peak/mean 21.00".into(),
                    attempts: &spike,
                    t99: Some(32_001_000),
                },
            ],
        })
    }

    #[test]
    fn the_chart_is_well_formed_svg_with_axes_and_a_legend() {
        let doc = sample();
        assert!(doc.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        let tags = check_well_formed(&doc).unwrap();
        assert_eq!(tags.first().map(String::as_str), Some("svg"));
        assert!(
            tags.iter().filter(|t| *t == "path").count() >= 4,
            "series + axes"
        );
        // Title, axis titles, legend entries, tick labels on both axes.
        assert!(doc.contains("5,000 clients &amp; a 30 s outage"));
        assert!(doc.contains("abrupt drop &lt;test&gt;"));
        assert!(doc.contains("time since the relay went down (s)"));
        assert!(doc.contains("connection attempts per 100 ms"));
        let legend = doc
            .split("<g class=\"legend\">")
            .nth(1)
            .and_then(|s| s.split("</g>").next())
            .unwrap();
        for entry in [">full<", ">none<", ">relay down<", ">99% back<"] {
            assert!(legend.contains(entry), "legend lacks {entry}");
        }
        let x_axis = doc.split("<g class=\"x-axis\"").nth(1).unwrap();
        for tick in [">0<", ">10<", ">50<"] {
            assert!(x_axis.contains(tick), "x axis lacks {tick}");
        }
        // Log-scale y ticks, one per decade up to the spike.
        for tick in [">1<", ">10<", ">100<", ">1,000<", ">10,000<"] {
            assert!(doc.contains(tick), "y axis lacks {tick}");
        }
        assert!(!doc.contains(">100,000<"));
        assert!(doc.contains("(log scale)"));
    }

    #[test]
    fn the_checker_rejects_broken_markup() {
        assert!(check_well_formed("<svg><g></svg>").is_err());
        assert!(check_well_formed("<svg>a & b</svg>").is_err());
        assert!(check_well_formed("<svg x=\"1></svg>").is_err());
        assert!(check_well_formed("<svg><rect/></svg>").is_ok());
    }

    #[test]
    fn ticks_are_1_2_5_steps() {
        assert_eq!(nice_step(60.0, 12.0), 5.0);
        assert_eq!(nice_step(33.0, 12.0), 5.0);
        assert_eq!(nice_step(100_000.0, 4.0), 50_000.0);
        assert_eq!(nice_step(1700.0, 4.0), 500.0);
        assert_eq!(nice_step(3.0, 4.0), 1.0);
        assert_eq!(nice_step(0.0, 4.0), 1.0);
        assert_eq!(axis(1700.0, 4.0), (500.0, 2000.0));
        assert_eq!(axis(0.0, 4.0), (1.0, 1.0));
    }

    #[test]
    fn the_log_axis_reaches_the_peak() {
        assert_eq!(decades(0), 1);
        assert_eq!(decades(10), 1);
        assert_eq!(decades(11), 2);
        assert_eq!(decades(100_000), 5);
        assert_eq!(decades(100_001), 6);
    }
}
