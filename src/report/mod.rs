//! What a finished run leaves for people: its curves ([`plot`]) and `report.md`, both read
//! from the run's `metrics.jsonl` (the one record of a run), so a report's figures are the
//! metrics' own.
use anyhow::{Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub mod plot;

/// The commit the binary was built from ("unknown" without git).
pub const COMMIT: &str = env!("WGOLF_COMMIT");

/// One logged training step.
#[derive(Clone, Debug)]
pub struct TrainPoint {
    pub step: u64,
    pub loss: f64,
    pub tokens: u64,
    pub elapsed_s: f64,
}

/// One validation pass.
#[derive(Clone, Debug)]
pub struct ValPoint {
    pub step: u64,
    pub val_loss: f64,
    pub val_bpb: f64,
    pub tokens: u64,
    pub elapsed_s: f64,
    pub val_tokens: u64,
    pub val_bytes: u64,
}

/// A run as its `metrics.jsonl` tells it.
#[derive(Clone, Debug)]
pub struct RunLog {
    /// The run's name (its directory's name).
    pub name: String,
    pub dir: PathBuf,
    /// The last `start` or `resume` event.
    pub start: Option<Value>,
    pub train: Vec<TrainPoint>,
    pub val: Vec<ValPoint>,
    /// The last `end` event.
    pub end: Option<Value>,
}

impl RunLog {
    /// Reads `RUN/metrics.jsonl` (`run` may also be the file itself).
    pub fn read(run: &Path) -> Result<RunLog> {
        if !run.exists() {
            anyhow::bail!("{}: no such run directory (a run holds metrics.jsonl)", run.display());
        }
        let (dir, file) = if run.is_dir() {
            (run.to_path_buf(), run.join("metrics.jsonl"))
        } else {
            (run.parent().unwrap_or(Path::new(".")).to_path_buf(), run.to_path_buf())
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {} (is {} a run directory?)", file.display(), run.display()))?;
        let name = std::fs::canonicalize(&dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let mut log = RunLog { name, dir, start: None, train: vec![], val: vec![], end: None };
        let mut step_tokens = 0u64;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a JSON object", file.display(), i + 1))?;
            let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            let step = v["step"].as_u64().unwrap_or(0);
            match v["event"].as_str().unwrap_or("") {
                "start" | "resume" => {
                    step_tokens = v["step_tokens"].as_u64().unwrap_or(0);
                    log.start = Some(v);
                }
                "train" => log.train.push(TrainPoint {
                    step,
                    loss: num("train_loss"),
                    tokens: step * step_tokens,
                    elapsed_s: num("elapsed_s"),
                }),
                "val" => log.val.push(ValPoint {
                    step,
                    val_loss: num("val_loss"),
                    val_bpb: num("val_bpb"),
                    tokens: step * step_tokens,
                    elapsed_s: num("elapsed_s"),
                    val_tokens: v["val_tokens"].as_u64().unwrap_or(0),
                    val_bytes: v["val_bytes"].as_u64().unwrap_or(0),
                }),
                "end" => log.end = Some(v),
                _ => {}
            }
        }
        Ok(log)
    }
}

/// What the report says beyond the metrics: where the config came from and how long each
/// stage took.
#[derive(Clone, Debug, Default)]
pub struct ReportInput {
    /// The config file the run's config was loaded from (None for a resumed run).
    pub config_source: Option<PathBuf>,
    /// (stage, seconds), in order.
    pub stages: Vec<(String, f64)>,
    /// Why there is no plot, when curves.png could not be drawn.
    pub plot_error: Option<String>,
}

/// What a training run leaves at its end: `RUN/curves.png` (a warning, not an error, when it
/// cannot be drawn, e.g. without a font) and `RUN/report.md`, which say where they are. The
/// run's weights are saved by then, so a failure here only warns.
pub fn finish_run(run_dir: &Path, config_source: Option<PathBuf>, mut stages: Vec<(String, f64)>) {
    let plot_start = std::time::Instant::now();
    let curves = run_dir.join("curves.png");
    let plot_error = match RunLog::read(run_dir).and_then(|log| plot::plot_runs(&[log], &curves)) {
        Ok(()) => None,
        Err(e) => {
            eprintln!("warning: {} not written: {e:#}", curves.display());
            Some(format!("{e:#}"))
        }
    };
    stages.push(("plot".into(), plot_start.elapsed().as_secs_f64()));
    match write_report(run_dir, &ReportInput { config_source, stages, plot_error: plot_error.clone() }) {
        Ok(path) if plot_error.is_none() => eprintln!("report: {} (plot: {})", path.display(), curves.display()),
        Ok(path) => eprintln!("report: {}", path.display()),
        Err(e) => eprintln!("warning: {} not written: {e:#}", run_dir.join("report.md").display()),
    }
}

/// Writes `RUN/report.md` from `RUN/metrics.jsonl`, `RUN/config.toml` and `input`;
/// returns its path.
pub fn write_report(run_dir: &Path, input: &ReportInput) -> Result<PathBuf> {
    let log = RunLog::read(run_dir)?;
    let text = render(&log, input)?;
    let path = run_dir.join("report.md");
    crate::fsutil::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

pub use crate::progress::group;

fn render(log: &RunLog, input: &ReportInput) -> Result<String> {
    let mut s = String::new();
    let start = log.start.clone().unwrap_or(Value::Null);
    let end = log.end.clone().unwrap_or(Value::Null);
    let f = |v: &Value, k: &str| v[k].as_f64();
    let step_tokens = start["step_tokens"].as_u64().unwrap_or(0);
    let steps = end["step"].as_u64().or_else(|| log.train.last().map(|t| t.step)).unwrap_or(0);

    writeln!(s, "# Run report: {}\n", log.name)?;
    writeln!(s, "wgolf {} (commit {}), run directory `{}`.\n", env!("CARGO_PKG_VERSION"), COMMIT, log.dir.display())?;
    if log.end.is_none() {
        writeln!(s, "**The run has no `end` event: it did not finish.**\n")?;
    }

    writeln!(s, "## Result\n")?;
    writeln!(s, "| figure | value |\n|---|---:|")?;
    if let Some(v) = log.val.last() {
        writeln!(s, "| val_loss | {:.6} |", v.val_loss)?;
        writeln!(s, "| val_bpb | {:.6} |", v.val_bpb)?;
        writeln!(s, "| validation tokens | {} |", group(v.val_tokens))?;
        writeln!(s, "| validation bytes | {} |", group(v.val_bytes))?;
    }
    if let Some(loss) = f(&end, "train_loss").or_else(|| log.train.last().map(|t| t.loss)) {
        writeln!(s, "| last train_loss | {loss:.6} |")?;
    }
    writeln!(s, "| steps | {} |", group(steps))?;
    writeln!(s, "| tokens per step | {} |", group(step_tokens))?;
    writeln!(s, "| tokens trained | {} |", group(steps * step_tokens))?;
    if let Some(t) = f(&end, "tokens_per_s") {
        writeln!(s, "| tokens/s | {} |", group(t.round() as u64))?;
    }
    if let Some(ms) = f(&end, "step_ms") {
        writeln!(s, "| ms/step | {ms:.1} |")?;
    }
    if let Some(secs) = f(&end, "elapsed_s") {
        writeln!(s, "| training time | {} |", crate::progress::fmt_duration(secs))?;
    }
    if let Some(p) = start["params"].as_u64() {
        writeln!(s, "| parameters | {} |", group(p))?;
    }
    let artifact = log.dir.join("model.safetensors");
    if let Ok(meta) = std::fs::metadata(&artifact) {
        writeln!(s, "| artifact (`model.safetensors`, f32) | {} bytes |", group(meta.len()))?;
    }

    writeln!(s, "\n## Device\n")?;
    writeln!(s, "- adapter: {}", start["adapter"].as_str().unwrap_or("unknown"))?;
    if let Some(d) = start["device"].as_str() {
        writeln!(s, "- device and driver: {d}")?;
    }

    if !input.stages.is_empty() {
        writeln!(s, "\n## Stages\n")?;
        writeln!(s, "| stage | seconds |\n|---|---:|")?;
        for (name, secs) in &input.stages {
            writeln!(s, "| {name} | {secs:.2} |")?;
        }
        let total: f64 = input.stages.iter().map(|(_, t)| t).sum();
        writeln!(s, "| total | {total:.2} |")?;
    }

    writeln!(s, "\n## Config\n")?;
    let run_cfg = std::fs::read_to_string(log.dir.join("config.toml")).unwrap_or_default();
    match &input.config_source {
        Some(src) => match config_diff(src, &run_cfg) {
            Ok(diff) if diff.is_empty() => writeln!(s, "From `{}`, unchanged.", src.display())?,
            Ok(diff) => {
                writeln!(s, "From `{}`, with these differences:\n", src.display())?;
                writeln!(s, "| field | in the file | in the run |\n|---|---|---|")?;
                for (k, a, b) in diff {
                    writeln!(s, "| `{k}` | {a} | {b} |")?;
                }
            }
            Err(e) => writeln!(s, "From `{}` (not compared: {e:#}).", src.display())?,
        },
        None => writeln!(s, "From the checkpoint (a resumed run).")?,
    }
    writeln!(s, "\n<details><summary>The run's config.toml</summary>\n\n```toml\n{}```\n</details>", run_cfg)?;

    writeln!(s, "\n## Curves\n")?;
    match &input.plot_error {
        None => writeln!(s, "![loss and bpb curves](curves.png)")?,
        Some(e) => writeln!(s, "No plot: {e}")?,
    }
    Ok(s)
}

/// The fields where the run's config (`run_toml`) differs from the file it came from, as
/// (dotted key, the file's value, the run's value); both sides with their defaults filled in.
pub fn config_diff(source: &Path, run_toml: &str) -> Result<Vec<(String, String, String)>> {
    let file_cfg = crate::config::Config::load(source, &[])?;
    let a: toml::Table = toml::from_str(&toml::to_string(&file_cfg)?)?;
    let b: toml::Table = toml::from_str(run_toml).context("the run's config.toml")?;
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    flatten("", &toml::Value::Table(a), &mut fa);
    flatten("", &toml::Value::Table(b), &mut fb);
    let get = |v: &[(String, String)], k: &str| v.iter().find(|(x, _)| x == k).map(|(_, y)| y.clone());
    let mut keys: Vec<String> = fa.iter().chain(&fb).map(|(k, _)| k.clone()).collect();
    keys.sort();
    keys.dedup();
    let none = || "(unset)".to_string();
    Ok(keys
        .into_iter()
        .filter_map(|k| {
            let (x, y) = (get(&fa, &k), get(&fb, &k));
            (x != y).then(|| (k, x.unwrap_or_else(none), y.unwrap_or_else(none)))
        })
        .collect())
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}
