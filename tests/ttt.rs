//! Test-time training: the SGD reference against hand-computed torch.optim.SGD steps, the TTT
//! plan (frozen blocks without gradients, gradients equal to the training plan's, frozen
//! weights unchanged, GPU vs CPU step by step on record-tiny), and the legality of
//! score-first (a chunk's tokens reach neither an earlier score nor the weights scoring it).

mod common;

use std::ops::Range;
use std::path::{Path, PathBuf};

use wgolf::config::Config;
use wgolf::data::{BpbAccumulator, ByteLuts, Tokenizer, ValSet};
use wgolf::eval::ttt::{score_first, sequence_scorer, Ttt, Weights};
use wgolf::exec::compare::compare_steps;
use wgolf::exec::cpu::CpuExecutor;
use wgolf::exec::{Executor, HostData};
use wgolf::host::{write_inputs, Device};
use wgolf::init::{init_params, Rng};
use wgolf::model::{build_plan, build_ttt_plan};
use wgolf::ops::sgd::{sgd, SgdHyper};
use wgolf::plan::{Access, Phase, Plan, Role};
use wgolf::tolerance::{tolerance, Check};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// record-tiny with 2 sequences per TTT step and the first block frozen.
fn config(extra: &[&str]) -> Config {
    let mut o: Vec<String> =
        ["train.batch_seqs=2", "train.grad_accum=1", "eval.ttt_batch_seqs=2", "eval.ttt_freeze_blocks=1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    o.extend(extra.iter().map(|s| s.to_string()));
    Config::load(&root().join("configs/record-tiny.toml"), &o).expect("record-tiny loads")
}

/// Seeded weights, perturbed so that no gradient is trivially zero, by name.
fn weights(cfg: &Config) -> Weights {
    let plan = build_plan(cfg).unwrap();
    init_params(&plan, cfg.train.seed)
        .into_iter()
        .enumerate()
        .map(|(i, (t, mut v))| {
            let mut rng = Rng::new(0x77 + i as u64);
            v.iter_mut().for_each(|x| *x += (0.05 * rng.normal()) as f32);
            (plan.tensor(t).name.clone(), v)
        })
        .collect()
}

/// One batch of skewed synthetic tokens: inputs and targets.
fn batch(cfg: &Config, seqs: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let n = seqs * cfg.train.seq_len;
    let mut rng = Rng::new(seed);
    let v = cfg.model.vocab_size;
    let toks: Vec<u32> = (0..=n).map(|_| ((rng.uniform().powi(3) * v as f64) as usize).min(v - 1) as u32).collect();
    (toks[..n].to_vec(), toks[1..].to_vec())
}

#[test]
fn sgd_matches_hand_computed_torch_steps() {
    // torch.optim.SGD([p], lr=0.125, momentum=0.5): buf = g on the first step, then
    // buf = 0.5 buf + g; p -= 0.125 buf. Values chosen exact in binary.
    let h = SgdHyper::new(0.125, 0.5);
    let (mut p, mut buf) = (vec![1.0f64, -2.0], vec![0.0f64; 2]);
    let grads = [[0.5, 1.0], [-1.0, 0.5], [0.25, -0.5]];
    let want_p = [[0.9375, -2.125], [1.03125, -2.25], [1.046875, -2.25]];
    let want_buf = [[0.5, 1.0], [-0.75, 1.0], [-0.125, 0.0]];
    for s in 0..3 {
        sgd(&mut p, &mut buf, &grads[s], &h);
        assert_eq!(p, want_p[s], "p after step {}", s + 1);
        assert_eq!(buf, want_buf[s], "buf after step {}", s + 1);
    }
}

#[test]
fn frozen_blocks_have_no_gradient_and_no_steps() {
    let cfg = config(&[]);
    let plan = build_ttt_plan(&cfg).unwrap();
    let frozen: Vec<usize> =
        plan.weights().into_iter().filter(|&t| plan.tensor(t).name.starts_with("blocks.0.")).collect();
    assert!(!frozen.is_empty());
    for &t in &frozen {
        let name = &plan.tensor(t).name;
        assert!(plan.find(&format!("d.{name}")).is_none(), "{name} has a gradient tensor");
        assert!(plan.find(&format!("sgd_buf.{name}")).is_none(), "{name} has a momentum buffer");
        assert!(plan.params.iter().all(|s| s.param != t), "{name} is a trainable slot");
    }
    // Every other parameter is trainable, with a gradient and a buffer.
    assert_eq!(plan.params.len() + frozen.len(), plan.weights().len());
    for s in &plan.params {
        let name = &plan.tensor(s.param).name;
        assert_eq!(plan.tensor(s.grad).name, format!("d.{name}"));
        assert_eq!(plan.tensor(s.m).name, format!("sgd_buf.{name}"));
    }
    // No step writes a frozen parameter; only SGD (and the clip) in the optimizer; no Adam,
    // Muon or EMA state.
    for (_, step) in plan.all_steps() {
        for (spec, t) in step.op.bindings().iter().zip(&step.args) {
            if spec.access == Access::ReadWrite {
                assert!(!frozen.contains(t), "{} writes {}", step.op.kernel().label(), plan.tensor(*t).name);
            }
        }
    }
    for s in plan.steps(Phase::Optimizer) {
        assert!(["Sgd", "GradSumSq", "ClipCoef"].contains(&s.op.kind()), "{}", s.op.kind());
    }
    for t in &plan.tensors {
        assert!(
            !t.name.starts_with("adam_") && !t.name.starts_with("ema.") && !t.name.starts_with("muon"),
            "{}",
            t.name
        );
    }
    // The training plan of the same model has gradients for every block.
    let train = build_plan(&cfg).unwrap();
    assert!(frozen.iter().all(|&t| train.find(&format!("d.{}", plan.tensor(t).name)).is_some()));
}

/// Loads weights by name, inputs, zero gradients, state and loss.
fn load(ex: &mut dyn Executor, plan: &Plan, cfg: &Config, w: &Weights, x: &[u32], y: &[u32]) {
    wgolf::eval::ttt::write_weights(plan, ex, w).unwrap();
    write_inputs(ex, plan, cfg, x, y).unwrap();
    ex.clear(&plan.with_role(|r| matches!(r, Role::Grad | Role::Loss | Role::OptState))).unwrap();
}

#[test]
fn trainable_gradients_equal_the_training_plans() {
    let cfg = config(&[]);
    let w = weights(&cfg);
    let (x, y) = batch(&cfg, 2, 5);
    let (ttt, train) = (build_ttt_plan(&cfg).unwrap(), build_plan(&cfg).unwrap());
    let mut grads = Vec::new();
    for plan in [&ttt, &train] {
        let mut ex = CpuExecutor::new(plan);
        load(&mut ex, plan, &cfg, &w, &x, &y);
        ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len()).unwrap();
        ex.run(Phase::Backward, 0..plan.steps(Phase::Backward).len()).unwrap();
        let g: Vec<(String, Vec<f32>)> =
            plan.params.iter().map(|s| (plan.tensor(s.grad).name.clone(), ex.read(s.grad).unwrap())).collect();
        grads.push(g);
    }
    let frozen = ttt.weights().len() - ttt.params.len();
    assert!(frozen > 0);
    assert_eq!(grads[0].len() + frozen, grads[1].len());
    for (name, g) in &grads[0] {
        let want = &grads[1].iter().find(|(n, _)| n == name).unwrap().1;
        assert!(g.iter().any(|&v| v != 0.0), "{name} is all zeros");
        assert_eq!(g, want, "{name}");
    }
}

#[test]
fn frozen_weights_stay_and_the_loss_falls() {
    let cfg = config(&[]);
    let w = weights(&cfg);
    let plan = build_ttt_plan(&cfg).unwrap();
    let ex = Box::new(CpuExecutor::new(&plan));
    let mut ttt = Ttt::with_executor(cfg.clone(), plan, ex, &w).unwrap();
    let (x, y) = batch(&cfg, 2, 9);
    let mut losses = Vec::new();
    for _ in 0..4 {
        ttt.step(&x, &y, 0.05).unwrap();
        losses.push(ttt.loss().unwrap());
    }
    assert!(losses[3] < losses[0], "loss did not fall: {losses:?}");
    let after = ttt.weights().unwrap();
    for ((name, a), (_, b)) in after.iter().zip(&w) {
        if name.starts_with("blocks.0.") {
            assert_eq!(a, b, "frozen {name} changed");
        } else {
            assert_ne!(a, b, "trainable {name} did not change");
        }
    }
}

#[test]
fn record_tiny_ttt_step_gpu_matches_cpu() {
    let cfg = config(&[]);
    let w = weights(&cfg);
    let plan = build_ttt_plan(&cfg).unwrap();
    let (x, y) = batch(&cfg, 2, 11);
    let mut cpu = CpuExecutor::new(&plan);
    let mut gpu = common::gpu_executor(&plan);
    let hyper = SgdHyper::new(0.002, 0.9);
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        load(ex, &plan, &cfg, &w, &x, &y);
        for &(_, id) in &plan.hypers {
            ex.write(id, HostData::F32(bytemuck::cast_slice(&[hyper]))).unwrap();
        }
    }
    let phases = [Phase::Forward, Phase::Backward, Phase::Optimizer];
    if let Some(d) = compare_steps(&plan, &phases, &mut gpu, &mut cpu, tolerance(Check::Model)).unwrap() {
        panic!("TTT step, GPU against the CPU reference: {d}");
    }
}

/// What a recording scorer saw: the weights and range of each call, and its score.
type Calls = Vec<(Weights, Range<usize>, BpbAccumulator)>;

fn run_score_first(cfg: &Config, tokens: Vec<u16>) -> (Calls, BpbAccumulator) {
    let val = ValSet::from_tokens(Path::new("synthetic"), tokens, cfg.train.seq_len).unwrap();
    let tok = Tokenizer::load(&root().join(&cfg.data.tokenizer)).unwrap();
    let luts = ByteLuts::from_tokenizer(&tok, cfg.model.vocab_size);
    let mut inner = sequence_scorer(cfg, &Device::Cpu, &val, &luts).unwrap();
    let mut calls = Calls::new();
    let mut scorer = |w: &Weights, r: Range<usize>| {
        let acc = inner(w, r.clone())?;
        calls.push((w.clone(), r, acc));
        Ok(acc)
    };
    let total = score_first(cfg, &Device::Cpu, &val, &weights(cfg), &mut scorer).unwrap();
    (calls, total)
}

#[test]
fn score_first_is_legal() {
    // 4 chunks of 64 positions, 2 sequences of 32 each; one epoch, a large lr so that a
    // chunk's training visibly moves the weights.
    let cfg = config(&[
        "train.seq_len=32",
        "eval.stride=16",
        "eval.ttt_chunk_tokens=64",
        "eval.ttt_epochs=1",
        "eval.ttt_lr=0.05",
        "eval.ttt_freeze_blocks=0",
    ]);
    let mut rng = Rng::new(3);
    let tokens: Vec<u16> = (0..257).map(|_| (rng.next_u64() % 1000) as u16 + 1).collect();
    let (a, total) = run_score_first(&cfg, tokens.clone());
    // Change every target of chunk 2 (positions 128..192 predict tokens 129..=192).
    let k = 2;
    let mut changed = tokens;
    changed[129..=192].iter_mut().for_each(|t| *t = (*t + 7) % 1000 + 1);
    let (b, _) = run_score_first(&cfg, changed);

    assert_eq!(a.len(), 4);
    let ranges: Vec<Range<usize>> = a.iter().map(|c| c.1.clone()).collect();
    assert_eq!(ranges, vec![0..64, 64..128, 128..192, 192..256]);
    let sum = a.iter().fold(BpbAccumulator::new(), |mut s, c| {
        s.merge(&c.2);
        s
    });
    assert_eq!(sum, total);
    assert_eq!(total.tokens, 256);
    for j in 0..k {
        assert_eq!(a[j].2, b[j].2, "chunk {j}'s score depends on chunk {k}'s tokens");
    }
    for j in 0..=k {
        assert!(a[j].0 == b[j].0, "the weights scoring chunk {j} depend on chunk {k}'s tokens");
    }
    // The test can fail: chunk k's own score and the weights after training on it do change.
    assert_ne!(a[k].2, b[k].2);
    assert!(a[k + 1].0 != b[k + 1].0, "training on chunk {k} did not move the weights");
    // And the model did adapt between chunks.
    assert!(a[0].0 != a[1].0);
}

#[test]
fn cli_eval_runs_both_kinds_and_labels_train_then_score() {
    let dir = std::env::temp_dir().join(format!("wgolf-ttt-cli-{}", std::process::id()));
    let bin = env!("CARGO_BIN_EXE_wgolf");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .current_dir(root())
            .env("WGOLF_PROGRESS", "off")
            .output()
            .expect("wgolf runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "wgolf {args:?} failed:\n{text}");
        text
    };
    let run_dir = dir.join("run");
    let run_dir = run_dir.to_str().unwrap();
    run(&[
        "train",
        "--config",
        "configs/tiny.toml",
        "--set",
        "train.steps=2",
        "--set",
        "train.val_seqs=2",
        "--out",
        run_dir,
    ]);
    let small = ["--set", "eval.max_tokens=1024", "--set", "eval.ttt_batch_seqs=4", "--set", "eval.ttt_epochs=1"];
    let mut args = vec!["eval", "--checkpoint", run_dir, "--val-seqs", "2", "--ttt", "train-then-score"];
    args.extend(small);
    let text = run(&args);
    assert!(text.contains("epoch 1/1: loss"), "{text}");
    let result = text.lines().find(|l| l.starts_with("val val_loss:")).expect("a result line");
    assert!(result.contains("NOT valid under the challenge's rules"), "{result}");
    let mut args = vec!["eval", "--checkpoint", run_dir, "--ttt", "score-first", "--set", "eval.ttt_chunk_tokens=256"];
    args.extend(small);
    let text = run(&args);
    let result = text.lines().find(|l| l.starts_with("final_sliding_s")).expect("a sliding result line");
    assert!(result.contains("TTT score-first"), "{result}");
    assert!(text.contains("over 1024 tokens"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
