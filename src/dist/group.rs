//! The group a training run's collectives go through: the node's shared-memory segment
//! ([`ShmGroup`], `wgolf train --nproc-per-node N` and torchrun-style launchers) or MPI's
//! world communicator (`MpiGroup`, feature `mpi`, under `mpirun`). Both give every rank the
//! same results; the training loop does not know which one runs.
#[cfg(feature = "mpi")]
use super::mpi::MpiGroup;
use super::{DistError, ShmGroup};

/// One rank's membership of the run's group.
pub enum Group {
    Shm(ShmGroup),
    #[cfg(feature = "mpi")]
    Mpi(MpiGroup),
}

/// Calls the same method on whichever group this is.
macro_rules! each {
    ($self:ident, $g:ident => $call:expr) => {
        match $self {
            Group::Shm($g) => $call,
            #[cfg(feature = "mpi")]
            Group::Mpi($g) => $call,
        }
    };
}

impl Group {
    pub fn rank(&self) -> usize {
        each!(self, g => g.rank())
    }
    pub fn world(&self) -> usize {
        each!(self, g => g.world())
    }
    /// Replaces `values` on every rank by their mean over the ranks, the same on every rank.
    pub fn all_reduce_mean(&mut self, values: &mut [f32]) -> Result<(), DistError> {
        each!(self, g => g.all_reduce_mean(values))
    }
    pub fn all_reduce_max_f64(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        each!(self, g => g.all_reduce_max_f64(values))
    }
    pub fn all_reduce_sum_f64(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        each!(self, g => g.all_reduce_sum_f64(values))
    }
    /// Every rank's `own` values (`counts[r]` of rank r's, the same list on every rank),
    /// concatenated in rank order into `out` (their sum long), on every rank.
    pub fn all_gather(&mut self, own: &[f32], counts: &[usize], out: &mut [f32]) -> Result<(), DistError> {
        each!(self, g => g.all_gather(own, counts, out))
    }
    /// Replaces `bytes` on every rank by rank 0's.
    pub fn broadcast_bytes(&mut self, bytes: &mut Vec<u8>) -> Result<(), DistError> {
        each!(self, g => g.broadcast_bytes(bytes))
    }
    pub fn barrier(&mut self) -> Result<(), DistError> {
        each!(self, g => g.barrier())
    }
    /// Fails the whole group with `reason`.
    pub fn abort(&mut self, reason: &str) {
        each!(self, g => g.abort(reason))
    }
}
