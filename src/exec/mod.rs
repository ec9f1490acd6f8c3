//! Executors replay a [`Plan`](crate::plan::Plan): the CPU executor interprets it with the
//! reference ops, the GPU executor (in [`crate::gpu`]) with the WGSL kernels. Training and
//! evaluation drive either through this trait.
pub mod compare;
pub mod cpu;

use crate::plan::{Phase, TensorId};

/// Host data written into a tensor.
pub enum HostData<'a> {
    F32(&'a [f32]),
    U32(&'a [u32]),
}

/// What the training loop and the checks need from an executor.
pub trait Executor {
    /// Writes host data into a tensor (on the GPU it lands before the next run).
    fn write(&mut self, t: TensorId, data: HostData<'_>);
    /// Reads an f32 tensor back (waits for pending GPU work).
    fn read(&mut self, t: TensorId) -> Vec<f32>;
    /// Zeroes tensors before the next run.
    fn clear(&mut self, ts: &[TensorId]);
    /// Runs the steps `range` of a phase (the whole phase with `0..len`).
    fn run(&mut self, phase: Phase, range: std::ops::Range<usize>);
    /// Waits until all submitted work is done (for timing).
    fn sync(&mut self) {}
    /// A short description, e.g. the adapter name.
    fn describe(&self) -> String;
}
