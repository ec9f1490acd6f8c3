//! The curves of one or more runs (plotters): train loss and val loss (top row) and val_bpb
//! (bottom row) against step, tokens and wall time, runs overlaid in colors with a legend
//! of their names. PNG or SVG by the output's extension.
//!
//! Text is drawn with a TrueType font read at run time (plotters' pure-Rust `ab_glyph`
//! path, so no fontconfig or freetype is needed): `WGOLF_FONT` if set, else the first of
//! the usual system locations (DejaVu Sans, Liberation Sans, Noto Sans, Arial). Without one
//! the plot fails with a message saying what to install.
use super::RunLog;
use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Font files tried in order when `WGOLF_FONT` is not set.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", // Debian, Ubuntu (fonts-dejavu-core)
    "/usr/share/fonts/TTF/DejaVuSans.ttf",             // Arch
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",          // Fedora, Alpine
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf", // macOS
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers the font once per process (plotters keeps it for the process's life).
fn ensure_font() -> Result<()> {
    static FONT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let found = FONT.get_or_init(|| {
        let path = match std::env::var_os("WGOLF_FONT") {
            Some(p) => PathBuf::from(p),
            None => FONT_CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file()).ok_or_else(|| {
                "no TrueType font found for the plot's text: install one (Debian/Ubuntu: `sudo apt-get \
                 install fonts-dejavu-core`) or set WGOLF_FONT to a .ttf file"
                    .to_string()
            })?,
        };
        let bytes = std::fs::read(&path).map_err(|e| format!("reading the font {}: {e}", path.display()))?;
        // plotters needs the font's bytes for the whole process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a TrueType/OpenType font", path.display()))?;
        Ok(path)
    });
    found.as_ref().map(|_| ()).map_err(|e| anyhow!("{e}"))
}

/// Draws `runs` into `out` (.png or .svg).
pub fn plot_runs(runs: &[RunLog], out: &Path) -> Result<()> {
    if runs.is_empty() {
        bail!("nothing to plot: no runs given");
    }
    if runs.iter().all(|r| r.train.is_empty() && r.val.is_empty()) {
        bail!("nothing to plot: the runs' metrics.jsonl have no train or val events");
    }
    ensure_font()?;
    let size = (1500, 860);
    let ext = out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => {
            let root = BitMapBackend::new(out, size).into_drawing_area();
            draw(&root, runs)?;
            root.present().map_err(|e| anyhow!("{e}")).with_context(|| format!("writing {}", out.display()))?;
        }
        Some("svg") => {
            let root = SVGBackend::new(out, size).into_drawing_area();
            draw(&root, runs)?;
            root.present().map_err(|e| anyhow!("{e}")).with_context(|| format!("writing {}", out.display()))?;
        }
        _ => bail!("{}: the plot's file name must end in .png or .svg", out.display()),
    }
    Ok(())
}

/// The x axes: what a point's x is, and the axis label.
#[derive(Clone, Copy)]
enum Axis {
    Step,
    Tokens,
    Time,
}

/// The run colors (colorblind-safe, Okabe-Ito order).
const COLORS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e:?}")
}

/// One panel's captions and the styling every panel shares.
struct Panel<'a> {
    caption: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    /// Decimals of the y labels.
    y_digits: usize,
}

impl Panel<'_> {
    /// The panel's chart over `0..x_max` x `y`, with its mesh and labels drawn.
    fn chart<'b, DB: DrawingBackend>(
        &self,
        area: &'b DrawingArea<DB, Shift>,
        x_max: f64,
        (y0, y1): (f64, f64),
    ) -> Result<ChartContext<'b, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
        let mut chart = ChartBuilder::on(area)
            .caption(self.caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..x_max, y0..y1)
            .map_err(err)?;
        let digits = self.y_digits;
        chart
            .configure_mesh()
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|x| axis_label(*x))
            .y_label_formatter(&|y| format!("{y:.digits$}"))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        Ok(chart)
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, runs: &[RunLog]) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    let title = format!("wgolf: {}", names.join(", "));
    let root = root.titled(&title, ("sans-serif", 26)).map_err(err)?;
    let panels = root.split_evenly((2, 3));
    let minutes = runs.iter().flat_map(|r| r.train.iter().map(|t| t.elapsed_s)).fold(0.0, f64::max) > 300.0;
    for (col, axis) in [Axis::Step, Axis::Tokens, Axis::Time].into_iter().enumerate() {
        let x_of_train = |t: &super::TrainPoint| match axis {
            Axis::Step => t.step as f64,
            Axis::Tokens => t.tokens as f64,
            Axis::Time => t.elapsed_s / if minutes { 60.0 } else { 1.0 },
        };
        let x_of_val = |v: &super::ValPoint| match axis {
            Axis::Step => v.step as f64,
            Axis::Tokens => v.tokens as f64,
            Axis::Time => v.elapsed_s / if minutes { 60.0 } else { 1.0 },
        };
        let x_desc = match axis {
            Axis::Step => "step".to_string(),
            Axis::Tokens => "tokens trained".to_string(),
            Axis::Time => format!("training time ({})", if minutes { "min" } else { "s" }),
        };
        let xs: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.train.iter().map(x_of_train).chain(r.val.iter().map(x_of_val)))
            .filter(|x| x.is_finite())
            .collect();
        let x_max = xs.iter().copied().fold(0.0, f64::max).max(1.0) * 1.03;

        // Top: train loss (lines) and val loss (dots).
        let losses: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.train.iter().map(|t| t.loss).chain(r.val.iter().map(|v| v.val_loss)))
            .filter(|y| y.is_finite())
            .collect();
        let (y0, y1) = padded_range(&losses);
        let panel = Panel { caption: "loss (nats): train line, val dot", x_desc: &x_desc, y_desc: "loss", y_digits: 2 };
        let mut chart = panel.chart(&panels[col], x_max, (y0, y1))?;
        for (i, run) in runs.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let line: Vec<(f64, f64)> =
                run.train.iter().map(|t| (x_of_train(t), t.loss)).filter(|p| p.1.is_finite()).collect();
            let series = chart.draw_series(LineSeries::new(line, color.stroke_width(2))).map_err(err)?;
            if col == 0 {
                series
                    .label(run.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3)));
            }
            chart
                .draw_series(run.val.iter().map(|v| Circle::new((x_of_val(v), v.val_loss), 6, color.filled())))
                .map_err(err)?;
        }
        if col == 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(err)?;
        }

        // Bottom: val_bpb (dots, joined when a run has several), each labelled.
        let bpbs: Vec<f64> =
            runs.iter().flat_map(|r| r.val.iter().map(|v| v.val_bpb)).filter(|y| y.is_finite()).collect();
        let (b0, b1) = padded_range(&bpbs);
        let panel = Panel { caption: "val_bpb (bits per byte)", x_desc: &x_desc, y_desc: "bpb", y_digits: 3 };
        let mut chart = panel.chart(&panels[3 + col], x_max, (b0, b1))?;
        for (i, run) in runs.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<(f64, f64)> =
                run.val.iter().map(|v| (x_of_val(v), v.val_bpb)).filter(|p| p.1.is_finite()).collect();
            if pts.len() > 1 {
                chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2))).map_err(err)?;
            }
            chart
                .draw_series(pts.iter().map(|&p| {
                    EmptyElement::at(p)
                        + Circle::new((0, 0), 6, color.filled())
                        + Text::new(format!("{:.4}", p.1), (-58, -22), ("sans-serif", 15).into_font().color(&color))
                }))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// An axis range around `values` with some room; a single value gets +-5%.
fn padded_range(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi - lo > 1e-9 { 0.08 * (hi - lo) } else { 0.05 * hi.abs().max(0.1) };
    (lo - pad, hi + pad)
}

/// Tick labels: 1.5M, 250k, 40.
fn axis_label(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}
