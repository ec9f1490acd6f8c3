//! Config loading: the bundled configs parse, overrides apply, and bad input gets an error
//! naming the file and the field.
use std::path::Path;
use wgolf::config::Config;

#[test]
fn bundled_configs_load_and_build_plans() {
    for name in ["tiny", "quick", "sample", "baseline", "record", "record-1gpu", "record-tiny"] {
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

#[test]
fn record_1gpu_is_the_record_step_matched_on_one_gpu() {
    let record = Config::load(Path::new("configs/record.toml"), &[]).unwrap();
    let one = Config::load(Path::new("configs/record-1gpu.toml"), &[]).unwrap();
    // The 8-GPU run: one micro-batch of 48 x 2048 per rank of 8.
    assert_eq!((record.train.batch_seqs, record.train.grad_accum), (48, 8));
    // The same model and optimizers, the same tokens per step.
    assert_eq!(one.model, record.model);
    assert_eq!(one.step_tokens(), record.step_tokens());
    assert_eq!(one.step_tokens(), 786_432);
    let (p1, p8) = (wgolf::model::build_plan(&one).unwrap(), wgolf::model::build_plan(&record).unwrap());
    assert_eq!(p1.param_count(), p8.param_count());
    for (a, b) in [(one.train.matrix_lr, record.train.matrix_lr), (one.train.ema_decay, record.train.ema_decay)] {
        assert_eq!(a, b);
    }
    assert_eq!(one.train.grad_clip_norm, record.train.grad_clip_norm);
    // Step-matched: no wall clock; flat, then linear to zero over the last 3000 of 7100 steps,
    // whatever the time taken (a slow GPU's elapsed time does not decay it).
    assert!(!one.needs_wallclock());
    assert_eq!(one.lr_scale_at(0, 1e6), 1.0);
    assert_eq!(one.lr_scale_at(4099, 1e6), 1.0);
    assert!((one.lr_scale_at(5600, 1e6) - 0.5).abs() < 1e-6);
    assert!((one.lr_scale_at(7099, 1e6) - 1.0 / 3000.0).abs() < 1e-6);
}

/// One case per validation rule: overrides of a bundled config, the field the error must
/// name, and a word of what it must say.
const RULES: &[(&str, &[&str], &str, &str)] = &[
    ("tiny", &["model.vocab_size=0"], "model.vocab_size", "at least 1"),
    ("tiny", &["model.vocab_size=65537"], "model.vocab_size", "at most 65536"),
    ("tiny", &["model.num_layers=0"], "model.num_layers", "at least 1"),
    ("tiny", &["model.model_dim=0"], "model.model_dim", "at least 1"),
    ("tiny", &["model.num_heads=0"], "model.num_heads", "at least 1"),
    ("tiny", &["model.num_kv_heads=0"], "model.num_kv_heads", "at least 1"),
    ("tiny", &["model.mlp_mult=0"], "model.mlp_mult", "at least 1"),
    ("tiny", &["model.num_heads=3"], "model.num_heads", "divisor of model_dim"),
    ("tiny", &["model.num_kv_heads=3"], "model.num_kv_heads", "divisor of num_heads"),
    ("tiny", &["model.model_dim=36"], "model.num_heads", "even"),
    ("tiny", &["model.model_dim=1024", "model.num_heads=4"], "model.num_heads", "at most 128"),
    ("tiny", &["model.rope_base=1.0"], "model.rope_base", "> 1"),
    ("tiny", &["model.rope_base=nan"], "model.rope_base", "is NaN"),
    ("tiny", &["model.rope_base=inf"], "model.rope_base", "is inf"),
    ("tiny", &["model.logit_softcap=0"], "model.logit_softcap", "> 0"),
    ("tiny", &["model.logit_softcap=-inf"], "model.logit_softcap", "is -inf"),
    ("tiny", &["model.qk_gain_init=0"], "model.qk_gain_init", "> 0"),
    ("tiny", &["model.tied_embed_init_std=-0.1"], "model.tied_embed_init_std", "> 0"),
    ("tiny", &["model.bigram_buckets=1"], "model.bigram_buckets", "at least 2"),
    ("record-tiny", &["model.bigram_dim=0"], "model.bigram_dim", "at least 1"),
    ("record-tiny", &["model.bigram_scale_init=nan"], "model.bigram_scale_init", "finite"),
    ("tiny", &["model.xsa_last_n=3"], "model.xsa_last_n", "at most num_layers 2"),
    ("record-tiny", &["model.model_dim=8"], "model.rope_ntk_base_len", "head_dim > 2"),
    ("tiny", &["train.seq_len=0"], "train.seq_len", "at least 1"),
    ("tiny", &["train.batch_seqs=0"], "train.batch_seqs", "at least 1"),
    ("tiny", &["train.grad_accum=0"], "train.grad_accum", "at least 1"),
    ("tiny", &["train.batch_seqs=9223372036854775807"], "train.grad_accum", "overflows"),
    ("tiny", &["train.steps=0"], "train.steps", "at least 1"),
    ("tiny", &["train.log_every=0"], "train.log_every", "at least 1"),
    ("tiny", &["train.max_wallclock_s=-1"], "train.max_wallclock_s", ">= 0"),
    ("tiny", &["train.max_wallclock_s=nan"], "train.max_wallclock_s", "is NaN"),
    ("record", &["train.max_wallclock_s=0"], "train.warmdown", "max_wallclock_s > 0"),
    ("tiny", &["train.embed_lr=0"], "train.embed_lr", "> 0"),
    ("tiny", &["train.matrix_lr=-0.01"], "train.matrix_lr", "> 0"),
    ("tiny", &["train.scalar_lr=nan"], "train.scalar_lr", "is NaN"),
    ("tiny", &["train.beta1=1.0"], "train.beta1", "[0, 1)"),
    ("tiny", &["train.beta2=-0.1"], "train.beta2", "[0, 1)"),
    ("tiny", &["train.beta2=nan"], "train.beta2", "is NaN"),
    ("tiny", &["train.adam_eps=0"], "train.adam_eps", "> 0"),
    ("tiny", &["train.weight_decay=-0.1"], "train.weight_decay", ">= 0"),
    ("record-tiny", &["train.muon_momentum=1.0"], "train.muon_momentum", "[0, 1)"),
    ("record-tiny", &["train.muon_momentum_start=-0.5"], "train.muon_momentum_start", "[0, 1)"),
    ("record-tiny", &["train.muon_ns_steps=0"], "train.muon_ns_steps", "at least 1"),
    ("tiny", &["train.grad_clip_norm=-1"], "train.grad_clip_norm", ">= 0"),
    ("tiny", &["train.grad_clip_norm=inf"], "train.grad_clip_norm", "is inf"),
    ("tiny", &["train.ema_decay=1.0"], "train.ema_decay", "[0, 1)"),
    ("tiny", &["eval.stride=0"], "eval.stride", "at least 1"),
    ("tiny", &["eval.batch_seqs=0"], "eval.batch_seqs", "at least 1"),
    ("tiny", &["eval.ttt_lr=0"], "eval.ttt_lr", "> 0"),
    ("tiny", &["eval.ttt_momentum=1.0"], "eval.ttt_momentum", "[0, 1)"),
    ("tiny", &["eval.ttt_epochs=0"], "eval.ttt_epochs", "at least 1"),
    ("tiny", &["eval.ttt_freeze_blocks=99"], "eval.ttt_freeze_blocks", "at most model.num_layers"),
    (
        "tiny",
        &["eval.ttt=\"train-then-score\"", "model.num_layers=1"],
        "eval.ttt_freeze_blocks",
        "at most model.num_layers",
    ),
    ("tiny", &["eval.ttt_chunk_tokens=1"], "eval.ttt_chunk_tokens", "at least"),
    ("tiny", &["data.dir=\"\""], "data.dir", "a path"),
    ("tiny", &["data.tokenizer=\"\""], "data.tokenizer", "a path"),
];

#[test]
fn every_validation_rule_names_its_field() {
    for &(config, overrides, field, words) in RULES {
        let text = std::fs::read_to_string(format!("configs/{config}.toml")).unwrap();
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let err = match Config::parse(&text, "bad.toml", &overrides) {
            Ok(_) => panic!("{config} with {overrides:?} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.starts_with("bad.toml: ") && err.contains(&format!("field `{field}`")) && err.contains(words),
            "{config} with {overrides:?}: expected an error naming `{field}` and saying {words:?}, got: {err}"
        );
    }
    // The same rules hold for values written in the file rather than set.
    let bad = tiny_text().replace("beta1 = 0.9", "beta1 = nan");
    let err = Config::parse(&bad, "bad.toml", &[]).unwrap_err().to_string();
    assert!(err.contains("train.beta1") && err.contains("NaN"), "{err}");
}

#[test]
fn unknown_names_suggest_the_nearest_known_one() {
    let cases = [
        (tiny_text().replace("seed = 1337", "sead = 1337"), "train.sead", "did you mean `seed`?"),
        (tiny_text().replace("[model]", "[modle]"), "modle", "did you mean `model`?"),
        (tiny_text().replace("beta2 =", "betta2 ="), "train.betta2", "did you mean `beta2`?"),
        (tiny_text().replace("mlp_mult =", "mlp_multiplier ="), "model.mlp_multiplier", "did you mean `mlp_mult`?"),
        (tiny_text().replace("dir =", "zzzzzzzzzzzz ="), "data.zzzzzzzzzzzz", "expected one of `dir`, `tokenizer`"),
    ];
    for (text, field, words) in cases {
        let err = Config::parse(&text, "bad.toml", &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("bad.toml: ") && err.contains(&format!("`{field}`")) && err.contains(words),
            "expected `{field}` and {words:?}: {err}"
        );
    }
    let err = Config::load(Path::new("configs/tiny.toml"), &["train.stepz=7".into()]).unwrap_err().to_string();
    assert!(err.contains("did you mean `steps`?"), "{err}");
    let err = Config::load(Path::new("configs/tiny.toml"), &["trian.steps=7".into()]).unwrap_err().to_string();
    assert!(err.contains("did you mean `train`?"), "{err}");
}

#[test]
fn edit_distance_counts_characters() {
    use wgolf::config::edit_distance;
    assert_eq!(edit_distance("seed", "seed"), 0);
    assert_eq!(edit_distance("sead", "seed"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("▁a", "a"), 1);
}
