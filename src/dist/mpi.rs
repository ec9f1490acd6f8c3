//! The ranks' collectives through MPI (feature `mpi`): `wgolf train` started by `mpirun`
//! (OpenMPI, MPICH: any launcher whose processes share an `MPI_COMM_WORLD`), across nodes or
//! within one. Every collective of [`ShmGroup`](super::ShmGroup) has its MPI counterpart on
//! the world communicator: the gradients' mean is one `MPI_Allreduce` (sum) scaled by 1/P,
//! the wall-clock agreement and the validation sums are `MPI_Allreduce`s of f64 (max, sum),
//! and rank 0's bytes are an `MPI_Bcast`.
//!
//! What this does not do yet: the hierarchical all-reduce (the node's shared-memory
//! reduce-scatter, an `MPI_Allreduce` of each shard among the ranks of equal local rank, the
//! shared-memory all-gather). Under `mpirun` every collective is MPI's, so ranks on one node
//! take MPI's own shared-memory transport; that is also the switch the tests use to run the
//! MPI path between ranks that share a node.
//!
//! Failure follows MPI: a collective blocks until every rank joins it, and a rank that dies
//! ends the job through the launcher (OpenMPI's `mpirun` kills the others and exits non-zero);
//! [`MpiGroup::abort`] is `MPI_Abort`. The sum's order is the library's, not rank order, but
//! one library gives every rank the same result, so the ranks' weights stay equal (checked
//! before every checkpoint, `train/agreement.rs`).
use super::DistError;
use mpi::collective::SystemOperation;
use mpi::traits::*;

/// A rank of `MPI_COMM_WORLD`. Holds the MPI environment: `MPI_Finalize` runs when it drops.
pub struct MpiGroup {
    world: mpi::topology::SimpleCommunicator,
    rank: usize,
    size: usize,
    _universe: mpi::environment::Universe,
}

impl MpiGroup {
    /// Initializes MPI and checks that every rank presents rank 0's `digest` (config, plan and
    /// data, as [`ShmGroup::join`](super::ShmGroup::join) does): on a mismatch every rank
    /// fails, the differing ones naming both digests.
    pub fn join(digest: &str) -> Result<Self, DistError> {
        let universe = mpi::initialize()
            .ok_or_else(|| DistError::InvalidArgument("MPI was already initialized in this process".into()))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let mut group = MpiGroup { world, rank, size, _universe: universe };
        let mut theirs = digest.as_bytes().to_vec();
        group.broadcast_bytes(&mut theirs)?;
        let mine_differs = theirs != digest.as_bytes();
        let mut any = [f64::from(u8::from(mine_differs))];
        group.all_reduce_max_f64(&mut any)?;
        if mine_differs {
            return Err(DistError::InvalidArgument(format!(
                "MPI rank {rank} of {size}: this rank's config, plan or data ({digest}) differs from rank 0's ({})",
                String::from_utf8_lossy(&theirs)
            )));
        }
        if any[0] > 0.0 {
            return Err(DistError::InvalidArgument(format!(
                "MPI rank {rank} of {size}: another rank's config, plan or data differs from rank 0's (its error says how)"
            )));
        }
        Ok(group)
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.size
    }

    /// Replaces `values` on every rank by their mean over the ranks (the sum, then times 1/P).
    pub fn all_reduce_mean(&mut self, values: &mut [f32]) -> Result<(), DistError> {
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, SystemOperation::sum());
        let inv = 1.0 / self.size as f32;
        values.iter_mut().for_each(|v| *v *= inv);
        Ok(())
    }

    /// Replaces `values` by their element-wise maximum over the ranks.
    pub fn all_reduce_max_f64(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, SystemOperation::max());
        Ok(())
    }

    /// Replaces `values` by their element-wise sum over the ranks.
    pub fn all_reduce_sum_f64(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    /// Replaces `bytes` on every rank by rank 0's (its length first, then the bytes).
    pub fn broadcast_bytes(&mut self, bytes: &mut Vec<u8>) -> Result<(), DistError> {
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
        Ok(())
    }

    pub fn barrier(&mut self) -> Result<(), DistError> {
        self.world.barrier();
        Ok(())
    }

    /// `MPI_Abort`: the launcher ends every rank of the job (this call does not return).
    pub fn abort(&mut self, reason: &str) {
        eprintln!("MPI rank {} of {}: aborting the job: {reason}", self.rank, self.size);
        self.world.abort(1)
    }
}
