//! Collectives between the processes of one training run.
//!
//! One process per GPU, as in the reference's torchrun launch: each rank runs the whole step
//! on its own device and the ranks average their gradients once per optimizer step. wgpu has
//! no peer-to-peer path between devices, so gradients leave each GPU through host memory, and
//! within a node the cheapest place to combine them is memory every rank maps: a
//! `/dev/shm/wgolf-<run_id>` segment ([`ShmGroup`]). The all-reduce is a reduce-scatter (each
//! rank sums its 1/P share over every rank) followed by an all-gather (each rank copies the
//! whole result out), in chunks of a fixed staging size, with one atomic sequence counter per
//! rank in the segment's header as the only synchronization.
//!
//! The sum runs in a fixed order, rank 0 first, for every element, and every rank copies the
//! same result out, so the averaged gradients are bit-identical on every rank and from run to
//! run: the ranks' weights never drift apart, and a run resumed from a checkpoint repeats the
//! uninterrupted one.
//!
//! Failure is bounded: every wait has a timeout and checks its peers' processes, so a rank
//! that dies or hangs makes the others fail with an error naming it and what it was doing
//! ([`DistError`]). The first error is written into the segment, so the rest of the group
//! fails at once with the same reason. A rank whose digest (config, data, plan) differs from
//! rank 0's is refused when the group forms. The segment's name carries the run id; a stale
//! one from a crashed run is cleared by the next rank 0, and the name is unlinked as soon as
//! every rank has mapped it, so nothing is left behind however a run ends.
//!
//! Across nodes, MPI (feature `mpi`, `mpi.rs`): under `mpirun` the gradients' mean is
//! hierarchical, the node's reduce-scatter through its segment, one `MPI_Allreduce` of each
//! rank's share between the ranks of equal local rank on every node, then the node's
//! all-gather, so only 1/P of the gradients per rank crosses the network and the node's
//! traffic stays in shared memory ([`MpiNodes`] says what a node is). The small collectives
//! (the wall-clock agreement, validation sums, broadcasts) are MPI's over the whole world.
//!
//! Linux only (/dev/shm, /proc): elsewhere `ShmGroup` has no values and `join` fails saying
//! so (`unsupported.rs`), so single-process builds are unaffected.

mod error;
mod group;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(target_os = "linux")]
mod shm;
#[cfg(not(target_os = "linux"))]
#[path = "unsupported.rs"]
mod shm;

pub use error::DistError;
pub use group::Group;
#[cfg(feature = "mpi")]
pub use mpi::MpiGroup;
pub use shm::{segment_path, ShmGroup};

use std::time::Duration;

/// The longest digest a rank may present (hex digests of config, data and plan fit easily).
pub const MAX_DIGEST_BYTES: usize = 192;

/// The default chunk: 1 Mi f32 (4 MiB) per slot, so a group of 8 maps 36 MiB whatever the
/// size of the gradients, and a 26.8M-value all-reduce runs in 26 chunks. Chunks this size
/// stay in the last-level cache between the copy-in and the reduction: on the 2-core
/// development machine 1 Mi ran 26.8M values in 89 ms with 2 ranks against 131 ms with 4 Mi
/// and 146 ms with 16 Mi (docs/perf.md).
pub const DEFAULT_CHUNK_ELEMS: usize = 1 << 20;

/// What a node is, for the hierarchical mean of an MPI job (`WGOLF_MPI_RANKS_PER_NODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MpiNodes {
    /// The ranks that can share memory, as MPI finds them (`MPI_Comm_split_type`): a real
    /// node. The default.
    Shared,
    /// Every `n` consecutive ranks form a node: 1 sends every mean through MPI alone (the flat
    /// path), more simulates nodes on one machine (how the tests run the cross-node path).
    Consecutive(usize),
}

/// How a rank joins: the staging chunk and the bound on every wait.
#[derive(Clone, Debug)]
pub struct JoinOptions {
    /// f32 elements per staging slot; larger buffers are reduced in chunks of this size. Every
    /// rank must pass the same value (rank 0's segment records it and the others check).
    pub chunk_elems: usize,
    /// The longest any one wait (joining, or a barrier inside a collective) may take before the
    /// rank that has not arrived is declared hung.
    pub timeout: Duration,
}

impl JoinOptions {
    /// The default chunk with the given timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        JoinOptions { chunk_elems: DEFAULT_CHUNK_ELEMS, timeout }
    }
}
