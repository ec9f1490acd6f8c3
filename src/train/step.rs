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
