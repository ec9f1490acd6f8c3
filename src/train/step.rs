//! One optimizer step: the parameters' initial state, the hyperparameter uniforms, and the
//! micro-batches followed by the optimizer pass.
use crate::checkpoint;
use crate::config::{Config, MatrixOptimizer};
use crate::data::TrainStream;
use crate::exec::{Executor, HostData};
use crate::host::write_inputs;
use crate::ops::adamw::AdamHyper;
use crate::ops::muon::MuonHyper;
use crate::plan::{ParamGroup, Phase, Plan, Role};
use anyhow::Result;

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

/// [`train_step`] on one rank of a group: this rank's span of every micro-batch, and the
/// parameter gradients averaged over the ranks before the optimizer pass. `cfg` is the
/// rank's config, whose `grad_accum` is its share of the step's micro-batches (so the
/// plan's 1/tokens scale is per rank and the mean over ranks is the step's mean).
pub(crate) fn train_step_on(
    ex: &mut dyn Executor,
    plan: &Plan,
    cfg: &Config,
    stream: &mut TrainStream,
    step: usize,
    lr_scale: f32,
    group: Option<&mut crate::dist::Group>,
) -> Result<()> {
    let (world, rank) = group.as_ref().map_or((1, 0), |g| (g.world(), g.rank()));
    // Parameter gradients and the loss accumulate over the micro-batches; activation
    // gradients are zeroed by the executor where the plan says (before an accumulating
    // first write, in every micro-batch).
    ex.clear(&plan.with_role(|r| matches!(r, Role::Grad | Role::Loss)))?;
    for _ in 0..cfg.train.grad_accum {
        let (x, y) = stream.next_batch(cfg.micro_tokens(), cfg.train.seq_len, world, rank)?;
        write_inputs(ex, plan, cfg, &x, &y)?;
        ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len())?;
        ex.run(Phase::Backward, 0..plan.steps(Phase::Backward).len())?;
    }
    if let Some(group) = group {
        average_gradients(ex, plan, group)?;
    }
    write_hypers(ex, plan, cfg, step, lr_scale)?;
    ex.run(Phase::Optimizer, 0..plan.steps(Phase::Optimizer).len())?;
    Ok(())
}

/// Replaces every parameter gradient by its mean over the group's ranks: read back, one
/// `all_reduce_mean` over them all, written back. (Not yet bucketed or overlapped with the
/// backward: the whole gradient set after the last micro-batch.)
fn average_gradients(ex: &mut dyn Executor, plan: &Plan, group: &mut crate::dist::Group) -> Result<()> {
    let grads = plan.with_role(|r| matches!(r, Role::Grad));
    let mut flat = Vec::new();
    let mut lens = Vec::with_capacity(grads.len());
    for v in ex.read_many(&grads)? {
        lens.push(v.len());
        flat.extend_from_slice(&v);
    }
    group.all_reduce_mean(&mut flat)?;
    let mut at = 0;
    for (&g, &n) in grads.iter().zip(&lens) {
        ex.write(g, HostData::F32(&flat[at..at + n]))?;
        at += n;
    }
    Ok(())
}
