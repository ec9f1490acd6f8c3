//! Executors replay a [`Plan`](crate::plan::Plan): the CPU executor interprets it with the
//! reference ops, the GPU executor (in [`crate::gpu`]) with the WGSL kernels. Training and
//! evaluation drive either through this trait. Every method that can meet a lost device, a
//! failed map or a validation error returns an [`ExecError`] that names the step or tensor.
pub mod compare;
pub mod cpu;

use crate::plan::{Phase, TensorId};

/// Host data written into a tensor.
pub enum HostData<'a> {
    F32(&'a [f32]),
    U32(&'a [u32]),
}

impl HostData<'_> {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::U32(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What went wrong while replaying a plan.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The device is gone (driver reset, GPU removed or hung, or out of memory on some
    /// drivers): nothing on it can be trusted any more.
    #[error("the GPU device was lost while {during}: {message}")]
    DeviceLost { during: String, message: String },
    /// A step (or the range of steps around it) failed validation or ran out of memory.
    #[error("{step}: {message}")]
    Step { step: String, message: String },
    /// Reading a tensor back failed.
    #[error("reading {tensor} back: {message}")]
    Readback { tensor: String, message: String },
    /// Host data that does not fit the tensor it is written to.
    #[error("writing {tensor}: {message}")]
    Write { tensor: String, message: String },
}

/// What the training loop and the checks need from an executor.
pub trait Executor {
    /// Writes host data into a tensor (on the GPU it lands before the next run).
    fn write(&mut self, t: TensorId, data: HostData<'_>) -> Result<(), ExecError>;
    /// Reads an f32 tensor back (waits for pending GPU work). A tensor that shares storage
    /// ([`Plan::is_shared`](crate::plan::Plan::is_shared)) holds its value only from the
    /// step that writes it to the next write of another tensor of its slot.
    fn read(&mut self, t: TensorId) -> Result<Vec<f32>, ExecError>;
    /// [`Executor::read`] of several tensors, in order (on the GPU in one submission and one
    /// wait, which is what makes reading every gradient of a step cheap).
    fn read_many(&mut self, ts: &[TensorId]) -> Result<Vec<Vec<f32>>, ExecError> {
        ts.iter().map(|&t| self.read(t)).collect()
    }
    /// Starts [`Executor::read_many`] without waiting for it: the work submitted after this
    /// call may run on the device while the host waits in [`PendingRead::finish`] (how the
    /// gradients of a data-parallel step are reduced bucket by bucket while the backward of
    /// the layers before them runs). Executors that do not run asynchronously read at once.
    fn begin_read_many(&mut self, ts: &[TensorId]) -> Result<PendingRead, ExecError> {
        Ok(PendingRead::ready(self.read_many(ts)?))
    }
    /// Zeroes tensors before the next run (for what accumulates across runs: parameter
    /// gradients, the loss, optimizer state; the plan zeroes activation gradients itself).
    fn clear(&mut self, ts: &[TensorId]) -> Result<(), ExecError>;
    /// Runs the steps `range` of a phase (the whole phase with `0..len`), each preceded by
    /// the plan's clears for it ([`Plan::clears_before`](crate::plan::Plan::clears_before)).
    fn run(&mut self, phase: Phase, range: std::ops::Range<usize>) -> Result<(), ExecError>;
    /// Waits until all submitted work is done (for timing).
    fn sync(&mut self) -> Result<(), ExecError> {
        Ok(())
    }
    /// A short description, e.g. the adapter name.
    fn describe(&self) -> String;
    /// The device in full (adapter, backend, type, driver), for run reports.
    fn device(&self) -> String {
        self.describe()
    }
}

/// A read-back under way ([`Executor::begin_read_many`]): its values, in the order asked,
/// once [`PendingRead::finish`] has waited for the copy.
pub struct PendingRead(Box<dyn FnOnce() -> Result<Vec<Vec<f32>>, ExecError>>);

impl PendingRead {
    /// A read whose values are already on the host.
    pub fn ready(values: Vec<Vec<f32>>) -> Self {
        PendingRead(Box::new(move || Ok(values)))
    }
    /// A read that `wait` completes.
    pub fn new(wait: impl FnOnce() -> Result<Vec<Vec<f32>>, ExecError> + 'static) -> Self {
        PendingRead(Box::new(wait))
    }
    /// Waits for the copy and returns the values.
    pub fn finish(self) -> Result<Vec<Vec<f32>>, ExecError> {
        (self.0)()
    }
}

/// Runs a whole phase.
pub fn run_phase(ex: &mut dyn Executor, plan: &crate::plan::Plan, phase: Phase) -> Result<(), ExecError> {
    ex.run(phase, 0..plan.steps(phase).len())
}
