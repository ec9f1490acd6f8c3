//! Config loading: the bundled configs parse, overrides apply, and bad input gets an error
//! naming the file and the field.
use std::path::Path;
use wgolf::config::Config;

#[test]
fn bundled_configs_load_and_build_plans() {
    for name in ["tiny", "quick", "sample", "baseline"] {
        let path = format!("configs/{name}.toml");
        let cfg = Config::load(Path::new(&path), &[]).unwrap_or_else(|e| panic!("{e}"));
        wgolf::model::build_plan(&cfg).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

#[test]
fn baseline_has_the_reference_parameter_count() {
    // The challenge baseline logs model_params:17059912.
    let cfg = Config::load(Path::new("configs/baseline.toml"), &[]).unwrap();
    let plan = wgolf::model::build_plan(&cfg).unwrap();
    assert_eq!(plan.param_count(), 17_059_912);
    assert_eq!(cfg.step_tokens(), 524_288);
}

#[test]
fn record_matches_the_reference_state_dict() {
    // tests/fixtures/record_state_dict.txt lists the reference model's state dict (names
    // and shapes, 0-dim tensors as "scalar"), dumped from PR #317's own GPT class.
    let cfg = Config::load(Path::new("configs/record.toml"), &[]).unwrap();
    let plan = wgolf::model::build_plan(&cfg).unwrap();
    assert_eq!(plan.param_count(), 26_829_913);
    let mut want: Vec<(String, Vec<usize>)> = std::fs::read_to_string("tests/fixtures/record_state_dict.txt")
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (name, shape) = l.split_once(' ').unwrap();
            let dims = if shape == "scalar" { vec![] } else { shape.split('x').map(|d| d.parse().unwrap()).collect() };
            (name.to_string(), dims)
        })
        .collect();
    let mut got: Vec<(String, Vec<usize>)> =
        plan.params.iter().map(|s| (plan.tensor(s.param).name.clone(), plan.tensor(s.param).shape.clone())).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    // The reference's RoPE base at T = 2048 (its NTK quirk): 10000 * 2^(64/62).
    assert!((cfg.effective_rope_base() - 20_452.23).abs() < 0.01, "{}", cfg.effective_rope_base());
    assert_eq!(cfg.step_tokens(), 786_432);
}

#[test]
fn overrides_apply_and_are_checked() {
    let cfg = Config::load(
        Path::new("configs/tiny.toml"),
        &["train.steps=7".into(), "train.warmdown_steps=2".into(), "model.rope_base=500.0".into()],
    )
    .unwrap();
    assert_eq!(cfg.train.steps, 7);
    assert_eq!(cfg.model.rope_base, 500.0);
    let err = Config::load(Path::new("configs/tiny.toml"), &["train.stepz=7".into()]).unwrap_err().to_string();
    assert!(err.contains("stepz") && err.contains("[train]"), "{err}");
    let err = Config::load(Path::new("configs/tiny.toml"), &["nosection=1".into()]).unwrap_err().to_string();
    assert!(err.contains("section.key"), "{err}");
}

fn tiny_text() -> String {
    std::fs::read_to_string("configs/tiny.toml").unwrap()
}

#[test]
fn bad_values_name_the_file_and_field() {
    let bad = tiny_text().replace("num_kv_heads = 2", "num_kv_heads = 3");
    let err = Config::parse(&bad, "bad.toml", &[]).unwrap_err().to_string();
    assert!(err.contains("bad.toml") && err.contains("model.num_kv_heads"), "{err}");

    let bad = tiny_text().replace("num_heads = 4 ", "num_heads = 5 ");
    let err = Config::parse(&bad, "bad.toml", &[]).unwrap_err().to_string();
    assert!(err.contains("model.num_heads"), "{err}");

    let bad = tiny_text().replace("beta2 = 0.95", "beta2 = 1.5");
    let err = Config::parse(&bad, "bad.toml", &[]).unwrap_err().to_string();
    assert!(err.contains("train.beta2"), "{err}");

    let bad = tiny_text().replace("batch_seqs = 8 ", "batch_seqs = 0 ");
    let err = Config::parse(&bad, "bad.toml", &[]).unwrap_err().to_string();
    assert!(err.contains("train.batch_seqs"), "{err}");
}

#[test]
fn unknown_and_missing_fields_are_errors() {
    let bad = tiny_text().replace("seed = 1337", "seed = 1337\nsead = 1");
    let err = Config::parse(&bad, "bad.toml", &[]).unwrap_err().to_string();
    assert!(err.contains("bad.toml") && err.contains("sead"), "{err}");
    let bad = tiny_text().replace("seed = 1337", "");
    let err = Config::parse(&bad, "bad.toml", &[]).unwrap_err().to_string();
    assert!(err.contains("seed"), "{err}");
    let err = Config::load(Path::new("configs/nope.toml"), &[]).unwrap_err().to_string();
    assert!(err.contains("configs/nope.toml"), "{err}");
}

#[test]
fn warmdown_is_flat_then_linear_to_zero() {
    let cfg = Config::load(Path::new("configs/tiny.toml"), &["train.steps=10".into(), "train.warmdown_steps=4".into()])
        .unwrap();
    let s: Vec<f32> = (0..10).map(|i| cfg.lr_scale(i)).collect();
    assert_eq!(&s[..6], &[1.0; 6]);
    assert_eq!(&s[6..], &[1.0, 0.75, 0.5, 0.25]);
    // A warmdown longer than the run starts below 1, as the reference's does.
    let cfg = Config::load(Path::new("configs/tiny.toml"), &["train.steps=50".into()]).unwrap();
    assert_eq!(cfg.lr_scale(0), 0.5);
}

#[test]
fn wallclock_warmdown_and_momentum_warmup_follow_the_reference() {
    let cfg = Config::load(Path::new("configs/record.toml"), &[]).unwrap();
    // At 100 ms/step the last 3000 steps' worth of time is 300 s: flat until 300 s have
    // elapsed, then linear to zero at the 600 s cap.
    assert_eq!(cfg.lr_scale_at(1000, 100.0), 1.0);
    assert_eq!(cfg.lr_scale_at(2999, 299.9), 1.0);
    assert!((cfg.lr_scale_at(4500, 450.0) - 0.5).abs() < 1e-6);
    assert_eq!(cfg.lr_scale_at(6000, 600.0), 0.0);
    assert_eq!(cfg.lr_scale_at(0, 0.0), 1.0);
    // Momentum 0.92 -> 0.99 over 1500 steps, then flat.
    assert!((cfg.muon_momentum(0) - 0.92).abs() < 1e-6);
    assert!((cfg.muon_momentum(750) - 0.955).abs() < 1e-6);
    assert!((cfg.muon_momentum(1500) - 0.99).abs() < 1e-6);
    assert!((cfg.muon_momentum(5000) - 0.99).abs() < 1e-6);
    // A wall-clock warmdown needs a cap.
    let err =
        Config::load(Path::new("configs/record.toml"), &["train.max_wallclock_s=0".into()]).unwrap_err().to_string();
    assert!(err.contains("train.warmdown"), "{err}");
}
