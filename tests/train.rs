//! Training end to end on lavapipe (or any adapter): the loss falls, the outputs are written,
//! and the CLI reports errors clearly.
use std::path::Path;
use std::process::Command;
use wgolf::config::Config;
use wgolf::train::{Backend, TrainOptions};

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
        ],
    )
    .unwrap();
    let summary = wgolf::train::train(
        &cfg,
        &TrainOptions {
            out_dir: dir.path().into(),
            backend: Backend::Gpu(None),
        },
    )
    .unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let losses: Vec<f64> = lines
        .iter()
        .filter(|v| v["event"] == "train")
        .map(|v| v["train_loss"].as_f64().unwrap())
        .collect();
    // Step 1 is at ln(1024) = 6.93; after 60 steps the tiny model is well below.
    assert!(
        (losses[0] - 1024f64.ln()).abs() < 0.05,
        "first loss {}",
        losses[0]
    );
    assert!(
        *losses.last().unwrap() < losses[0] - 0.8,
        "losses did not fall: {losses:?}"
    );
    assert!(summary.val_loss < 6.2, "val_loss {}", summary.val_loss);
    // bpb is the loss in bits times tokens per byte.
    let expect_bpb = summary.val_loss / std::f64::consts::LN_2 * summary.val_tokens as f64
        / summary.val_bytes as f64;
    assert!((summary.val_bpb - expect_bpb).abs() < 1e-9);
    assert_eq!(summary.val_tokens, 32 * 128);
    let val = lines
        .iter()
        .find(|v| v["event"] == "val")
        .expect("a val event");
    for field in ["step", "val_loss", "val_bpb", "elapsed_s"] {
        assert!(val.get(field).is_some(), "val event lacks {field}: {val}");
    }
    let train = lines.iter().find(|v| v["event"] == "train").unwrap();
    for field in ["step", "train_loss", "tokens_per_s", "elapsed_s"] {
        assert!(
            train.get(field).is_some(),
            "train event lacks {field}: {train}"
        );
    }
    // The saved weights load back into the same plan, under the reference's names.
    let plan = wgolf::model::build_plan(&cfg).unwrap();
    let weights = wgolf::weights::load(&dir.path().join("model.safetensors"), &plan).unwrap();
    assert_eq!(weights.len(), plan.params.len());
    assert!(plan.find("blocks.1.attn.c_q.weight").is_some() && plan.find("skip_weights").is_some());
    assert!(dir.path().join("config.toml").exists());
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
        let o = [
            format!("train.batch_seqs={batch}"),
            format!("train.grad_accum={accum}"),
        ];
        let cfg = Config::load(Path::new("configs/tiny.toml"), &o).unwrap();
        let plan = wgolf::model::build_plan(&cfg).unwrap();
        let mut ex = wgolf::train::make_executor(&plan, &Backend::Gpu(None)).unwrap();
        let mut rng = wgolf::init::Rng::new(9);
        for (id, v) in wgolf::init::init_params(&plan, 3) {
            // Perturb so that the zero-initialized projections pass gradients too.
            let v: Vec<f32> = v
                .iter()
                .map(|w| w + 0.02 * (rng.uniform() as f32 - 0.5))
                .collect();
            ex.write(id, HostData::F32(&v));
        }
        ex.clear(&plan.with_role(|r| matches!(r, Role::Grad | Role::Loss)));
        let n = cfg.micro_tokens();
        for micro in 0..accum {
            ex.write(plan.io().ids, HostData::U32(&x[micro * n..(micro + 1) * n]));
            ex.write(
                plan.io().targets,
                HostData::U32(&y[micro * n..(micro + 1) * n]),
            );
            ex.clear(&plan.with_role(|r| matches!(r, Role::ActGrad)));
            ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len());
            ex.run(Phase::Backward, 0..plan.steps(Phase::Backward).len());
        }
        let loss = ex.read(plan.io().loss_total)[0];
        let g: Vec<(String, Vec<f32>)> = plan
            .params
            .iter()
            .map(|s| (plan.tensor(s.param).name.clone(), ex.read(s.grad)))
            .collect();
        (loss, g)
    };
    let (loss_a, grads_a) = grads(2, 2);
    let (loss_b, grads_b) = grads(4, 1);
    let tol = wgolf::tolerance::tolerance(wgolf::tolerance::Check::Model);
    assert!(
        wgolf::tolerance::within(loss_a, loss_b, tol),
        "loss {loss_a} vs {loss_b}"
    );
    for ((name, a), (_, b)) in grads_a.iter().zip(&grads_b) {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("val_bpb"), "{stdout}");
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.contains("\"event\":\"train\""))
            .count(),
        3
    );
    assert!(dir.path().join("model.safetensors").exists());
}

#[test]
fn cli_errors_name_the_problem() {
    let out = bin()
        .args(["train", "--config", "configs/missing.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("configs/missing.toml"), "{err}");

    let out = bin()
        .args([
            "train",
            "--config",
            "configs/tiny.toml",
            "--set",
            "data.dir=\"/nonexistent/shards\"",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/shards"), "{err}");

    let out = bin()
        .args(["info", "--adapter", "no-such-adapter-xyz"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-adapter-xyz") && err.contains("[0]"),
        "{err}"
    );
}

#[test]
fn cli_info_and_check() {
    let out = bin()
        .args(["info", "--config", "configs/tiny.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let out = bin()
        .args([
            "check",
            "--config",
            "configs/tiny.toml",
            "--set",
            "train.batch_seqs=1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("agree"));
}
