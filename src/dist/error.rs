//! The one error type of the distributed module.
//!
//! Every variant that concerns a peer names its rank, its pid and what it was doing, and
//! says what this rank was waiting for, so that the first line a launcher prints after a
//! crash says which process to look at.

use std::path::PathBuf;

/// Everything that can go wrong while forming a shared-memory group or running a
/// collective in it.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The caller asked for something impossible (rank outside the world, a bad run id, ...).
    #[error("shared-memory group: {0}")]
    InvalidArgument(String),

    /// An operating-system call on the segment failed (`op` says which).
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        /// The segment (or its temporary sibling).
        path: PathBuf,
        /// What was being attempted, in a word or two.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// posix_fallocate could not reserve the segment: /dev/shm is full or too small. Failing
    /// here, at join, replaces a SIGBUS at the first write into an unbacked page.
    #[error(
        "{}: cannot reserve {bytes} bytes of shared memory ({source}); /dev/shm is full or too small: \
         free space there (`df -h /dev/shm`) or lower the collective's chunk size",
        path.display()
    )]
    NoSpace {
        /// The segment.
        path: PathBuf,
        /// The size asked for.
        bytes: u64,
        /// The errno of posix_fallocate.
        #[source]
        source: std::io::Error,
    },

    /// The segment exists and a process recorded in it is alive: another run uses this run id.
    #[error(
        "{}: in use by pid {pid} ({who}) of a live run; is another run using run id `{run_id}`? \
         (stop it, or give this run another id)",
        path.display()
    )]
    InUse {
        /// The segment.
        path: PathBuf,
        /// The run id asked for.
        run_id: String,
        /// A live process recorded in the segment.
        pid: u32,
        /// Its role there ("rank 2", "the creator").
        who: String,
    },

    /// The segment was created for another world size or chunk size than this rank expects:
    /// the ranks were started with different launch parameters.
    #[error(
        "{}: the segment was created by rank 0 for world {found_world} and chunk {found_chunk} elements; \
         rank {rank} was started with world {world} and chunk {chunk}",
        path.display()
    )]
    LayoutMismatch {
        /// The segment.
        path: PathBuf,
        /// This rank.
        rank: usize,
        /// The world size this rank expects.
        world: usize,
        /// The chunk size this rank expects.
        chunk: usize,
        /// The world size in the segment.
        found_world: usize,
        /// The chunk size in the segment.
        found_chunk: usize,
    },

    /// Two processes claim the same rank.
    #[error("rank {rank} is already taken by pid {pid}: two processes were started with the same rank")]
    RankTaken {
        /// The rank claimed twice.
        rank: usize,
        /// The process already holding it.
        pid: u32,
    },

    /// Not every rank joined before the timeout.
    #[error("{} did not join {} within {secs:.1} s (rank {me} waited){}", list_ranks(missing), path.display(), hint)]
    JoinTimeout {
        /// The segment.
        path: PathBuf,
        /// The ranks that never joined.
        missing: Vec<usize>,
        /// How long this rank waited.
        secs: f64,
        /// The rank reporting.
        me: usize,
        /// What else is known (a stale segment seen, ...), with a leading "; " or empty.
        hint: String,
    },

    /// A rank's digest (config, data, plan) differs from rank 0's.
    #[error("{}", digest_message(rank0, mismatches))]
    DigestMismatch {
        /// Rank 0's digest.
        rank0: String,
        /// (rank, digest) of every rank that differs.
        mismatches: Vec<(usize, String)>,
    },

    /// A peer process died (kill -9, a crash, an exit without leaving the group).
    #[error("rank {rank} (pid {pid}) died while it was {doing}; rank {me} was waiting for it in {waiting}")]
    PeerDied {
        /// The dead rank.
        rank: usize,
        /// Its pid.
        pid: u32,
        /// Its last recorded activity.
        doing: String,
        /// The rank reporting.
        me: usize,
        /// What the reporting rank was doing.
        waiting: String,
    },

    /// A peer is alive but did not arrive within the timeout.
    #[error(
        "rank {rank} (pid {pid}, process state {state}) did not arrive within {secs:.1} s: it is {doing}, \
         last heartbeat {heartbeat_secs:.1} s ago; rank {me} was waiting for it in {waiting}"
    )]
    PeerHung {
        /// The late rank.
        rank: usize,
        /// Its pid.
        pid: u32,
        /// Its process state from /proc ("S (sleeping)", "T (stopped)", ...).
        state: String,
        /// Its last recorded activity.
        doing: String,
        /// Seconds since its last heartbeat.
        heartbeat_secs: f64,
        /// How long this rank waited.
        secs: f64,
        /// The rank reporting.
        me: usize,
        /// What the reporting rank was doing.
        waiting: String,
    },

    /// A peer dropped its group (returned from its work, usually with an error of its own)
    /// while this rank still waited for it.
    #[error("rank {rank} (pid {pid}) left the group after it was {doing}; rank {me} was waiting for it in {waiting}")]
    PeerLeft {
        /// The rank that left.
        rank: usize,
        /// Its pid.
        pid: u32,
        /// Its last recorded activity.
        doing: String,
        /// The rank reporting.
        me: usize,
        /// What the reporting rank was doing.
        waiting: String,
    },

    /// The ranks called different collectives (or the same one with different lengths).
    #[error("the ranks disagree on the collective: {0}")]
    CollectiveMismatch(String),

    /// Some rank aborted the group (its own error, or `abort`).
    #[error("rank {rank} aborted the group: {reason}")]
    Aborted {
        /// The rank that aborted first.
        rank: usize,
        /// Its reason.
        reason: String,
    },
}

impl DistError {
    pub(crate) fn io(path: &std::path::Path, op: &'static str, source: std::io::Error) -> Self {
        DistError::Io { path: path.to_path_buf(), op, source }
    }
}

fn list_ranks(ranks: &[usize]) -> String {
    let names: Vec<String> = ranks.iter().map(|r| r.to_string()).collect();
    match ranks.len() {
        1 => format!("rank {}", names[0]),
        _ => format!("ranks {}", names.join(", ")),
    }
}

fn digest_message(rank0: &str, mismatches: &[(usize, String)]) -> String {
    let parts: Vec<String> = mismatches
        .iter()
        .map(|(rank, digest)| format!("rank {rank}'s digest `{digest}` differs from rank 0's `{rank0}`"))
        .collect();
    format!("{}: the ranks' config, data or plan differ, so the group is refused", parts.join("; "))
}
