//! Training end to end on lavapipe (or any adapter): the loss falls, the outputs are written,
//! and the CLI reports errors clearly.
use std::path::Path;
use std::process::Command;
use wgolf::config::Config;
use wgolf::train::{Backend, TrainOptions};

fn options(dir: &Path) -> TrainOptions {
    TrainOptions::new(dir, Backend::Gpu(None))
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgolf"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

#[test]
fn short_training_run_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::load(
        Path::new("configs/tiny.toml"),
        &[
            "train.steps=60".into(),
            "train.warmdown_steps=20".into(),
            "train.log_every=10".into(),
            "train.val_seqs=32".into(),
            "eval.val_every=20".into(),
        ],
    )
    .unwrap();
    let summary = wgolf::train::train(&cfg, options(dir.path())).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let losses: Vec<f64> =
        lines.iter().filter(|v| v["event"] == "train").map(|v| v["train_loss"].as_f64().unwrap()).collect();
    // Step 1 is at ln(1024) = 6.93; after 60 steps the tiny model is well below.
    assert!((losses[0] - 1024f64.ln()).abs() < 0.05, "first loss {}", losses[0]);
    assert!(*losses.last().unwrap() < losses[0] - 0.8, "losses did not fall: {losses:?}");
    assert!(summary.val_loss < 6.2, "val_loss {}", summary.val_loss);
    // bpb is the loss in bits times tokens per byte.
    let expect_bpb = summary.val_loss / std::f64::consts::LN_2 * summary.val_tokens as f64 / summary.val_bytes as f64;
    assert!((summary.val_bpb - expect_bpb).abs() < 1e-9);
    assert_eq!(summary.val_tokens, 32 * 128);
    // Periodic validation every 20 steps on the evaluation plan, then the final one.
    let val_steps: Vec<u64> =
        lines.iter().filter(|v| v["event"] == "val").map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(val_steps, [20, 40, 60]);
    let val = lines.iter().find(|v| v["event"] == "val").expect("a val event");
    for field in ["step", "val_loss", "val_bpb", "elapsed_s"] {
        assert!(val.get(field).is_some(), "val event lacks {field}: {val}");
    }
    let train = lines.iter().find(|v| v["event"] == "train").unwrap();
    for field in ["step", "train_loss", "tokens_per_s", "elapsed_s"] {
        assert!(train.get(field).is_some(), "train event lacks {field}: {train}");
    }
    // The saved weights load back into the same plan, under the reference's names.
    let plan = wgolf::model::build_plan(&cfg).unwrap();
    let file = wgolf::checkpoint::read(&dir.path().join("model.safetensors")).unwrap();
    let weights = wgolf::checkpoint::weights_from(&file, &plan).unwrap();
    assert_eq!(weights.len(), plan.params.len());
    assert!(plan.find("blocks.1.attn.c_q.weight").is_some() && plan.find("skip_weights").is_some());
    assert!(dir.path().join("config.toml").exists());
}

#[test]
fn record_tiny_trains_and_its_loss_falls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::load(
        Path::new("configs/record-tiny.toml"),
        &[
            "train.steps=40".into(),
            "train.warmdown_steps=10".into(),
            "train.log_every=10".into(),
            "train.val_seqs=16".into(),
        ],
    )
    .unwrap();
    let summary = wgolf::train::train(&cfg, options(dir.path())).unwrap();
    let losses = step_losses(dir.path());
    assert!((losses[0].1 - 1024f64.ln()).abs() < 0.05, "first loss {}", losses[0].1);
    assert!(losses.last().unwrap().1 < losses[0].1 - 0.7, "losses did not fall: {losses:?}");
    assert!(summary.val_loss < 6.5, "val_loss {}", summary.val_loss);
    // The run kept an EMA: the exported weights are the EMA values, not the raw ones.
    let ck = wgolf::checkpoint::read(&wgolf::checkpoint::checkpoint_path(dir.path())).unwrap();
    let model = wgolf::checkpoint::read(&dir.path().join("model.safetensors")).unwrap();
    let name = "blocks.0.attn.c_q.weight";
    assert_eq!(model.tensors[name].1, ck.tensors[&format!("ema.{name}")].1);
    assert_ne!(model.tensors[name].1, ck.tensors[name].1);

    // The submission stages: the artifact, its roundtrip and sliding scores, as events.
    let artifact = dir.path().join(wgolf::train::ARTIFACT_NAME);
    let size = std::fs::metadata(&artifact).unwrap().len();
    let events = events(dir.path());
    let find = |kind: &str| events.iter().find(|e| e["event"] == kind).unwrap_or_else(|| panic!("no {kind} event"));
    assert_eq!(find("artifact")["bytes"].as_u64(), Some(size));
    // The raw weights were scored too, before the EMA, on the same tokens: a different loss.
    let raw = find("val_raw");
    assert_eq!(raw["val_tokens"].as_u64(), Some(16 * 128));
    let raw_loss = raw["val_loss"].as_f64().unwrap();
    assert!(raw_loss.is_finite() && raw_loss != summary.val_loss, "raw {raw_loss}, EMA {}", summary.val_loss);
    let (roundtrip, sliding) = (find("roundtrip"), find("sliding"));
    assert_eq!(roundtrip["val_tokens"].as_u64(), Some(16 * 128));
    // Stride 64 over the 2,048 validation targets: 2,048 plus the trailing window's 64 again.
    assert_eq!(sliding["val_tokens"].as_u64(), Some(2048 + 64));
    let (rt, sl) = (roundtrip["val_loss"].as_f64().unwrap(), sliding["val_loss"].as_f64().unwrap());
    // Quantization costs little; the sliding pass scores the same targets with more context
    // (and the tail twice), so it is close too.
    assert!(
        (rt - summary.val_loss).abs() < 0.05 && (sl - rt).abs() < 0.1,
        "roundtrip {rt}, sliding {sl}, raw {}",
        summary.val_loss
    );

    // A fresh process scoring the artifact gives the same numbers.
    let out = bin().args(["eval", "--json", "--artifact"]).arg(&artifact).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["final_int6_roundtrip"]["val_loss"].as_f64(), Some(rt), "{line}");
    assert_eq!(line["final_sliding_s64"]["val_loss"].as_f64(), Some(sl), "{line}");
    assert_eq!(line["final_sliding_s64"]["bytes"], sliding["val_bytes"], "{line}");
}

/// Every event of a run's metrics.jsonl.
fn events(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn grad_accumulation_matches_one_big_batch() {
    // 2 micro-batches of 2 sequences must give the gradients of 1 micro-batch of the same 4
    // sequences: each micro-batch's loss is scaled by the step's token count.
    use wgolf::exec::HostData;
    use wgolf::plan::{Phase, Role};
    let val = wgolf::data::ValSet::open(Path::new("data/mini_sp1024"), 1024, 128).unwrap();
    let (x, y) = val.batch(0..4);
    let grads = |batch: usize, accum: usize| {
        let o = [format!("train.batch_seqs={batch}"), format!("train.grad_accum={accum}")];
        let cfg = Config::load(Path::new("configs/tiny.toml"), &o).unwrap();
        let plan = wgolf::model::build_plan(&cfg).unwrap();
        let mut ex = wgolf::train::make_executor(&plan, &Backend::Gpu(None)).unwrap();
        let mut rng = wgolf::init::Rng::new(9);
        for (id, v) in wgolf::init::init_params(&plan, 3) {
            // Perturb so that the zero-initialized projections pass gradients too.
            let v: Vec<f32> = v.iter().map(|w| w + 0.02 * (rng.uniform() as f32 - 0.5)).collect();
            ex.write(id, HostData::F32(&v)).unwrap();
        }
        ex.clear(&plan.with_role(|r| matches!(r, Role::Grad | Role::Loss))).unwrap();
        let n = cfg.micro_tokens();
        for micro in 0..accum {
            let (ids, targets) = (&x[micro * n..(micro + 1) * n], &y[micro * n..(micro + 1) * n]);
            wgolf::host::write_inputs(ex.as_mut(), &plan, &cfg, ids, targets).unwrap();
            ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len()).unwrap();
            ex.run(Phase::Backward, 0..plan.steps(Phase::Backward).len()).unwrap();
        }
        let loss = ex.read(plan.io().loss_total).unwrap()[0];
        let g: Vec<(String, Vec<f32>)> =
            plan.params.iter().map(|s| (plan.tensor(s.param).name.clone(), ex.read(s.grad).unwrap())).collect();
        (loss, g)
    };
    let (loss_a, grads_a) = grads(2, 2);
    let (loss_b, grads_b) = grads(4, 1);
    let tol = wgolf::tolerance::tolerance(wgolf::tolerance::Check::Model);
    assert!(wgolf::tolerance::within(loss_a, loss_b, tol), "loss {loss_a} vs {loss_b}");
    for ((name, a), (_, b)) in grads_a.iter().zip(&grads_b) {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(
            worst <= tol.atol + tol.rtol * scale,
            "{name}: accumulated gradient differs by {worst} (scale {scale})"
        );
    }
}

#[test]
fn cli_train_writes_metrics_and_weights() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "train",
            "--config",
            "configs/tiny.toml",
            "--set",
            "train.steps=3",
            "--set",
            "train.val_seqs=8",
            "--set",
            "train.log_every=1",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("val_bpb"), "{stdout}");
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().filter(|l| l.contains("\"event\":\"train\"")).count(), 3);
    assert!(dir.path().join("model.safetensors").exists());
}

#[test]
fn cli_errors_name_the_problem() {
    let out = bin().args(["train", "--config", "configs/missing.toml"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("configs/missing.toml"), "{err}");

    let out = bin()
        .args(["train", "--config", "configs/tiny.toml", "--set", "data.dir=\"/nonexistent/shards\""])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/shards"), "{err}");

    let out = bin().args(["info", "--adapter", "no-such-adapter-xyz"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-adapter-xyz") && err.contains("[0]"), "{err}");
}

#[test]
fn cli_info_and_check() {
    let out = bin().args(["info", "--config", "configs/tiny.toml"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "chosen:",
        "backend:",
        "f16 in shaders:",
        "subgroups:",
        "cooperative matrices:",
        "max storage binding:",
        "parameters:           123464",
    ] {
        assert!(s.contains(needle), "info output lacks {needle}:\n{s}");
    }
    let out = bin().args(["check", "--config", "configs/tiny.toml", "--set", "train.batch_seqs=1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("agree"));
}

/// Train losses logged per step in a run directory's metrics.
fn step_losses(dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["train_loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn resumed_run_reproduces_the_uninterrupted_one() {
    // record-tiny has every kind of optimizer state: Adam moments, Muon momentum, the EMA.
    // A flat learning rate (no warmdown) makes the schedule independent of train.steps, so a
    // 3-step run resumed to 6 steps must equal a 6-step run exactly.
    let overrides = |steps: usize| {
        vec![
            format!("train.steps={steps}"),
            "train.warmdown_steps=0".into(),
            "train.log_every=1".into(),
            "train.val_seqs=4".into(),
            "eval.submission=false".into(),
        ]
    };
    let straight = tempfile::tempdir().unwrap();
    let cfg = Config::load(Path::new("configs/record-tiny.toml"), &overrides(6)).unwrap();
    wgolf::train::train(&cfg, options(straight.path())).unwrap();

    let parts = tempfile::tempdir().unwrap();
    let cfg = Config::load(Path::new("configs/record-tiny.toml"), &overrides(3)).unwrap();
    wgolf::train::train(&cfg, options(parts.path())).unwrap();
    let ck = wgolf::checkpoint::read(&wgolf::checkpoint::checkpoint_path(parts.path())).unwrap();
    assert_eq!(ck.step().unwrap(), 3);
    let out = bin().arg("train").arg("--resume").arg(parts.path()).args(["--set", "train.steps=6"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let want = step_losses(straight.path());
    let got = step_losses(parts.path());
    assert_eq!(want.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        got.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6],
        "metrics continue in the same file"
    );
    assert_eq!(got, want, "resumed losses must equal the uninterrupted run's bit for bit");
    let a = wgolf::checkpoint::read(&straight.path().join("model.safetensors")).unwrap();
    let b = wgolf::checkpoint::read(&parts.path().join("model.safetensors")).unwrap();
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (name, (_, v)) in &a.tensors {
        assert_eq!(&b.tensors[name].1, v, "{name} differs after resuming");
    }
}

#[test]
fn export_import_and_eval_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::load(
        Path::new("configs/tiny.toml"),
        &["train.steps=5".into(), "train.warmdown_steps=0".into(), "train.val_seqs=8".into()],
    )
    .unwrap();
    wgolf::train::train(&cfg, options(dir.path())).unwrap();
    let exported = dir.path().join("exported.safetensors");
    let out = bin().args(["export", "--checkpoint"]).arg(dir.path()).arg("--out").arg(&exported).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let eval = |path: &Path| {
        let out = bin().args(["eval", "--val-seqs", "8", "--json", "--checkpoint"]).arg(path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let from_ck = eval(&wgolf::checkpoint::checkpoint_path(dir.path()));
    let from_export = eval(&exported);
    assert_eq!(from_ck["seqs"], 8);
    assert_eq!(from_ck["seq_len"], 128);
    assert_eq!(from_ck["val_loss"], from_export["val_loss"]);
    assert!(from_ck["val_bpb"].as_f64().unwrap() > 0.0);

    // The sliding score, printed as the reference logs it, over 512 targets.
    let out = bin()
        .args(["eval", "--stride", "64", "--set", "eval.max_tokens=512", "--checkpoint"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("final_sliding_s64 val_loss:") && text.contains(" val_bpb:"), "{text}");
    // 512 targets, window 128, stride 64: 512 plus the tail's 64 re-scored once.
    assert!(text.contains("576 scored targets over 512"), "{text}");

    // Import the exported weights back into a checkpoint: same evaluation.
    let imported = dir.path().join("imported.safetensors");
    let out = bin()
        .args(["import", "--config", "configs/tiny.toml", "--weights"])
        .arg(&exported)
        .arg("--out")
        .arg(&imported)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(eval(&imported)["val_loss"], from_ck["val_loss"]);

    // A weights file of another shape is refused with the tensor named.
    let out = bin()
        .args(["import", "--config", "configs/sample.toml", "--weights"])
        .arg(&exported)
        .arg("--out")
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tok_emb.weight") && err.contains("expected"), "{err}");
    assert!(!dir.path().join("x").exists(), "nothing half-written");
}

#[test]
fn the_wallclock_cap_stops_training() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::load(
        Path::new("configs/tiny.toml"),
        &[
            "train.steps=100000".into(),
            "train.max_wallclock_s=3.0".into(),
            "train.warmdown=\"wallclock\"".into(),
            "train.val_seqs=4".into(),
        ],
    )
    .unwrap();
    let summary = wgolf::train::train(&cfg, options(dir.path())).unwrap();
    assert!(summary.steps > 0 && summary.steps < 100_000, "stopped after {} steps", summary.steps);
    let ck = wgolf::checkpoint::read(&wgolf::checkpoint::checkpoint_path(dir.path())).unwrap();
    assert_eq!(ck.step().unwrap(), summary.steps);
    assert!(ck.elapsed_s().unwrap() >= 3.0);
}
