//! The ranks' collectives through MPI (feature `mpi`): `wgolf train` started by `mpirun`
//! (OpenMPI, MPICH: any launcher whose processes share an `MPI_COMM_WORLD`), across nodes or
//! within one.
//!
//! The gradients' mean is hierarchical: the ranks of a node ([`MpiNodes`]) form a
//! [`ShmGroup`] whose reduce-scatter sums each rank's share over the node, one
//! `MPI_Allreduce` of that share between the ranks of equal local rank (one per node) makes
//! it the sum over the world, and the node's all-gather copies the mean out. Only 1/P of the
//! gradients per rank crosses between nodes, and within a node the shared-memory path is
//! 3.5-5.5x faster than MPI's own (docs/perf.md). Where every node has one rank, or the nodes
//! differ in size, the mean is one `MPI_Allreduce` over the world (the flat path). The other
//! collectives are small and go through the world communicator: `MPI_Allreduce`s of f64 (max,
//! sum) and an `MPI_Bcast` of rank 0's bytes.
//!
//! Failure follows MPI: a collective blocks until every rank joins it, and a rank that dies
//! ends the job through the launcher (OpenMPI's `mpirun` kills the others and exits non-zero);
//! [`MpiGroup::abort`] is `MPI_Abort`. Within a node the segment's bounded waits also name a
//! dead or hung peer. The sum between nodes runs in the library's order, not rank order, but
//! one library gives every rank the same result, so the ranks' weights stay equal (checked
//! before every checkpoint, `train/agreement.rs`).
use super::{DistError, MpiNodes, ShmGroup};
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::*;
use mpi::Count;
use std::time::Duration;

/// A rank of `MPI_COMM_WORLD`. Holds the MPI environment: `MPI_Finalize` runs when it drops.
pub struct MpiGroup {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// The hierarchical mean's parts; None on the flat path.
    nodes: Option<Nodes>,
    /// How the ranks were grouped, for the log.
    layout: String,
    // Dropped last: the communicators and the segment go before `MPI_Finalize`.
    _universe: mpi::environment::Universe,
}

/// This rank's node and its peers of equal local rank on the other nodes.
struct Nodes {
    shm: ShmGroup,
    /// The ranks of this rank's local rank, one per node; None when there is one node.
    across: Option<SimpleCommunicator>,
}

impl MpiGroup {
    /// Initializes MPI and checks that every rank presents rank 0's `digest` (config, plan and
    /// data, as [`ShmGroup::join`](super::ShmGroup::join) does): on a mismatch every rank
    /// fails, the differing ones naming both digests.
    ///
    /// Then groups the ranks into nodes as `nodes` says; the ranks of a node of more than one
    /// join a shared-memory segment (every wait bounded by `timeout`) for the hierarchical mean.
    pub fn join(digest: &str, nodes: MpiNodes, timeout: Duration) -> Result<Self, DistError> {
        let universe = mpi::initialize()
            .ok_or_else(|| DistError::InvalidArgument("MPI was already initialized in this process".into()))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let mut group = MpiGroup { world, rank, size, nodes: None, layout: String::new(), _universe: universe };
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
        group.form_nodes(digest, nodes, timeout)?;
        Ok(group)
    }

    /// Splits the world into nodes and, where they are alike and hold more than one rank,
    /// joins this rank's node segment and the communicator between nodes.
    fn form_nodes(&mut self, digest: &str, nodes: MpiNodes, timeout: Duration) -> Result<(), DistError> {
        let rank = self.rank;
        let key = rank as i32;
        let node = match nodes {
            MpiNodes::Shared => self.world.split_shared(key),
            MpiNodes::Consecutive(0) => {
                return Err(DistError::InvalidArgument("WGOLF_MPI_RANKS_PER_NODE=0: expected at least 1".into()))
            }
            MpiNodes::Consecutive(n) => {
                self.world.split_by_color_with_key(Color::with_value((rank / n) as i32), key).ok_or_else(|| {
                    DistError::InvalidArgument(format!("MPI rank {rank}: splitting the world into nodes"))
                })?
            }
        };
        let (local, local_size) = (node.rank() as usize, node.size() as usize);
        // Node count, and whether every node has the same number of ranks (the shares of
        // equal local rank must be the same elements on every node).
        let mut stats = [f64::from(u8::from(local == 0)), local_size as f64, -(local_size as f64)];
        let mut summed = [stats[0]];
        self.all_reduce_sum_f64(&mut summed)?;
        self.all_reduce_max_f64(&mut stats[1..])?;
        let count = summed[0] as usize;
        let (largest, smallest) = (stats[1] as usize, (-stats[2]) as usize);
        if largest != smallest {
            self.layout = format!(
                "{count} nodes of {smallest} to {largest} ranks: unequal, so every mean is one MPI_Allreduce over the world"
            );
            return Ok(());
        }
        if local_size == 1 {
            self.layout = format!("{count} nodes of 1 rank: every mean is one MPI_Allreduce over the world");
            return Ok(());
        }
        // The node's segment name: its first rank's, unique per launch, shared over the node.
        let mut id = [0u8; 64];
        if local == 0 {
            let millis =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            let name = format!("mpi-{}-{millis}-r{rank}", std::process::id());
            id[..name.len()].copy_from_slice(name.as_bytes());
        }
        node.process_at_rank(0).broadcast_into(&mut id[..]);
        let run_id = String::from_utf8_lossy(&id).trim_end_matches('\0').to_string();
        let shm = ShmGroup::join(&run_id, local, local_size, digest, timeout)?;
        let across = (count > 1).then(|| {
            self.world
                .split_by_color_with_key(Color::with_value(local as i32), key)
                .expect("every rank passes a defined color")
        });
        self.layout = if count > 1 {
            format!(
                "{count} nodes of {local_size} ranks: shared memory within a node, MPI_Allreduce of each rank's share between nodes"
            )
        } else {
            format!("1 node of {local_size} ranks: every mean through shared memory")
        };
        self.nodes = Some(Nodes { shm, across });
        Ok(())
    }

    /// How the ranks are grouped and which path the gradients' mean takes.
    pub fn layout(&self) -> &str {
        &self.layout
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.size
    }

    /// Replaces `values` on every rank by their mean over the ranks: hierarchical (the node's
    /// sum, the sum over nodes, divided by P), or on the flat path the world's sum times 1/P.
    pub fn all_reduce_mean(&mut self, values: &mut [f32]) -> Result<(), DistError> {
        if let Some(Nodes { shm, across }) = self.nodes.as_mut() {
            let ranks = self.size as f32;
            // Every rank of the world arrives before the node's bounded waits start, so a node
            // that is late as a whole (a slower step) is not taken for a hung local peer.
            if let Some(c) = across.as_ref() {
                c.barrier();
            }
            return shm.all_reduce_mean_across(values, &mut |share: &mut [f32]| {
                if let Some(c) = across.as_ref() {
                    let send = share.to_vec();
                    c.all_reduce_into(&send[..], share, SystemOperation::sum());
                }
                share.iter_mut().for_each(|v| *v /= ranks);
                Ok(())
            });
        }
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

    /// Every rank's `own` values, concatenated in rank order into `out` (`counts[r]` of rank
    /// r's): one `MPI_Allgatherv` over the world.
    pub fn all_gather(&mut self, own: &[f32], counts: &[usize], out: &mut [f32]) -> Result<(), DistError> {
        let fits = |c: usize| Count::try_from(c).ok();
        let total: usize = counts.iter().sum();
        let (Some(counts), Some(_)) = (counts.iter().map(|&c| fits(c)).collect::<Option<Vec<Count>>>(), fits(total))
        else {
            return Err(DistError::InvalidArgument(format!("all_gather of {total} values: more than MPI counts hold")));
        };
        if counts.len() != self.size || own.len() != counts[self.rank] as usize || out.len() != total {
            return Err(DistError::InvalidArgument(format!(
                "all_gather on rank {} of {}: {} values for counts {counts:?} into {}",
                self.rank,
                self.size,
                own.len(),
                out.len()
            )));
        }
        let displs: Vec<Count> = counts.iter().scan(0, |at, &c| Some(std::mem::replace(at, *at + c))).collect();
        let mut parts = PartitionMut::new(out, counts, &displs[..]);
        self.world.all_gather_varcount_into(own, &mut parts);
        Ok(())
    }

    pub fn barrier(&mut self) -> Result<(), DistError> {
        self.world.barrier();
        Ok(())
    }

    /// `MPI_Abort`: the launcher ends every rank of the job (this call does not return).
    pub fn abort(&mut self, reason: &str) {
        eprintln!("MPI rank {} of {}: aborting the job: {reason}", self.rank, self.size);
        if let Some(nodes) = self.nodes.as_mut() {
            // The node's peers stop at their next wait with this reason.
            nodes.shm.abort(reason);
        }
        self.world.abort(1)
    }
}
