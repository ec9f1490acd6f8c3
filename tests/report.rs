//! What a run leaves for people: curves.png and report.md after training (the report's
//! figures are the metrics'), `wgolf plot` over several runs, and progress output that stays
//! plain text when it is not a terminal.
use std::path::Path;
use std::process::Command;
use wgolf::config::Config;
use wgolf::train::{Backend, TrainOptions};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgolf"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn training_writes_curves_and_a_report_that_matches_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new("configs/tiny.toml");
    let overrides = ["train.steps=12", "train.warmdown_steps=4", "train.log_every=4", "train.val_seqs=16"];
    let cfg = Config::load(source, &overrides.map(String::from)).unwrap();
    let mut opts = TrainOptions::new(dir.path(), Backend::Gpu(None));
    opts.config_source = Some(source.into());
    wgolf::train::train(&cfg, opts).unwrap();

    let png = std::fs::read(dir.path().join("curves.png")).expect("curves.png written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "not a drawn PNG: {} bytes", png.len());
    let report = std::fs::read_to_string(dir.path().join("report.md")).expect("report.md written");

    let ev = events(dir.path());
    let find = |name: &str| ev.iter().rev().find(|v| v["event"] == name).unwrap_or_else(|| panic!("no {name} event"));
    let (val, end, start) = (find("val"), find("end"), find("start"));
    let row = |label: &str, value: String| {
        let line = format!("| {label} | {value} |");
        assert!(report.contains(&line), "report.md lacks `{line}`:\n{report}");
    };
    row("val_loss", format!("{:.6}", val["val_loss"].as_f64().unwrap()));
    row("val_bpb", format!("{:.6}", val["val_bpb"].as_f64().unwrap()));
    row("validation tokens", wgolf::report::group(val["val_tokens"].as_u64().unwrap()));
    row("validation bytes", wgolf::report::group(val["val_bytes"].as_u64().unwrap()));
    row("last train_loss", format!("{:.6}", end["train_loss"].as_f64().unwrap()));
    row("steps", end["step"].as_u64().unwrap().to_string());
    row("tokens trained", wgolf::report::group(12 * start["step_tokens"].as_u64().unwrap()));
    row("tokens/s", wgolf::report::group(end["tokens_per_s"].as_f64().unwrap().round() as u64));
    row("ms/step", format!("{:.1}", end["step_ms"].as_f64().unwrap()));
    row("parameters", wgolf::report::group(start["params"].as_u64().unwrap()));
    let artifact = std::fs::metadata(dir.path().join("model.safetensors")).unwrap().len();
    row("artifact (`model.safetensors`, f32)", format!("{} bytes", wgolf::report::group(artifact)));
    // The config's differences from its file, the device, the version, the stages, the plot.
    row("`train.steps`", "300 | 12".into());
    assert!(report.contains(start["adapter"].as_str().unwrap()), "{report}");
    assert!(report.contains(&format!("wgolf {} (commit {})", env!("CARGO_PKG_VERSION"), wgolf::report::COMMIT)));
    for stage in ["| training |", "| validation |", "| plot |", "| total |"] {
        assert!(report.contains(stage), "report.md lacks the stage {stage}");
    }
    assert!(report.contains("![loss and bpb curves](curves.png)"));
}

/// A run directory with a hand-written metrics.jsonl (no training needed to plot).
fn fake_run(root: &Path, name: &str, first_loss: f64, bpb: f64) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut lines = vec![serde_json::json!({"event": "start", "step": 0, "adapter": "test", "step_tokens": 1024})];
    for step in [1u64, 25, 50, 75, 100] {
        let loss = first_loss - (step as f64).ln() * 0.3;
        lines.push(serde_json::json!({"event": "train", "step": step, "train_loss": loss, "lr_scale": 1.0, "step_ms": 500.0, "tokens_per_s": 2048.0, "elapsed_s": step as f64 * 0.5}));
    }
    lines.push(serde_json::json!({"event": "val", "step": 100, "val_loss": first_loss - 1.5, "val_bpb": bpb, "val_tokens": 4096, "val_bytes": 9000, "elapsed_s": 50.0}));
    lines.push(serde_json::json!({"event": "end", "step": 100, "train_loss": first_loss - 1.4, "val_loss": first_loss - 1.5, "val_bpb": bpb, "tokens_per_s": 2048.0, "step_ms": 500.0, "elapsed_s": 50.0}));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("metrics.jsonl"), text).unwrap();
    dir
}

#[test]
fn plot_overlays_two_runs_as_svg_and_png() {
    let root = tempfile::tempdir().unwrap();
    let a = fake_run(root.path(), "run-alpha", 6.9, 3.1);
    let b = fake_run(root.path(), "run-beta", 6.9, 2.9);
    for ext in ["svg", "png"] {
        let out = root.path().join(format!("curves.{ext}"));
        let res = bin().arg("plot").arg(&a).arg(&b).arg("--out").arg(&out).output().unwrap();
        assert!(res.status.success(), "wgolf plot failed: {}", String::from_utf8_lossy(&res.stderr));
        let bytes = std::fs::read(&out).unwrap();
        if ext == "svg" {
            let svg = String::from_utf8(bytes).unwrap();
            assert!(svg.starts_with("<svg") && svg.contains("run-alpha") && svg.contains("run-beta"));
            assert!(svg.contains("val_bpb") && svg.contains("tokens trained") && svg.contains("3.1000"));
        } else {
            assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000);
        }
    }
    // A wrong extension and a missing run are errors with a message, not panics.
    let res = bin().arg("plot").arg(&a).arg("--out").arg(root.path().join("c.jpg")).output().unwrap();
    assert!(!res.status.success() && String::from_utf8_lossy(&res.stderr).contains(".png or .svg"));
    let res = bin().arg("plot").arg(root.path().join("nope")).arg("--out").arg("x.svg").output().unwrap();
    assert!(!res.status.success() && String::from_utf8_lossy(&res.stderr).contains("metrics.jsonl"));
}

#[test]
fn piped_progress_is_plain_lines_without_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let res = bin()
        .args(["train", "--config", "configs/tiny.toml", "--out"])
        .arg(dir.path())
        .args(["--set", "train.steps=8", "--set", "train.log_every=4", "--set", "train.val_seqs=16"])
        // A plain progress line at every chance (the default is every 30 s).
        .env("WGOLF_PROGRESS_SECS", "0")
        .env_remove("WGOLF_PROGRESS")
        .output()
        .unwrap();
    let stderr = String::from_utf8(res.stderr).unwrap();
    assert!(res.status.success(), "{stderr}");
    let bad: Vec<char> = stderr.chars().filter(|&c| c.is_control() && c != '\n').collect();
    assert!(bad.is_empty(), "control characters {bad:?} in piped output:\n{stderr}");
    // Today's log lines are still there, and the plain progress lines with them.
    assert!(stderr.contains("step      4/8 loss"), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("train: ") && l.contains("/8 (") && l.contains("tok/s")), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("validation: ") && l.contains("/16 (")), "{stderr}");
    assert!(stderr.contains("report: "), "{stderr}");
}

#[test]
fn wgolf_alone_prints_an_orientation() {
    let res = bin().output().unwrap();
    assert!(res.status.success());
    let out = String::from_utf8(res.stdout).unwrap();
    assert!(
        out.contains("First steps") && out.contains("configs/quick.toml") && out.contains("scripts/train-sample.sh")
    );
}
