//! The host's side of running a plan: which executor runs it, and what the host writes into
//! it (weights, and each batch's token ids, targets and BigramHash buckets). The training
//! loop and evaluation both use it; it depends on neither.
use crate::config::Config;
use crate::exec::{cpu::CpuExecutor, Executor, HostData};
use crate::gpu::{GpuContext, GpuExecutor};
use crate::plan::{Plan, TensorId};
use anyhow::Result;
use std::sync::Arc;

/// Which executor runs the plan.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The GPU executor on an adapter (index or name substring; `None` picks the best).
    Gpu(Option<String>),
    /// The CPU reference executor (slow; for debugging).
    Cpu,
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

/// Writes f32 values (weights, saved state) into their tensors.
pub fn write_values(ex: &mut dyn Executor, values: &[(TensorId, Vec<f32>)]) -> Result<()> {
    for (id, v) in values {
        ex.write(*id, HostData::F32(v))?;
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
