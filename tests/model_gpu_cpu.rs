//! The whole tiny model on the GPU against the CPU executor: the same (perturbed) parameters
//! and the same tokens, one forward and backward pass, then logits, loss and every parameter
//! gradient compared within `tolerance(Check::Model)`; and a step-by-step comparison
//! (`compare_steps`) that names the first step whose output diverges.
//!
//! `configs/tiny.toml` with `train.batch_seqs=2` (256 tokens) keeps the CPU reference fast;
//! `configs/record-tiny.toml` at the same size checks the record's composition (BigramHash,
//! SmearGate, XSA, NTK RoPE, OrthoInit, U-Net skips, Muon, clip and EMA in the optimizer).

mod common;

use std::path::Path;

use wgolf::config::Config;
use wgolf::exec::compare::compare_steps;
use wgolf::exec::cpu::CpuExecutor;
use wgolf::exec::{Executor, HostData};
use wgolf::init::{init_params, Rng};
use wgolf::model::build_plan;
use wgolf::plan::{Phase, Plan, Role, TensorId};
use wgolf::tolerance::{first_mismatch, tolerance, Check};

/// Everything both executors are loaded with.
struct Setup {
    cfg: Config,
    plan: Plan,
    params: Vec<(TensorId, Vec<f32>)>,
    ids: Vec<u32>,
    targets: Vec<u32>,
}

fn setup() -> Setup {
    setup_of("configs/tiny.toml", &["train.batch_seqs=2"])
}

/// The record recipe at the size of `setup`, one micro-batch per step (so that the loss is
/// the mean of its rows).
fn record_setup() -> Setup {
    setup_of("configs/record-tiny.toml", &["train.batch_seqs=2", "train.grad_accum=1"])
}

fn setup_of(config: &str, overrides: &[&str]) -> Setup {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(config);
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let cfg = Config::load(&path, &overrides).unwrap_or_else(|e| panic!("{config} loads: {e}"));
    let plan = build_plan(&cfg).expect("the plan builds");
    // The init zeroes the output projections and sets every scale to 1 and the mix's second
    // row to 0, which would make many gradients exactly zero (and the comparison vacuous):
    // perturb every parameter, deterministically.
    let mut params = init_params(&plan, cfg.train.seed);
    for (i, (_, values)) in params.iter_mut().enumerate() {
        let mut rng = Rng::new(0x5EED_0000 + i as u64);
        for v in values.iter_mut() {
            *v += (0.05 * rng.normal()) as f32;
        }
    }
    // Synthetic tokens, skewed toward small ids so that many repeat (the embedding's
    // scatter-add sums them) while large ids still occur.
    let n = cfg.micro_tokens();
    let vocab = cfg.model.vocab_size;
    let mut rng = Rng::new(42);
    let mut draw = || ((rng.uniform().powi(3) * vocab as f64) as usize).min(vocab - 1) as u32;
    let tokens: Vec<u32> = (0..=n).map(|_| draw()).collect();
    let (ids, targets) = (tokens[..n].to_vec(), tokens[1..].to_vec());
    Setup { cfg, plan, params, ids, targets }
}

/// Loads parameters and tokens, and zeroes gradients, optimizer state and the loss.
fn load(ex: &mut dyn Executor, s: &Setup) {
    for (id, values) in &s.params {
        ex.write(*id, HostData::F32(values)).unwrap();
    }
    // Token ids, targets and (for BigramHash) the bucket ids derived from them.
    wgolf::host::write_inputs(ex, &s.plan, &s.cfg, &s.ids, &s.targets).unwrap();
    // Activation gradients are the plan's to clear (before their first accumulating write).
    ex.clear(&s.plan.with_role(|r| matches!(r, Role::Grad | Role::Loss | Role::OptState))).unwrap();
    // The EMA starts from the weights, as in training.
    for (id, values) in &s.params {
        if let Some(ema) = wgolf::checkpoint::ema_of(&s.plan, *id) {
            ex.write(ema, HostData::F32(values)).unwrap();
        }
    }
    // The first optimizer step's hyperparameters, per group (AdamW's, or Muon's).
    wgolf::train::write_hypers(ex, &s.plan, &s.cfg, 0, 1.0).unwrap();
}

/// Runs forward and backward on a loaded executor.
fn forward_backward(ex: &mut dyn Executor, plan: &Plan) {
    ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len()).unwrap();
    ex.run(Phase::Backward, 0..plan.steps(Phase::Backward).len()).unwrap();
}

#[test]
fn tiny_model_logits_loss_and_gradients_match() {
    logits_loss_and_gradients_match(&setup());
}

#[test]
fn record_tiny_model_logits_loss_and_gradients_match() {
    logits_loss_and_gradients_match(&record_setup());
}

fn logits_loss_and_gradients_match(s: &Setup) {
    let plan = &s.plan;
    let mut cpu = CpuExecutor::new(plan);
    let mut gpu = common::gpu_executor(plan);
    load(&mut cpu, s);
    load(&mut gpu, s);
    forward_backward(&mut cpu, plan);
    forward_backward(&mut gpu, plan);

    let io = plan.io();
    let mut checked: Vec<TensorId> = vec![io.logits, io.loss_rows, io.loss_total];
    checked.extend(plan.params.iter().map(|p| p.grad));
    let tol = tolerance(Check::Model);
    let mut failures = Vec::new();
    for &t in &checked {
        let name = &plan.tensor(t).name;
        let (got, want) = (gpu.read(t).unwrap(), cpu.read(t).unwrap());
        assert!(want.iter().all(|v| v.is_finite()), "{name}: the CPU reference is not finite");
        // Every checked tensor carries signal: a zero gradient would compare trivially.
        assert!(want.iter().any(|&v| v != 0.0), "{name}: the CPU reference is all zeros");
        if let Some((i, g, w)) = first_mismatch(&got, &want, tol) {
            failures.push(format!("{name}[{i}]: gpu {g}, cpu {w} (diff {:e})", (g - w).abs()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} tensors differ beyond {tol:?}; the first is {}\n{}",
        failures.len(),
        checked.len(),
        failures[0],
        failures.join("\n")
    );
    // A sane loss: near ln(vocab) for an untrained model, and the mean of the rows.
    let loss = cpu.read(io.loss_total).unwrap()[0];
    let rows = cpu.read(io.loss_rows).unwrap();
    let mean = rows.iter().sum::<f32>() / rows.len() as f32;
    assert!((loss - mean).abs() <= 1e-4 * mean, "loss {loss} is not the mean {mean} of its rows");
    assert!(loss > 3.0 && loss < 12.0, "implausible initial loss {loss}");
}

#[test]
fn tiny_model_no_step_diverges() {
    no_step_diverges(&setup());
}

#[test]
fn record_tiny_model_no_step_diverges() {
    no_step_diverges(&record_setup());
}

fn no_step_diverges(s: &Setup) {
    let plan = &s.plan;
    let mut cpu = CpuExecutor::new(plan);
    let mut gpu = common::gpu_executor(plan);
    load(&mut cpu, s);
    load(&mut gpu, s);
    let phases = [Phase::Forward, Phase::Backward, Phase::Optimizer];
    if let Some(d) = compare_steps(plan, &phases, &mut gpu, &mut cpu, tolerance(Check::Model)).unwrap() {
        panic!("GPU ({}) against the CPU reference: {d}", gpu.describe());
    }
}
