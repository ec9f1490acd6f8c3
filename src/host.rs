//! The host's side of running a plan: which executor runs it, and what the host writes into
//! it (weights, and each batch's token ids, targets and BigramHash buckets, and for a plan
//! with a backward pass the positions of each id and bucket). The training loop and
//! evaluation both use it; it depends on neither.
use crate::config::Config;
use crate::exec::{cpu::CpuExecutor, Executor, HostData};
use crate::gpu::{GpuContext, GpuExecutor};
use crate::ops::embedding::id_index;
use crate::plan::{Plan, TensorId};
use anyhow::{anyhow, Result};
use std::sync::Arc;

/// Which executor runs the plan.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The GPU executor on an adapter (index or name substring; `None` picks the best).
    Gpu(Option<String>),
    /// The CPU reference executor (slow; for debugging).
    Cpu,
}

/// An opened backend: the CPU, or one GPU device that the executors of several plans (the
/// training plan and the evaluation plan) share, so their buffers live on the same device.
#[derive(Clone)]
pub enum Device {
    Cpu,
    Gpu(Arc<GpuContext>),
}

impl Device {
    /// Opens the backend (for the GPU: picks the adapter and creates the device).
    pub fn open(backend: &Backend) -> Result<Device> {
        Ok(match backend {
            Backend::Cpu => Device::Cpu,
            Backend::Gpu(choice) => Device::Gpu(Arc::new(GpuContext::new(choice.as_deref())?)),
        })
    }

    /// An executor for `plan` on this device.
    pub fn executor(&self, plan: &Plan) -> Result<Box<dyn Executor>> {
        Ok(match self {
            Device::Cpu => Box::new(CpuExecutor::new(plan)),
            Device::Gpu(ctx) => Box::new(GpuExecutor::new(ctx.clone(), plan)?),
        })
    }
}

/// Builds the executor for a plan on a device of its own.
pub fn make_executor(plan: &Plan, backend: &Backend) -> Result<Box<dyn Executor>> {
    Device::open(backend)?.executor(plan)
}

/// Writes f32 values (weights, saved state) into their tensors.
pub fn write_values(ex: &mut dyn Executor, values: &[(TensorId, Vec<f32>)]) -> Result<()> {
    for (id, v) in values {
        ex.write(*id, HostData::F32(v))?;
    }
    Ok(())
}

/// Writes one micro-batch's token ids and targets, the BigramHash buckets derived from the
/// ids when the model has them, and, when the plan has a backward pass, the positions of each
/// token id and bucket (`ops::embedding::id_index`, a counting sort on the host) that the
/// embedding gradients read. An id outside the vocabulary is an error naming it.
pub fn write_inputs(ex: &mut dyn Executor, plan: &Plan, cfg: &Config, ids: &[u32], targets: &[u32]) -> Result<()> {
    let io = plan.io();
    ex.write(io.ids, HostData::U32(ids))?;
    ex.write(io.targets, HostData::U32(targets))?;
    if let Some(t) = io.ids_index {
        let index = id_index(ids, cfg.model.vocab_size).map_err(|e| anyhow!("token ids of the batch: {e}"))?;
        ex.write(t, HostData::U32(&index))?;
    }
    if let Some(b) = io.bigram_ids {
        let buckets = crate::model::bigram_buckets(ids, cfg.train.seq_len, cfg.model.bigram_buckets);
        ex.write(b, HostData::U32(&buckets))?;
        if let Some(t) = io.bigram_index {
            let index = id_index(&buckets, cfg.model.bigram_buckets).map_err(|e| anyhow!("bigram buckets: {e}"))?;
            ex.write(t, HostData::U32(&index))?;
        }
    }
    Ok(())
}
