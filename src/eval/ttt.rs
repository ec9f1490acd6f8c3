//! Test-time training (record-spec.md section 8): SGD with momentum on the validation tokens
//! before or while they are scored, on its own executor running [`build_ttt_plan`] on the
//! caller's device (the training run's executor is never touched; weights come in and go out
//! by name).
//!
//! Two kinds:
//! - [`train_then_score`], PR #317's: `eval.ttt_epochs` epochs over all the validation
//!   sequences, then the adapted weights are handed back to be scored. **NOT valid under the
//!   challenge's rules**: every scored token was trained on first.
//! - [`score_first`], the legal kind (PR #461's recipe): the stream in chunks of
//!   `eval.ttt_chunk_tokens` positions; each chunk is scored first, with the weights trained on
//!   the chunks before it only, then trained on; the last chunk is never trained on.
//!
//! A stream position `i` is the prediction of `tokens[i + 1]` from `tokens[..=i]` (the
//! [`ValSet`] convention, `num_targets` positions). Training on positions `a..b` uses the
//! disjoint sequences starting at `a, a + T, ...` that end by `b`, whose targets are exactly
//! tokens already scored. A short final batch (fewer sequences than the plan's batch) is
//! skipped: the plan's batch is fixed, and padding would change the mean loss.
use std::ops::Range;

use crate::config::Config;
use crate::data::{BpbAccumulator, ByteLuts, ValSet};
use crate::exec::{Executor, HostData};
use crate::host::{write_inputs, Device};
use crate::model::{build_plan, build_ttt_plan};
use crate::ops::sgd::SgdHyper;
use crate::plan::{Phase, Plan, Role};
use crate::progress::{Progress, Unit};
use anyhow::{bail, Context, Result};

/// Model weights by reference name, in the plan's declaration order.
pub type Weights = Vec<(String, Vec<f32>)>;

/// Every parameter of `plan` read out of `ex`, by name.
pub fn read_weights(plan: &Plan, ex: &mut dyn Executor) -> Result<Weights> {
    plan.weights().into_iter().map(|t| Ok((plan.tensor(t).name.clone(), ex.read(t)?))).collect()
}

/// Writes `weights` into every parameter of `plan` by name; an error names a parameter that
/// is missing or has the wrong number of values.
pub fn write_weights(plan: &Plan, ex: &mut dyn Executor, weights: &Weights) -> Result<()> {
    for t in plan.weights() {
        let desc = plan.tensor(t);
        let Some((_, values)) = weights.iter().find(|(n, _)| *n == desc.name) else {
            bail!("ttt: the weights have no tensor {}", desc.name);
        };
        if values.len() != desc.numel() {
            bail!("ttt: weights tensor {} has {} values, the model needs {:?}", desc.name, values.len(), desc.shape);
        }
        ex.write(t, HostData::F32(values))?;
    }
    Ok(())
}

/// The TTT executor: the SGD plan with its weights and momentum buffers.
pub struct Ttt {
    cfg: Config,
    plan: Plan,
    ex: Box<dyn Executor>,
}

impl Ttt {
    /// The TTT plan of `cfg` with `batch_seqs` sequences per step, on `device` (beside the
    /// scorer's plan), loaded with `weights` (momentum zero).
    pub fn new(cfg: &Config, batch_seqs: usize, device: &Device, weights: &Weights) -> Result<Ttt> {
        let mut cfg = cfg.clone();
        cfg.eval.ttt_batch_seqs = batch_seqs;
        let plan = build_ttt_plan(&cfg)?;
        let ex = device.executor(&plan)?;
        Ttt::with_executor(cfg, plan, ex, weights)
    }

    /// [`Ttt::new`] on an executor already built for `plan` (`build_ttt_plan(&cfg)`).
    pub fn with_executor(cfg: Config, plan: Plan, mut ex: Box<dyn Executor>, weights: &Weights) -> Result<Ttt> {
        write_weights(&plan, ex.as_mut(), weights)?;
        ex.clear(&plan.with_role(|r| matches!(r, Role::OptState)))?;
        Ok(Ttt { cfg, plan, ex })
    }

    /// Sequences per SGD step.
    pub fn seqs_per_step(&self) -> usize {
        self.cfg.eval.ttt_batch_seqs
    }

    /// One SGD step at learning rate `lr` on one batch (`batch_seqs x seq_len` inputs and
    /// targets): forward, backward, clip, SGD.
    pub fn step(&mut self, ids: &[u32], targets: &[u32], lr: f32) -> Result<()> {
        let (plan, ex) = (&self.plan, self.ex.as_mut());
        ex.clear(&plan.with_role(|r| matches!(r, Role::Grad | Role::Loss)))?;
        write_inputs(ex, plan, &self.cfg, ids, targets)?;
        let hyper = SgdHyper::new(lr, self.cfg.eval.ttt_momentum);
        for &(_, id) in &plan.hypers {
            ex.write(id, HostData::F32(bytemuck::cast_slice(&[hyper])))?;
        }
        for phase in [Phase::Forward, Phase::Backward, Phase::Optimizer] {
            ex.run(phase, 0..plan.steps(phase).len())?;
        }
        Ok(())
    }

    /// The last step's mean loss (waits for the device).
    pub fn loss(&mut self) -> Result<f32> {
        Ok(self.ex.read(self.plan.io().loss_total)?[0])
    }

    /// The current weights, by name.
    pub fn weights(&mut self) -> Result<Weights> {
        read_weights(&self.plan, self.ex.as_mut())
    }

    /// `epochs` epochs of SGD at `lr` over the disjoint sequences of positions `range` (in
    /// the same order each epoch), one progress line per epoch with its mean loss. Returns
    /// the steps taken.
    fn train_on(&mut self, val: &ValSet, range: Range<usize>, epochs: usize, lr: f32, label: &str) -> Result<usize> {
        let t = val.seq_len();
        let b = self.seqs_per_step();
        let starts: Vec<usize> = (range.start..).step_by(t).take_while(|s| s + t <= range.end).collect();
        let batches: Vec<&[usize]> = starts.chunks_exact(b).collect();
        let mut steps = 0;
        for epoch in 0..epochs {
            let start = std::time::Instant::now();
            let mut loss_sum = 0.0;
            for batch in &batches {
                let (mut x, mut y) = (Vec::with_capacity(b * t), Vec::with_capacity(b * t));
                for &s in batch.iter() {
                    let window = &val.tokens()[s..s + t + 1];
                    x.extend(window[..t].iter().map(|&v| v as u32));
                    y.extend(window[1..].iter().map(|&v| v as u32));
                }
                self.step(&x, &y, lr)?;
                loss_sum += self.loss()? as f64;
                steps += 1;
            }
            if !batches.is_empty() {
                let mean = loss_sum / batches.len() as f64;
                // The loss read-backs waited for the device, so the time is real.
                let ms = start.elapsed().as_secs_f64() * 1e3 / batches.len() as f64;
                eprintln!(
                    "{label} epoch {}/{epochs}: loss {mean:.4} over {} steps, {ms:.1} ms/step",
                    epoch + 1,
                    batches.len()
                );
            }
        }
        Ok(steps)
    }
}

/// The positions TTT covers: `eval.max_tokens` of them (0: all), whole sequences.
fn covered(cfg: &Config, val: &ValSet) -> usize {
    // The same targets as the sliding evaluation covers (`ValData::covered`): training uses
    // the whole sequences inside them.
    match cfg.eval_max_tokens() {
        0 => val.num_targets(),
        m => m.min(val.num_targets()),
    }
}

/// PR #317's TTT: `eval.ttt_epochs` epochs of SGD (lr `eval.ttt_lr`, momentum, clip, the
/// first `eval.freeze_blocks()` blocks frozen) over the validation sequences in batches of
/// `eval.ttt_batch_seqs`, then the adapted weights, to be scored. NOT valid under the
/// challenge's rules: the tokens scored afterwards were trained on.
pub fn train_then_score(cfg: &Config, device: &Device, val: &ValSet, weights: &Weights) -> Result<Weights> {
    eprintln!("ttt train-then-score (NOT valid under the challenge's rules: it trains on the tokens it then scores)");
    let mut ttt = Ttt::new(cfg, cfg.eval.ttt_batch_seqs, device, weights)?;
    let n = covered(cfg, val);
    let label = "ttt train-then-score (NOT valid under the rules)";
    let steps = ttt.train_on(val, 0..n, cfg.eval.ttt_epochs, cfg.eval.ttt_lr, label)?;
    eprintln!("{label}: {steps} SGD steps over {n} tokens");
    ttt.weights()
}

/// What scores a chunk: the current weights and the chunk's positions, to a bpb sum.
pub type Scorer<'a> = dyn FnMut(&Weights, Range<usize>) -> Result<BpbAccumulator> + 'a;

/// The legal TTT: the covered positions in chunks of `eval.ttt_chunk_tokens`; chunk `k` is
/// first scored by `score` with the weights trained on chunks `0..k` only, then (except the
/// last chunk) trained on for `eval.ttt_epochs` epochs at
/// `lr_k = eval.ttt_lr * (1 + cos(pi k / (chunks - 1))) / 2`, momentum kept across chunks.
/// Batches are `min(eval.ttt_batch_seqs, sequences per chunk)`. Returns the summed score.
pub fn score_first(
    cfg: &Config,
    device: &Device,
    val: &ValSet,
    weights: &Weights,
    score: &mut Scorer<'_>,
) -> Result<BpbAccumulator> {
    let t = val.seq_len();
    let n = covered(cfg, val);
    let chunk = cfg.eval.ttt_chunk_tokens;
    let chunks = n.div_ceil(chunk);
    let batch = cfg.eval.ttt_batch_seqs.min(chunk / t).max(1);
    let mut ttt = Ttt::new(cfg, batch, device, weights)?;
    let mut total = BpbAccumulator::new();
    let mut progress = Progress::new("ttt score-first", chunks as u64, Unit::Count);
    for k in 0..chunks {
        let range = k * chunk..((k + 1) * chunk).min(n);
        let current = ttt.weights()?;
        let acc = score(&current, range.clone()).with_context(|| format!("ttt score-first: scoring chunk {k}"))?;
        total.merge(&acc);
        if k + 1 < chunks {
            let lr = cosine_lr(cfg.eval.ttt_lr, k, chunks);
            ttt.train_on(val, range, cfg.eval.ttt_epochs, lr, &format!("ttt score-first chunk {k}"))?;
        }
        if progress.due() {
            progress.update(k as u64 + 1, &format!("bpb {:.4}", total.val_bpb()));
        }
    }
    progress.finish();
    Ok(total)
}

/// The learning rate of chunk `k` of `chunks`: a cosine from `lr` down to 0 at the last chunk.
pub fn cosine_lr(lr: f32, k: usize, chunks: usize) -> f32 {
    let frac = k as f64 / (chunks.saturating_sub(1).max(1)) as f64;
    (lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos())) as f32
}

/// A simple chunk scorer until the sliding one is wired in: each position of the range is
/// scored with its in-sequence context (the `train.seq_len` sequence holding it, as the
/// non-sliding evaluation does), through the training plan's forward on its own executor.
/// Only tokens up to the scored position are read, so it keeps score-first legal.
pub fn sequence_scorer<'a>(
    cfg: &'a Config,
    device: &Device,
    val: &'a ValSet,
    luts: &'a ByteLuts,
) -> Result<impl FnMut(&Weights, Range<usize>) -> Result<BpbAccumulator> + 'a> {
    let plan = build_plan(cfg)?;
    let mut ex = device.executor(&plan)?;
    let (b, t) = (cfg.train.batch_seqs, cfg.train.seq_len);
    Ok(move |weights: &Weights, range: Range<usize>| {
        write_weights(&plan, ex.as_mut(), weights)?;
        let mut acc = BpbAccumulator::new();
        if range.is_empty() {
            return Ok(acc);
        }
        let seqs: Vec<usize> = (range.start / t..range.end.div_ceil(t)).collect();
        for group in seqs.chunks(b) {
            let (mut x, mut y) = val.batch(group[0]..group[0] + group.len());
            // Pad a short batch with its first sequence; the padding is not scored.
            while x.len() < b * t {
                x.extend_from_within(..t);
                y.extend_from_within(..t);
            }
            write_inputs(ex.as_mut(), &plan, cfg, &x, &y)?;
            ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len())?;
            let nll = ex.read(plan.io().loss_rows)?;
            for (row, &s) in group.iter().enumerate() {
                for j in 0..t {
                    let pos = s * t + j;
                    if range.contains(&pos) {
                        let i = row * t + j;
                        acc.add(luts, x[i], y[i], nll[i] as f64);
                    }
                }
            }
        }
        Ok(acc)
    })
}
