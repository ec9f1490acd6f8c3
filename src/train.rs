//! The training loop: data in, plan replayed, metrics and checkpoints out.
//!
//! Each optimizer step zeroes the parameter gradients, runs `grad_accum` micro-batches
//! (forward + backward, each zeroing the activation gradients first), writes the step's
//! hyperparameters (scheduled learning rates, Muon momentum) and runs the optimizer pass
//! (clip, AdamW / Muon, EMA, as the plan has them). The loss is read back only every
//! `log_every` steps, which is also when throughput is measured (the read waits for the GPU,
//! so the time between two reads is real work). At the end a validation pass reports
//! val_loss and val_bpb on the weights the run exports (the EMA when it keeps one), and the
//! checkpoint and weights are saved.
use crate::checkpoint::{self, Loaded};
use crate::config::{Config, MatrixOptimizer, Warmdown};
use crate::data::{BpbAccumulator, ByteLuts, Tokenizer, TrainStream, ValSet};
use crate::exec::{cpu::CpuExecutor, Executor, HostData};
use crate::gpu::{GpuContext, GpuExecutor};
use crate::ops::adamw::AdamHyper;
use crate::ops::muon::MuonHyper;
use crate::plan::{ParamGroup, Phase, Plan, Role};
use anyhow::{Context, Result};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Which executor runs the plan.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The GPU executor on an adapter (index or name substring; `None` picks the best).
    Gpu(Option<String>),
    /// The CPU reference executor (slow; for debugging).
    Cpu,
}

/// Options of a training run beyond the config.
pub struct TrainOptions {
    /// Where metrics.jsonl, config.toml, checkpoint.safetensors and model.safetensors go.
    pub out_dir: PathBuf,
    pub backend: Backend,
    /// Continue from this checkpoint (of the same config) instead of initializing.
    pub resume: Option<Loaded>,
    /// Also write the checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub steps: usize,
    pub last_train_loss: f32,
    pub val_loss: f64,
    pub val_bpb: f64,
    pub val_tokens: u64,
    pub val_bytes: u64,
    /// Mean over the run, excluding the first logged window (pipeline builds, warm-up).
    pub tokens_per_s: f64,
    pub step_ms: f64,
    pub adapter: String,
}

/// Builds the executor for a plan.
pub fn make_executor(plan: &Plan, backend: &Backend) -> Result<Box<dyn Executor>> {
    Ok(match backend {
        Backend::Cpu => Box::new(CpuExecutor::new(plan)),
        Backend::Gpu(choice) => {
            let ctx = Arc::new(GpuContext::new(choice.as_deref())?);
            Box::new(GpuExecutor::new(ctx, plan)?)
        }
    })
}

/// Initializes every parameter (seeded) and the EMA copies to the same values.
pub fn init_state(ex: &mut dyn Executor, plan: &Plan, seed: u64) -> Result<()> {
    for (id, values) in crate::init::init_params(plan, seed) {
        ex.write(id, HostData::F32(&values))?;
        if let Some(ema) = checkpoint::ema_of(plan, id) {
            ex.write(ema, HostData::F32(&values))?;
        }
    }
    Ok(())
}

/// JSON-lines metrics, one object per event, flushed as written.
struct Metrics {
    file: std::io::BufWriter<std::fs::File>,
}

impl Metrics {
    fn open(path: &Path, append: bool) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Metrics { file: std::io::BufWriter::new(file) })
    }
    fn event(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}")?;
        self.file.flush()?;
        Ok(())
    }
}

/// The 8 f32 hyperparameters of a group at `step` with learning-rate multiplier `scale`:
/// an [`AdamHyper`], or a [`MuonHyper`] for the matrices under Muon.
fn hyper_values(cfg: &Config, group: ParamGroup, step: usize, scale: f32) -> [f32; 8] {
    let t = &cfg.train;
    let lr = scale
        * match group {
            ParamGroup::Embed => t.embed_lr,
            ParamGroup::Matrix => t.matrix_lr,
            ParamGroup::Scalar => t.scalar_lr,
        };
    if group == ParamGroup::Matrix && t.matrix_optimizer == MatrixOptimizer::Muon {
        return bytemuck::cast(MuonHyper::new(lr, cfg.muon_momentum(step), t.weight_decay));
    }
    let h = AdamHyper::at_step(lr, t.beta1, t.beta2, t.adam_eps, t.weight_decay, step as u32 + 1);
    bytemuck::cast(h)
}

/// Writes every optimizer group's hyperparameters for `step` (0-based).
pub fn write_hypers(ex: &mut dyn Executor, plan: &Plan, cfg: &Config, step: usize, lr_scale: f32) -> Result<()> {
    for &(group, id) in &plan.hypers {
        ex.write(id, HostData::F32(&hyper_values(cfg, group, step, lr_scale)))?;
    }
    Ok(())
}

/// Writes one micro-batch's token ids and targets (and the BigramHash buckets derived from
/// the ids, when the model has them).
pub fn write_inputs(ex: &mut dyn Executor, plan: &Plan, cfg: &Config, ids: &[u32], targets: &[u32]) -> Result<()> {
    let io = plan.io();
    ex.write(io.ids, HostData::U32(ids))?;
    ex.write(io.targets, HostData::U32(targets))?;
    if let Some(b) = io.bigram_ids {
        let buckets = crate::model::bigram_buckets(ids, cfg.train.seq_len, cfg.model.bigram_buckets);
        ex.write(b, HostData::U32(&buckets))?;
    }
    Ok(())
}

/// Runs one optimizer step (0-based `step`): `grad_accum` micro-batches, then the optimizer
/// pass with learning rates scaled by `lr_scale`.
pub fn train_step(
    ex: &mut dyn Executor,
    plan: &Plan,
    cfg: &Config,
    stream: &mut TrainStream,
    step: usize,
    lr_scale: f32,
) -> Result<()> {
    ex.clear(&plan.with_role(|r| matches!(r, Role::Grad | Role::Loss)))?;
    let act_grads = plan.with_role(|r| matches!(r, Role::ActGrad));
    for _ in 0..cfg.train.grad_accum {
        let (x, y) = stream.next_batch(cfg.micro_tokens(), cfg.train.seq_len, 1, 0)?;
        write_inputs(ex, plan, cfg, &x, &y)?;
        ex.clear(&act_grads)?;
        ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len())?;
        ex.run(Phase::Backward, 0..plan.steps(Phase::Backward).len())?;
    }
    write_hypers(ex, plan, cfg, step, lr_scale)?;
    ex.run(Phase::Optimizer, 0..plan.steps(Phase::Optimizer).len())?;
    Ok(())
}

/// Scores the first `max_seqs` validation sequences (all with 0) through the forward plan,
/// on the parameters the executor holds. The last batch is padded with sequence 0 and only
/// its real rows are counted.
pub fn evaluate(
    ex: &mut dyn Executor,
    plan: &Plan,
    cfg: &Config,
    val: &ValSet,
    luts: &ByteLuts,
    max_seqs: usize,
) -> Result<BpbAccumulator> {
    let total = if max_seqs == 0 { val.num_seqs() } else { max_seqs.min(val.num_seqs()) };
    let (b, t) = (cfg.train.batch_seqs, cfg.train.seq_len);
    let mut acc = BpbAccumulator::new();
    let mut start = 0;
    while start < total {
        let real = b.min(total - start);
        let (mut x, mut y) = val.batch(start..start + real);
        if real < b {
            let (px, py) = val.sequence(0);
            for _ in real..b {
                x.extend_from_slice(&px);
                y.extend_from_slice(&py);
            }
        }
        write_inputs(ex, plan, cfg, &x, &y)?;
        ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len())?;
        let nll = ex.read(plan.io().loss_rows)?;
        acc.add_batch(luts, &x[..real * t], &y[..real * t], &nll[..real * t]);
        start += real;
    }
    Ok(acc)
}

/// Evaluates the run's exported weights (the EMA when kept): swaps them into the parameters
/// for the pass and restores the training parameters afterwards.
fn evaluate_export(
    ex: &mut dyn Executor,
    plan: &Plan,
    cfg: &Config,
    val: &ValSet,
    luts: &ByteLuts,
) -> Result<BpbAccumulator> {
    let has_ema = plan.params.iter().any(|s| checkpoint::ema_of(plan, s.param).is_some());
    if !has_ema {
        return evaluate(ex, plan, cfg, val, luts, cfg.train.val_seqs);
    }
    let raw: Vec<_> = plan.params.iter().map(|s| Ok((s.param, ex.read(s.param)?))).collect::<Result<_>>()?;
    for (id, v) in checkpoint::model_weights(plan, ex)? {
        ex.write(id, HostData::F32(&v))?;
    }
    let acc = evaluate(ex, plan, cfg, val, luts, cfg.train.val_seqs)?;
    for (id, v) in raw {
        ex.write(id, HostData::F32(&v))?;
    }
    Ok(acc)
}

/// Trains `cfg` end to end (or resumes) and writes `metrics.jsonl`, `config.toml`,
/// `checkpoint.safetensors` and `model.safetensors` into the output directory.
pub fn train(cfg: &Config, opts: TrainOptions) -> Result<TrainSummary> {
    let t = &cfg.train;
    let vocab = cfg.model.vocab_size;
    let mut stream = TrainStream::open(&cfg.data.dir, vocab)?;
    let val = ValSet::open(&cfg.data.dir, vocab, t.seq_len)?;
    let tokenizer = Tokenizer::load(&cfg.data.tokenizer)?;
    let luts = ByteLuts::from_tokenizer(&tokenizer, vocab);
    let plan = crate::model::build_plan(cfg)?;
    std::fs::create_dir_all(&opts.out_dir).with_context(|| format!("creating {}", opts.out_dir.display()))?;
    crate::fsutil::write_atomic(&opts.out_dir.join("config.toml"), toml::to_string(cfg)?.as_bytes())?;
    let mut metrics = Metrics::open(&opts.out_dir.join("metrics.jsonl"), opts.resume.is_some())?;

    let setup = Instant::now();
    let mut ex = make_executor(&plan, &opts.backend)?;
    let adapter = ex.describe();
    let (first_step, elapsed_before) = match &opts.resume {
        Some(ck) => {
            checkpoint::restore_checkpoint(ck, &plan, ex.as_mut())?;
            stream.seek(&ck.stream()?)?;
            (ck.step()?, ck.elapsed_s()?)
        }
        None => {
            init_state(ex.as_mut(), &plan, t.seed)?;
            (0, 0.0)
        }
    };
    eprintln!(
        "wgolf train: {} parameters, steps {}..{} of {} tokens ({} x {} x {} micro-batches) on {adapter}; plan {:.1} MiB, setup {:.2} s",
        plan.param_count(),
        first_step,
        t.steps,
        cfg.step_tokens(),
        t.batch_seqs,
        t.seq_len,
        t.grad_accum,
        plan.bytes() as f64 / (1 << 20) as f64,
        setup.elapsed().as_secs_f64()
    );
    metrics.event(json!({"event": if opts.resume.is_some() { "resume" } else { "start" }, "step": first_step, "adapter": adapter, "params": plan.param_count(), "step_tokens": cfg.step_tokens(), "config": cfg, "version": env!("CARGO_PKG_VERSION")}))?;

    // Wall-clock schedules need the real training time at every step: wait for the GPU.
    let timed = t.max_wallclock_s > 0.0 || t.warmdown == Warmdown::Wallclock;
    let start = Instant::now();
    let elapsed = |start: &Instant| elapsed_before + start.elapsed().as_secs_f64();
    let mut window = (Instant::now(), first_step);
    let mut measured = (0.0f64, 0usize);
    let mut last_loss = f32::NAN;
    let mut step = first_step;
    while step < t.steps {
        let scale = cfg.lr_scale_at(step, elapsed(&start));
        train_step(ex.as_mut(), &plan, cfg, &mut stream, step, scale)?;
        step += 1;
        if timed {
            ex.sync()?;
        }
        let capped = t.max_wallclock_s > 0.0 && elapsed(&start) >= t.max_wallclock_s;
        if step % t.log_every == 0 || step == t.steps || step == first_step + 1 || capped {
            last_loss = ex.read(plan.io().loss_total)?[0];
            let secs = window.0.elapsed().as_secs_f64();
            let steps_in_window = step - window.1;
            let step_ms = 1e3 * secs / steps_in_window as f64;
            let tok_s = (steps_in_window * cfg.step_tokens()) as f64 / secs;
            if window.1 > first_step {
                measured.0 += secs;
                measured.1 += steps_in_window;
            }
            window = (Instant::now(), step);
            if !last_loss.is_finite() {
                anyhow::bail!("training diverged: loss {last_loss} at step {step}; lower the learning rates");
            }
            eprintln!(
                "step {step:>6}/{} loss {last_loss:.4} lr x{scale:.3} {step_ms:8.1} ms/step {tok_s:10.0} tok/s",
                t.steps
            );
            metrics.event(json!({"event": "train", "step": step, "train_loss": last_loss, "lr_scale": scale, "step_ms": step_ms, "tokens_per_s": tok_s, "elapsed_s": elapsed(&start)}))?;
        }
        if opts.checkpoint_every > 0 && step % opts.checkpoint_every == 0 && step < t.steps && !capped {
            let path = checkpoint::checkpoint_path(&opts.out_dir);
            checkpoint::save_checkpoint(&path, &plan, ex.as_mut(), cfg, step, elapsed(&start), &stream.position())?;
        }
        if capped {
            eprintln!("stopping at step {step}: the {} s training-time cap is reached", t.max_wallclock_s);
            break;
        }
    }
    let train_secs = elapsed(&start);
    let run_secs = start.elapsed().as_secs_f64();
    let done_steps = step - first_step;
    let (tokens_per_s, step_ms) = if measured.1 > 0 {
        ((measured.1 * cfg.step_tokens()) as f64 / measured.0, 1e3 * measured.0 / measured.1 as f64)
    } else {
        ((done_steps * cfg.step_tokens()) as f64 / run_secs, 1e3 * run_secs / done_steps.max(1) as f64)
    };
    let path = checkpoint::checkpoint_path(&opts.out_dir);
    checkpoint::save_checkpoint(&path, &plan, ex.as_mut(), cfg, step, train_secs, &stream.position())?;

    let val_start = Instant::now();
    let acc = evaluate_export(ex.as_mut(), &plan, cfg, &val, &luts)?;
    eprintln!(
        "validation: {} tokens, {} bytes: val_loss {:.4} val_bpb {:.4} ({:.1} s)",
        acc.tokens(),
        acc.bytes(),
        acc.val_loss(),
        acc.val_bpb(),
        val_start.elapsed().as_secs_f64()
    );
    metrics.event(json!({"event": "val", "step": step, "val_loss": acc.val_loss(), "val_bpb": acc.val_bpb(), "val_tokens": acc.tokens(), "val_bytes": acc.bytes(), "elapsed_s": train_secs}))?;

    let weights = checkpoint::model_weights(&plan, ex.as_mut())?;
    let path = opts.out_dir.join("model.safetensors");
    checkpoint::save_weights(&path, &plan, cfg, &weights)?;
    eprintln!("saved {} and {}", checkpoint::checkpoint_path(&opts.out_dir).display(), path.display());
    metrics.event(json!({"event": "end", "step": step, "train_loss": last_loss, "val_loss": acc.val_loss(), "val_bpb": acc.val_bpb(), "tokens_per_s": tokens_per_s, "step_ms": step_ms, "elapsed_s": train_secs}))?;
    Ok(TrainSummary {
        steps: step,
        last_train_loss: last_loss,
        val_loss: acc.val_loss(),
        val_bpb: acc.val_bpb(),
        val_tokens: acc.tokens(),
        val_bytes: acc.bytes(),
        tokens_per_s,
        step_ms,
        adapter,
    })
}
