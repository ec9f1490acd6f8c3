//! One optimizer step: the parameters' initial state, the hyperparameter uniforms, and the
//! micro-batches followed by the optimizer pass.
use crate::checkpoint;
use crate::config::{Config, MatrixOptimizer};
use crate::data::TrainStream;
use crate::exec::{Executor, HostData, PendingRead};
use crate::host::write_inputs;
use crate::ops::adamw::AdamHyper;
use crate::ops::muon::MuonHyper;
use crate::plan::{ParamGroup, Phase, Plan, Role, TensorId};
use anyhow::Result;

pub(crate) use super::buckets::GradBucket;

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
    train_step_on(ex, plan, cfg, stream, step, lr_scale, None)
}

/// A rank's part in a data-parallel step: its group, and the buckets its gradients are
/// averaged in (`buckets.rs`).
pub(crate) struct DataParallel<'a> {
    pub group: &'a mut crate::dist::Group,
    pub buckets: &'a [GradBucket],
    /// Distributed Muon's exchange buffer (every shard's results), reused across steps.
    pub exchange: &'a mut Vec<f32>,
}

/// [`train_step`] on one rank of a group: this rank's span of every micro-batch, and the
/// parameter gradients averaged over the ranks before the optimizer pass, bucket by bucket
/// during the last micro-batch's backward. `cfg` is the rank's config, whose `grad_accum` is
/// its share of the step's micro-batches (so the plan's 1/tokens scale is per rank and the
/// mean over ranks is the step's mean).
pub(crate) fn train_step_on(
    ex: &mut dyn Executor,
    plan: &Plan,
    cfg: &Config,
    stream: &mut TrainStream,
    step: usize,
    lr_scale: f32,
    mut dist: Option<DataParallel<'_>>,
) -> Result<()> {
    let (world, rank) = dist.as_ref().map_or((1, 0), |d| (d.group.world(), d.group.rank()));
    // Parameter gradients and the loss accumulate over the micro-batches; activation
    // gradients are zeroed by the executor where the plan says (before an accumulating
    // first write, in every micro-batch).
    ex.clear(&plan.with_role(|r| matches!(r, Role::Grad | Role::Loss)))?;
    let backward = plan.steps(Phase::Backward).len();
    for m in 0..cfg.train.grad_accum {
        let (x, y) = stream.next_batch(cfg.micro_tokens(), cfg.train.seq_len, world, rank)?;
        write_inputs(ex, plan, cfg, &x, &y)?;
        ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len())?;
        match dist.as_mut() {
            Some(d) if m + 1 == cfg.train.grad_accum => backward_averaging(ex, backward, d)?,
            _ => ex.run(Phase::Backward, 0..backward)?,
        }
    }
    write_hypers(ex, plan, cfg, step, lr_scale)?;
    let optimizer = plan.steps(Phase::Optimizer).len();
    match dist {
        Some(d) if !plan.muon_shards.is_empty() => distributed_muon(ex, plan, optimizer, d.group, d.exchange)?,
        _ => ex.run(Phase::Optimizer, 0..optimizer)?,
    }
    Ok(())
}

/// The optimizer pass with distributed Muon (`Plan::muon_shards`, one shard per rank): the
/// steps before the first shard (clip, Adam, Muon's momentum), this rank's shard of the
/// Newton-Schulz work, the exchange of every shard's results (each rank's read back and
/// gathered on every rank, the others' written in), then the rest (Muon's apply steps,
/// Adam, the EMA).
fn distributed_muon(
    ex: &mut dyn Executor,
    plan: &Plan,
    optimizer: usize,
    group: &mut crate::dist::Group,
    exchange: &mut Vec<f32>,
) -> Result<()> {
    let shards = &plan.muon_shards;
    let rank = group.rank();
    anyhow::ensure!(
        shards.len() == group.world(),
        "the plan's Muon is split into {} shards for {} ranks (build it with build_rank_plan for this world)",
        shards.len(),
        group.world()
    );
    let (first, last) = (shards[0].steps.start, shards[shards.len() - 1].steps.end);
    ex.run(Phase::Optimizer, 0..first)?;
    ex.run(Phase::Optimizer, shards[rank].steps.clone())?;
    let numel = |t: TensorId| plan.tensors[t].numel();
    let counts: Vec<usize> = shards.iter().map(|s| s.results.iter().map(|&t| numel(t)).sum()).collect();
    let own: Vec<f32> = ex.read_many(&shards[rank].results)?.concat();
    // Kept from step to step: a fresh buffer of the record's 105 MB would be paged in anew
    // every step.
    exchange.resize(counts.iter().sum(), 0.0);
    let all = &mut exchange[..];
    group.all_gather(&own, &counts, all)?;
    let mut at = 0;
    for (r, shard) in shards.iter().enumerate() {
        for &t in &shard.results {
            if r != rank {
                ex.write(t, HostData::F32(&all[at..at + numel(t)]))?;
            }
            at += numel(t);
        }
    }
    ex.run(Phase::Optimizer, last..optimizer)?;
    Ok(())
}

/// The last micro-batch's backward, with every parameter gradient replaced by its mean over
/// the ranks: the backward up to the end of each bucket is submitted, then the bucket's
/// read-back, and the bucket before it is reduced on the host (and written back) while the
/// device runs those steps.
fn backward_averaging(ex: &mut dyn Executor, backward: usize, d: &mut DataParallel<'_>) -> Result<()> {
    let mut at = 0;
    let mut in_flight: Option<(&GradBucket, PendingRead)> = None;
    for bucket in d.buckets {
        if bucket.end > at {
            ex.run(Phase::Backward, at..bucket.end)?;
            at = bucket.end;
        }
        let read = ex.begin_read_many(&bucket.grads)?;
        if let Some((done, read)) = in_flight.replace((bucket, read)) {
            average_bucket(ex, done, read, d.group)?;
        }
    }
    if at < backward {
        ex.run(Phase::Backward, at..backward)?;
    }
    if let Some((done, read)) = in_flight {
        average_bucket(ex, done, read, d.group)?;
    }
    Ok(())
}

/// Waits for a bucket's read-back, averages it over the group in one `all_reduce_mean`, and
/// writes it back.
fn average_bucket(
    ex: &mut dyn Executor,
    bucket: &GradBucket,
    read: PendingRead,
    group: &mut crate::dist::Group,
) -> Result<()> {
    let mut flat = Vec::new();
    let mut lens = Vec::with_capacity(bucket.grads.len());
    for v in read.finish()? {
        lens.push(v.len());
        flat.extend_from_slice(&v);
    }
    group.all_reduce_mean(&mut flat)?;
    let mut at = 0;
    for (&g, &n) in bucket.grads.iter().zip(&lens) {
        ex.write(g, HostData::F32(&flat[at..at + n]))?;
        at += n;
    }
    Ok(())
}
