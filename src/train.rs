//! The training loop: data in, plan replayed, metrics out.
//!
//! Each optimizer step zeroes the parameter gradients, runs `grad_accum` micro-batches
//! (forward + backward, each zeroing the activation gradients first), writes the step's
//! AdamW hyperparameters and runs the optimizer pass. The loss is read back only every
//! `log_every` steps, which is also when the throughput is measured (the read waits for the
//! GPU, so the time between two reads is real work). At the end a validation pass reports
//! val_loss and val_bpb, and the final weights are saved.
use crate::config::Config;
use crate::data::{BpbAccumulator, ByteLuts, Tokenizer, TrainStream, ValSet};
use crate::exec::{cpu::CpuExecutor, Executor, HostData};
use crate::gpu::{GpuContext, GpuExecutor};
use crate::ops::adamw::AdamHyper;
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
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Where metrics.jsonl, config.toml and model.safetensors go.
    pub out_dir: PathBuf,
    pub backend: Backend,
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

/// JSON-lines metrics, one object per event, flushed as written.
struct Metrics {
    file: std::io::BufWriter<std::fs::File>,
}

impl Metrics {
    fn create(path: &Path) -> Result<Self> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Metrics {
            file: std::io::BufWriter::new(file),
        })
    }
    fn event(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}")?;
        self.file.flush()?;
        Ok(())
    }
}

/// The AdamW hyperparameters of each group at step `step` (0-based).
fn hypers(cfg: &Config, step: usize) -> Vec<(ParamGroup, AdamHyper)> {
    let t = &cfg.train;
    let scale = cfg.lr_scale(step);
    ParamGroup::ALL
        .iter()
        .map(|&g| {
            let lr = match g {
                ParamGroup::Embed => t.embed_lr,
                ParamGroup::Matrix => t.matrix_lr,
                ParamGroup::Scalar => t.scalar_lr,
            };
            (
                g,
                AdamHyper::at_step(
                    lr * scale,
                    t.beta1,
                    t.beta2,
                    t.adam_eps,
                    t.weight_decay,
                    step as u32 + 1,
                ),
            )
        })
        .collect()
}

/// Runs one optimizer step: `grad_accum` micro-batches then AdamW.
pub fn train_step(
    ex: &mut dyn Executor,
    plan: &Plan,
    cfg: &Config,
    stream: &mut TrainStream,
    step: usize,
) -> Result<()> {
    let io = plan.io();
    ex.clear(&plan.with_role(|r| matches!(r, Role::Grad | Role::Loss)));
    let act_grads = plan.with_role(|r| matches!(r, Role::ActGrad));
    for _ in 0..cfg.train.grad_accum {
        let (x, y) = stream.next_batch(cfg.micro_tokens(), cfg.train.seq_len, 1, 0)?;
        ex.write(io.ids, HostData::U32(&x));
        ex.write(io.targets, HostData::U32(&y));
        ex.clear(&act_grads);
        ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len());
        ex.run(Phase::Backward, 0..plan.steps(Phase::Backward).len());
    }
    for (group, h) in hypers(cfg, step) {
        if let Some(&(_, id)) = plan.hypers.iter().find(|(g, _)| *g == group) {
            ex.write(
                id,
                HostData::F32(bytemuck::cast_slice(std::slice::from_ref(&h))),
            );
        }
    }
    ex.run(Phase::Optimizer, 0..plan.steps(Phase::Optimizer).len());
    Ok(())
}

/// Scores the first `max_seqs` validation sequences (all with 0) through the forward plan.
/// The last batch is padded with sequence 0 and only its real rows are counted.
pub fn evaluate(
    ex: &mut dyn Executor,
    plan: &Plan,
    cfg: &Config,
    val: &ValSet,
    luts: &ByteLuts,
    max_seqs: usize,
) -> BpbAccumulator {
    let io = plan.io();
    let total = if max_seqs == 0 {
        val.num_seqs()
    } else {
        max_seqs.min(val.num_seqs())
    };
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
        ex.write(io.ids, HostData::U32(&x));
        ex.write(io.targets, HostData::U32(&y));
        ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len());
        let nll = ex.read(io.loss_rows);
        acc.add_batch(luts, &x[..real * t], &y[..real * t], &nll[..real * t]);
        start += real;
    }
    acc
}

/// Trains `cfg` end to end and writes `metrics.jsonl`, `config.toml` and
/// `model.safetensors` into the output directory.
pub fn train(cfg: &Config, opts: &TrainOptions) -> Result<TrainSummary> {
    let t = &cfg.train;
    let vocab = cfg.model.vocab_size;
    let mut stream = TrainStream::open(&cfg.data.dir, vocab)?;
    let val = ValSet::open(&cfg.data.dir, vocab, t.seq_len)?;
    let tokenizer = Tokenizer::load(&cfg.data.tokenizer)?;
    let luts = ByteLuts::from_tokenizer(&tokenizer, vocab);
    let plan = crate::model::build_plan(cfg)?;
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let config_text = toml::to_string(cfg)?;
    crate::fsutil::write_atomic(&opts.out_dir.join("config.toml"), config_text.as_bytes())?;
    let mut metrics = Metrics::create(&opts.out_dir.join("metrics.jsonl"))?;

    let setup = Instant::now();
    let mut ex = make_executor(&plan, &opts.backend)?;
    let adapter = ex.describe();
    for (id, values) in crate::init::init_params(&plan, t.seed) {
        ex.write(id, HostData::F32(&values));
    }
    eprintln!(
        "wgolf train: {} parameters, {} steps of {} tokens ({} x {} x {} micro-batches) on {adapter}; plan {:.1} MiB, setup {:.2} s",
        plan.param_count(),
        t.steps,
        cfg.step_tokens(),
        t.batch_seqs,
        t.seq_len,
        t.grad_accum,
        plan.bytes() as f64 / (1 << 20) as f64,
        setup.elapsed().as_secs_f64()
    );
    metrics.event(json!({"event": "start", "adapter": adapter, "params": plan.param_count(), "step_tokens": cfg.step_tokens(), "config": cfg, "version": env!("CARGO_PKG_VERSION")}))?;

    let start = Instant::now();
    let mut window = (Instant::now(), 0usize);
    let mut measured = (0.0f64, 0usize); // seconds and steps after the first window
    let mut last_loss = f32::NAN;
    for step in 0..t.steps {
        train_step(ex.as_mut(), &plan, cfg, &mut stream, step)?;
        let done = step + 1;
        if done % t.log_every == 0 || done == t.steps || done == 1 {
            last_loss = ex.read(plan.io().loss_total)[0];
            let secs = window.0.elapsed().as_secs_f64();
            let steps_in_window = done - window.1;
            let step_ms = 1e3 * secs / steps_in_window as f64;
            let tok_s = (steps_in_window * cfg.step_tokens()) as f64 / secs;
            if window.1 > 0 {
                measured.0 += secs;
                measured.1 += steps_in_window;
            }
            window = (Instant::now(), done);
            if !last_loss.is_finite() {
                anyhow::bail!(
                    "training diverged: loss {last_loss} at step {done}; lower the learning rates"
                );
            }
            eprintln!("step {done:>6}/{} loss {last_loss:.4} lr x{:.3} {step_ms:8.1} ms/step {tok_s:10.0} tok/s", t.steps, cfg.lr_scale(step));
            metrics.event(json!({"event": "train", "step": done, "train_loss": last_loss, "lr_scale": cfg.lr_scale(step), "step_ms": step_ms, "tokens_per_s": tok_s, "elapsed_s": start.elapsed().as_secs_f64()}))?;
        }
    }
    let train_secs = start.elapsed().as_secs_f64();
    let (tokens_per_s, step_ms) = if measured.1 > 0 {
        (
            (measured.1 * cfg.step_tokens()) as f64 / measured.0,
            1e3 * measured.0 / measured.1 as f64,
        )
    } else {
        (
            (t.steps * cfg.step_tokens()) as f64 / train_secs,
            1e3 * train_secs / t.steps.max(1) as f64,
        )
    };

    let val_start = Instant::now();
    let acc = evaluate(ex.as_mut(), &plan, cfg, &val, &luts, t.val_seqs);
    eprintln!(
        "validation: {} tokens, {} bytes: val_loss {:.4} val_bpb {:.4} ({:.1} s)",
        acc.tokens(),
        acc.bytes(),
        acc.val_loss(),
        acc.val_bpb(),
        val_start.elapsed().as_secs_f64()
    );
    metrics.event(json!({"event": "val", "step": t.steps, "val_loss": acc.val_loss(), "val_bpb": acc.val_bpb(), "val_tokens": acc.tokens(), "val_bytes": acc.bytes(), "elapsed_s": train_secs}))?;

    let weights: Vec<_> = plan
        .params
        .iter()
        .map(|s| (s.param, ex.read(s.param)))
        .collect();
    let path = opts.out_dir.join("model.safetensors");
    crate::weights::save(
        &path,
        &plan,
        &weights,
        vec![("wgolf_steps".into(), t.steps.to_string())],
    )?;
    eprintln!("saved {}", path.display());
    metrics.event(json!({"event": "end", "step": t.steps, "train_loss": last_loss, "val_loss": acc.val_loss(), "val_bpb": acc.val_bpb(), "tokens_per_s": tokens_per_s, "step_ms": step_ms, "elapsed_s": train_secs}))?;
    Ok(TrainSummary {
        steps: t.steps,
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
