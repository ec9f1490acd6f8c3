//! The shared-memory group: one `/dev/shm/wgolf-<run_id>` segment mapped by every rank of a
//! node, and the collectives over it.
//!
//! Layout (every region page-aligned):
//!
//! ```text
//! Header      magic, version, world, chunk size, creator pid + start time, abort record
//! RankSlot[P] per rank: pid + start time, joined/left, barrier sequence number, heartbeat,
//!             what it is doing (collective, index, chunk), its digest
//! data[P]     one staging slot per rank, `chunk` f32 each
//! result      one slot, `chunk` f32: the reduced chunk every rank copies out
//! ```
//!
//! Synchronization is one counter per rank: a barrier is "store my sequence number + 1
//! (Release), wait until every rank's is at least that (Acquire)". Every collective is a
//! fixed sequence of such barriers, so ranks stay in lock step, and the first barrier of each
//! collective also checks that every rank called the same collective with the same length.
//!
//! Waiting spins briefly, then yields, then sleeps in short naps; every few milliseconds it
//! refreshes this rank's heartbeat, checks the abort record, checks that every peer process
//! is alive (kill(pid, 0) and /proc/<pid>/stat: a killed child of a launcher that has not
//! reaped it yet is a zombie, alive to kill(2)), and gives up at the timeout. An error found
//! while waiting is written into the abort record, so every other rank fails at its next
//! check with the same reason instead of at its own timeout.

use super::{DistError, JoinOptions, MAX_DIGEST_BYTES};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// Where segments live: a RAM-backed tmpfs on every Linux.
const SHM_DIR: &str = "/dev/shm";
const MAGIC: u64 = u64::from_le_bytes(*b"wgolfshm");
const VERSION: u32 = 1;
const PAGE: usize = 4096;
const REASON_BYTES: usize = 512;
/// The smallest chunk: broadcasts carry an 8-byte length in the first chunk.
const MIN_CHUNK_ELEMS: usize = 64;
/// How often a waiting rank checks its peers' processes and the deadline.
const CHECK_EVERY: Duration = Duration::from_millis(5);

#[repr(C)]
struct Header {
    /// Written last (Release) by the creator, before the segment gets its public name.
    magic: AtomicU64,
    version: AtomicU32,
    world: AtomicU32,
    chunk_elems: AtomicU64,
    creator_pid: AtomicU32,
    _pad: AtomicU32,
    creator_start: AtomicU64,
    /// 0: no abort; 1: a rank is writing its reason; 2: the reason is complete.
    abort_state: AtomicU32,
    abort_rank: AtomicU32,
    abort_len: AtomicU32,
    _pad2: AtomicU32,
    abort_reason: [AtomicU8; REASON_BYTES],
}

/// One rank's record. Aligned to 128 bytes so that ranks' counters never share a cache line.
#[repr(C, align(128))]
struct RankSlot {
    pid: AtomicU32,
    /// 0: not yet; 1: joined (pid, start time and digest are valid); 2: left (dropped the group).
    joined: AtomicU32,
    start_time: AtomicU64,
    /// Barriers this rank has arrived at.
    seq: AtomicU64,
    /// CLOCK_MONOTONIC milliseconds (system-wide, so comparable between processes).
    heartbeat_ms: AtomicU64,
    /// A `Doing` code.
    doing: AtomicU32,
    /// The collective's kind (an `Op` code), set before its first barrier.
    op_kind: AtomicU32,
    /// Its length in elements (bytes for a broadcast's root, `u64::MAX` elsewhere).
    op_len: AtomicU64,
    /// How many collectives this rank has started.
    op_index: AtomicU64,
    chunk: AtomicU32,
    chunks: AtomicU32,
    digest_len: AtomicU32,
    _pad: AtomicU32,
    digest: [AtomicU8; MAX_DIGEST_BYTES],
}

const JOINED: u32 = 1;
const LEFT: u32 = 2;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
enum Op {
    None = 0,
    Mean = 1,
    MaxF64 = 2,
    SumF64 = 3,
    Broadcast = 4,
    Barrier = 5,
    Gather = 6,
}

impl Op {
    fn from_code(code: u32) -> Op {
        match code {
            1 => Op::Mean,
            2 => Op::MaxF64,
            3 => Op::SumF64,
            4 => Op::Broadcast,
            5 => Op::Barrier,
            6 => Op::Gather,
            _ => Op::None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::None => "no collective",
            Op::Mean => "all_reduce_mean",
            Op::MaxF64 => "all_reduce_max_f64",
            Op::SumF64 => "all_reduce_sum_f64",
            Op::Broadcast => "broadcast_bytes",
            Op::Barrier => "barrier",
            Op::Gather => "all_gather",
        }
    }
}

/// What a rank is doing, for the messages about it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
enum Doing {
    Joining = 0,
    Between = 1,
    CopyIn = 2,
    Reduce = 3,
    CopyOut = 4,
    Waiting = 5,
    Failed = 6,
}

impl Doing {
    fn from_code(code: u32) -> Doing {
        match code {
            1 => Doing::Between,
            2 => Doing::CopyIn,
            3 => Doing::Reduce,
            4 => Doing::CopyOut,
            5 => Doing::Waiting,
            6 => Doing::Failed,
            _ => Doing::Joining,
        }
    }
}

/// A mapped segment and the offsets of its regions.
struct Segment {
    map: memmap2::MmapMut,
    world: usize,
    chunk_elems: usize,
    slots_offset: usize,
    data_offset: usize,
    slot_bytes: usize,
}

// SAFETY: the mapping is only accessed through atomics and through regions that the barrier
// protocol gives to one writer at a time; moving the handle to another thread (a thread that
// reduces gradient buckets while the backward runs) is sound.
unsafe impl Send for Segment {}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// The byte offsets of the slots, the data and the total size for a world and chunk size.
fn layout(world: usize, chunk_elems: usize) -> Option<(usize, usize, usize, usize)> {
    let slots_offset = round_up(std::mem::size_of::<Header>(), 128);
    let data_offset = round_up(slots_offset.checked_add(world.checked_mul(std::mem::size_of::<RankSlot>())?)?, PAGE);
    let slot_bytes = round_up(chunk_elems.checked_mul(4)?, PAGE);
    let total = data_offset.checked_add(slot_bytes.checked_mul(world.checked_add(1)?)?)?;
    Some((slots_offset, data_offset, slot_bytes, total))
}

impl Segment {
    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least `data_offset` bytes, page-aligned, and every field of
        // Header is an atomic for which all-zero bytes are a valid value.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    fn slot(&self, rank: usize) -> &RankSlot {
        assert!(rank < self.world);
        // SAFETY: as for `header`; slots lie between `slots_offset` and `data_offset`, aligned.
        unsafe {
            &*(self.map.as_ptr().add(self.slots_offset + rank * std::mem::size_of::<RankSlot>()) as *const RankSlot)
        }
    }

    /// The staging slot of `rank`, or the result slot for `rank == world`.
    fn data_ptr(&self, slot: usize) -> *mut u8 {
        assert!(slot <= self.world);
        // SAFETY: in bounds by `layout`.
        unsafe { (self.map.as_ptr() as *mut u8).add(self.data_offset + slot * self.slot_bytes) }
    }

    /// A mapped segment's header, checked only for size and magic (for stale-segment checks).
    fn open(file: &File, path: &Path) -> Result<Option<Segment>, DistError> {
        let len = file.metadata().map_err(|e| DistError::io(path, "stat segment", e))?.len() as usize;
        if len < PAGE {
            return Ok(None);
        }
        // SAFETY: shared memory that other processes write only through atomics or through
        // regions the barrier protocol assigns; it is never truncated while mapped (it is a
        // tmpfs file that only this module creates, at its full size).
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(file) }
            .map_err(|e| DistError::io(path, "memory-map segment", e))?;
        let hdr = unsafe { &*(map.as_ptr() as *const Header) };
        if hdr.magic.load(Ordering::Acquire) != MAGIC || hdr.version.load(Ordering::Relaxed) != VERSION {
            return Ok(None);
        }
        let world = hdr.world.load(Ordering::Relaxed) as usize;
        let chunk_elems = hdr.chunk_elems.load(Ordering::Relaxed) as usize;
        match layout(world, chunk_elems) {
            Some((slots_offset, data_offset, slot_bytes, total)) if total <= len && world > 0 => {
                Ok(Some(Segment { map, world, chunk_elems, slots_offset, data_offset, slot_bytes }))
            }
            _ => Ok(None),
        }
    }

    /// Writes the abort record, unless some rank already has (the first reason wins).
    fn raise_abort(&self, rank: usize, reason: &str) {
        let hdr = self.header();
        if hdr.abort_state.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            let bytes = truncate_utf8(reason, REASON_BYTES);
            for (cell, b) in hdr.abort_reason.iter().zip(bytes.bytes()) {
                cell.store(b, Ordering::Relaxed);
            }
            hdr.abort_len.store(bytes.len() as u32, Ordering::Relaxed);
            hdr.abort_rank.store(rank as u32, Ordering::Relaxed);
            hdr.abort_state.store(2, Ordering::Release);
        }
    }

    /// A live process recorded in the segment (the creator or a joined rank), if any.
    fn live_member(&self) -> Option<(u32, String)> {
        let hdr = self.header();
        let creator = hdr.creator_pid.load(Ordering::Acquire);
        if matches!(liveness(creator, hdr.creator_start.load(Ordering::Acquire)), Liveness::Alive) {
            return Some((creator, "the creator, rank 0".into()));
        }
        (0..self.world).find_map(|r| {
            let s = self.slot(r);
            let pid = s.pid.load(Ordering::Acquire);
            match liveness(pid, s.start_time.load(Ordering::Acquire)) {
                Liveness::Alive => Some((pid, format!("rank {r}"))),
                Liveness::Dead => None,
            }
        })
    }
}

/// One rank's membership of a shared-memory group of `world` processes on this node.
///
/// All ranks must call the same collectives in the same order with the same lengths; the
/// first barrier of each collective checks this. Any error leaves the group aborted: this
/// rank's later calls fail, and so do every other rank's waits, naming the first failure.
pub struct ShmGroup {
    seg: Segment,
    rank: usize,
    path: PathBuf,
    /// Rank 0's file identity (device, inode), so that it unlinks only its own segment.
    created: Option<(u64, u64)>,
    /// Whether this process holds its rank's slot (false when another process had it).
    claimed: bool,
    timeout: Duration,
    /// Barriers passed so far (this rank's sequence number).
    seq: u64,
    ops: u64,
    /// Set once this rank has seen or raised an error (the rank that failed first, and why);
    /// later calls fail with it.
    failed: Option<(usize, String)>,
    /// Scratch for the blockwise reduction.
    acc: Vec<f32>,
}

impl std::fmt::Debug for ShmGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmGroup")
            .field("path", &self.path)
            .field("rank", &self.rank)
            .field("world", &self.seg.world)
            .finish()
    }
}

/// What finishes a rank's share of a hierarchical mean ([`ShmGroup::all_reduce_mean_across`]).
type AcrossNodes<'a> = &'a mut dyn FnMut(&mut [f32]) -> Result<(), DistError>;

/// The path of the segment for a run id.
pub fn segment_path(run_id: &str) -> PathBuf {
    Path::new(SHM_DIR).join(format!("wgolf-{run_id}"))
}

fn check_run_id(run_id: &str) -> Result<(), DistError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 96
        && !run_id.starts_with('.')
        && run_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(DistError::InvalidArgument(format!(
            "run id `{run_id}`: expected 1 to 96 characters from [A-Za-z0-9._-], not starting with `.`"
        )))
    }
}

impl ShmGroup {
    /// Joins (rank 0: creates) the group `run_id` as `rank` of `world`, with the default chunk.
    /// `digest` summarizes what must be equal on every rank (config, data, plan); a rank whose
    /// digest differs from rank 0's makes every rank's join fail, naming both digests.
    /// `timeout` bounds joining and every later wait.
    pub fn join(run_id: &str, rank: usize, world: usize, digest: &str, timeout: Duration) -> Result<Self, DistError> {
        Self::join_with(run_id, rank, world, digest, &JoinOptions::with_timeout(timeout))
    }

    /// As [`ShmGroup::join`], with an explicit chunk size.
    pub fn join_with(
        run_id: &str,
        rank: usize,
        world: usize,
        digest: &str,
        opts: &JoinOptions,
    ) -> Result<Self, DistError> {
        check_run_id(run_id)?;
        if world == 0 || world > 1024 || rank >= world {
            return Err(DistError::InvalidArgument(format!(
                "rank {rank} of world {world}: expected 0 <= rank < world <= 1024"
            )));
        }
        if digest.len() > MAX_DIGEST_BYTES {
            return Err(DistError::InvalidArgument(format!(
                "digest of {} bytes: at most {MAX_DIGEST_BYTES} bytes",
                digest.len()
            )));
        }
        if opts.chunk_elems < MIN_CHUNK_ELEMS {
            return Err(DistError::InvalidArgument(format!(
                "chunk of {} elements: at least {MIN_CHUNK_ELEMS}",
                opts.chunk_elems
            )));
        }
        let path = segment_path(run_id);
        let deadline = Instant::now() + opts.timeout;
        let (seg, created) = if rank == 0 {
            create(run_id, &path, world, opts.chunk_elems)?
        } else {
            (open_existing(&path, rank, deadline)?, None)
        };
        if seg.world != world || seg.chunk_elems != opts.chunk_elems {
            let e = DistError::LayoutMismatch {
                path,
                rank,
                world,
                chunk: opts.chunk_elems,
                found_world: seg.world,
                found_chunk: seg.chunk_elems,
            };
            // The ranks that did join learn of it now rather than at their join timeout.
            seg.raise_abort(rank, &e.to_string());
            return Err(e);
        }
        let mut group = ShmGroup {
            seg,
            rank,
            path,
            created,
            claimed: false,
            timeout: opts.timeout,
            seq: 0,
            ops: 0,
            failed: None,
            acc: Vec::new(),
        };
        group.claim_slot(digest)?;
        group.wait_joined(deadline)?;
        if let Some(id) = group.created {
            // Every rank has mapped the segment: the name is no longer needed, and without it
            // nothing is left in /dev/shm however the run ends.
            if same_file(&group.path, id) {
                let _ = std::fs::remove_file(&group.path);
            }
            group.created = None;
        }
        group.check_digests()?;
        group.set_doing(Doing::Between);
        Ok(group)
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn world(&self) -> usize {
        self.seg.world
    }

    /// Changes the bound on every later wait (for example a longer one around a first step
    /// that compiles pipelines).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn me(&self) -> &RankSlot {
        self.seg.slot(self.rank)
    }

    fn claim_slot(&mut self, digest: &str) -> Result<(), DistError> {
        let pid = std::process::id();
        let slot = self.me();
        if let Err(holder) = slot.pid.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Acquire) {
            let e = DistError::RankTaken { rank: self.rank, pid: holder };
            self.raise_abort(&e.to_string());
            return Err(e);
        }
        self.claimed = true;
        let slot = self.me();
        slot.start_time.store(own_start_time(), Ordering::Relaxed);
        for (cell, b) in slot.digest.iter().zip(digest.bytes()) {
            cell.store(b, Ordering::Relaxed);
        }
        slot.digest_len.store(digest.len() as u32, Ordering::Relaxed);
        slot.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
        slot.doing.store(Doing::Joining as u32, Ordering::Relaxed);
        slot.joined.store(JOINED, Ordering::Release);
        Ok(())
    }

    fn wait_joined(&mut self, deadline: Instant) -> Result<(), DistError> {
        let start = Instant::now();
        let world = self.seg.world;
        let mut backoff = Backoff::new();
        loop {
            let missing: Vec<usize> =
                (0..world).filter(|&r| self.seg.slot(r).joined.load(Ordering::Acquire) == 0).collect();
            if missing.is_empty() {
                return Ok(());
            }
            if backoff.check_due() {
                self.me().heartbeat_ms.store(now_ms(), Ordering::Relaxed);
                if let Some(e) = self.abort_error() {
                    return Err(e);
                }
                if let Some(e) = self.dead_peer("joining the group", &|_| true) {
                    // A peer that saw every rank join may since have refused the group (a
                    // digest mismatch) and exited: if every rank has joined by now, the
                    // digest check that follows says why, not the peer's exit.
                    if (0..world).all(|r| self.seg.slot(r).joined.load(Ordering::Acquire) != 0) {
                        return Ok(());
                    }
                    // As in `barrier_step`: an abort raised before the peer left wins.
                    return Err(self.abort_error().unwrap_or_else(|| self.fail(e)));
                }
                if Instant::now() >= deadline {
                    let e = DistError::JoinTimeout {
                        path: self.path.clone(),
                        missing,
                        secs: start.elapsed().as_secs_f64(),
                        me: self.rank,
                        hint: String::new(),
                    };
                    return Err(self.fail(e));
                }
            }
            backoff.wait();
        }
    }

    fn digest_of(&self, rank: usize) -> String {
        let s = self.seg.slot(rank);
        let n = (s.digest_len.load(Ordering::Acquire) as usize).min(MAX_DIGEST_BYTES);
        let bytes: Vec<u8> = s.digest[..n].iter().map(|b| b.load(Ordering::Relaxed)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn check_digests(&mut self) -> Result<(), DistError> {
        let rank0 = self.digest_of(0);
        let mismatches: Vec<(usize, String)> =
            (1..self.seg.world).map(|r| (r, self.digest_of(r))).filter(|(_, d)| *d != rank0).collect();
        if mismatches.is_empty() {
            Ok(())
        } else {
            // Every rank reads the same digests and refuses the same way; no abort needed.
            let e = DistError::DigestMismatch { rank0, mismatches };
            self.failed = Some((self.rank, e.to_string()));
            self.set_doing(Doing::Failed);
            Err(e)
        }
    }

    fn set_doing(&self, doing: Doing) {
        let s = self.me();
        s.doing.store(doing as u32, Ordering::Relaxed);
        s.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn set_chunk(&self, doing: Doing, chunk: usize, chunks: usize) {
        let s = self.me();
        s.chunk.store(chunk as u32, Ordering::Relaxed);
        s.chunks.store(chunks as u32, Ordering::Relaxed);
        self.set_doing(doing);
    }

    /// A rank's last recorded activity, in words.
    fn describe(&self, rank: usize) -> String {
        let s = self.seg.slot(rank);
        let op = Op::from_code(s.op_kind.load(Ordering::Relaxed));
        let index = s.op_index.load(Ordering::Relaxed);
        let (chunk, chunks) = (s.chunk.load(Ordering::Relaxed), s.chunks.load(Ordering::Relaxed));
        let chunk_text = if chunks > 1 { format!(", chunk {} of {chunks}", chunk + 1) } else { String::new() };
        let seq = s.seq.load(Ordering::Relaxed);
        match Doing::from_code(s.doing.load(Ordering::Relaxed)) {
            Doing::Joining => "joining the group".into(),
            Doing::Between if index == 0 => "between collectives (none called yet)".into(),
            Doing::Between => format!("between collectives (the last was {} #{index})", op.name()),
            Doing::CopyIn => format!("copying its input into the segment in {} #{index}{chunk_text}", op.name()),
            Doing::Reduce => format!("reducing its share in {} #{index}{chunk_text}", op.name()),
            Doing::CopyOut => format!("copying the result out in {} #{index}{chunk_text}", op.name()),
            Doing::Waiting => format!("waiting at barrier {} in {} #{index}{chunk_text}", seq, op.name()),
            Doing::Failed => format!("failing in {} #{index}", op.name()),
        }
    }

    /// Records the first failure in the segment so that every other rank sees it at its next
    /// check, and returns the error.
    fn fail(&mut self, e: DistError) -> DistError {
        if self.failed.is_none() {
            self.failed = Some((self.rank, e.to_string()));
            self.raise_abort(&e.to_string());
        }
        self.set_doing(Doing::Failed);
        e
    }

    fn raise_abort(&self, reason: &str) {
        self.seg.raise_abort(self.rank, reason);
    }

    /// The abort record, if some rank has aborted the group.
    fn abort_error(&self) -> Option<DistError> {
        let hdr = self.seg.header();
        match hdr.abort_state.load(Ordering::Acquire) {
            0 => None,
            state => {
                // A rank writing its reason takes microseconds; wait for it, boundedly.
                let until = Instant::now() + Duration::from_millis(100);
                let mut state = state;
                while state == 1 && Instant::now() < until {
                    std::thread::yield_now();
                    state = hdr.abort_state.load(Ordering::Acquire);
                }
                let n = (hdr.abort_len.load(Ordering::Relaxed) as usize).min(REASON_BYTES);
                let bytes: Vec<u8> = hdr.abort_reason[..n].iter().map(|b| b.load(Ordering::Relaxed)).collect();
                let reason = if state == 2 {
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    "(reason not recorded)".into()
                };
                Some(DistError::Aborted { rank: hdr.abort_rank.load(Ordering::Relaxed) as usize, reason })
            }
        }
    }

    /// The abort record as this rank's failure (later calls report it too), if some rank has
    /// aborted the group.
    fn take_abort(&mut self) -> Option<DistError> {
        let e = self.abort_error()?;
        if let DistError::Aborted { rank, reason } = &e {
            self.failed = Some((*rank, reason.clone()));
        }
        self.set_doing(Doing::Failed);
        Some(e)
    }

    /// A peer this rank still waits for (`pending`) whose process is gone or that left the
    /// group, as an error. `pending` is asked after the peer's state is read, so a peer that
    /// arrived and then exited normally is not reported.
    fn dead_peer(&self, waiting: &str, pending: &dyn Fn(usize) -> bool) -> Option<DistError> {
        (0..self.seg.world).filter(|&r| r != self.rank).find_map(|r| {
            let s = self.seg.slot(r);
            let joined = s.joined.load(Ordering::Acquire);
            if joined == 0 {
                return None;
            }
            let pid = s.pid.load(Ordering::Relaxed);
            let gone = match liveness(pid, s.start_time.load(Ordering::Relaxed)) {
                Liveness::Dead => Some(true),
                Liveness::Alive if joined == LEFT => Some(false),
                Liveness::Alive => None,
            }?;
            if !pending(r) {
                return None;
            }
            let (me, waiting, doing) = (self.rank, waiting.to_string(), self.describe(r));
            Some(if gone {
                DistError::PeerDied { rank: r, pid, doing, me, waiting }
            } else {
                DistError::PeerLeft { rank: r, pid, doing, me, waiting }
            })
        })
    }

    /// Arrives at the next barrier and waits, boundedly, for every rank to arrive.
    fn barrier_step(&mut self, op: Op) -> Result<(), DistError> {
        self.seq += 1;
        let target = self.seq;
        let me = self.me();
        me.doing.store(Doing::Waiting as u32, Ordering::Relaxed);
        me.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
        me.seq.store(target, Ordering::Release);
        let start = Instant::now();
        let mut backoff = Backoff::new();
        let mut from = 0;
        loop {
            while from < self.seg.world && self.seg.slot(from).seq.load(Ordering::Acquire) >= target {
                from += 1;
            }
            if from == self.seg.world {
                return Ok(());
            }
            if backoff.check_due() {
                self.me().heartbeat_ms.store(now_ms(), Ordering::Relaxed);
                if let Some(e) = self.take_abort() {
                    return Err(e);
                }
                let waiting = format!("{} #{} (barrier {target})", op.name(), self.ops);
                let seg = &self.seg;
                if let Some(e) = self.dead_peer(&waiting, &|r| seg.slot(r).seq.load(Ordering::Acquire) < target) {
                    // A peer that aborted and then left raised the abort before leaving, possibly
                    // after the check above: its reason is the one to report.
                    return Err(self.take_abort().unwrap_or_else(|| self.fail(e)));
                }
                let waited = start.elapsed();
                if waited >= self.timeout {
                    let late = from;
                    let s = self.seg.slot(late);
                    let pid = s.pid.load(Ordering::Relaxed);
                    let state = match proc_stat(pid) {
                        Some((c, _)) => format!("{c} ({})", state_name(c)),
                        None => "unknown".into(),
                    };
                    let heartbeat_secs = now_ms().saturating_sub(s.heartbeat_ms.load(Ordering::Relaxed)) as f64 / 1e3;
                    let e = DistError::PeerHung {
                        rank: late,
                        pid,
                        state,
                        doing: self.describe(late),
                        heartbeat_secs,
                        secs: waited.as_secs_f64(),
                        me: self.rank,
                        waiting,
                    };
                    return Err(self.fail(e));
                }
            }
            backoff.wait();
        }
    }

    /// Starts a collective: fails if the group has failed, records the op for the check at
    /// its first barrier.
    fn begin(&mut self, op: Op, len: u64) -> Result<(), DistError> {
        if let Some((rank, reason)) = &self.failed {
            return Err(DistError::Aborted { rank: *rank, reason: reason.clone() });
        }
        self.ops += 1;
        let s = self.me();
        s.op_kind.store(op as u32, Ordering::Relaxed);
        s.op_len.store(len, Ordering::Relaxed);
        s.op_index.store(self.ops, Ordering::Relaxed);
        s.chunk.store(0, Ordering::Relaxed);
        s.chunks.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The first barrier of a collective, which also checks that every rank called the same
    /// collective (the same kind, index and length) as rank 0. Every collective has a second
    /// barrier after this one, so the records read here stay unchanged while they are read.
    fn first_barrier(&mut self, op: Op) -> Result<(), DistError> {
        self.barrier_step(op)?;
        let r0 = self.seg.slot(0);
        let (kind0, len0, index0) = (
            r0.op_kind.load(Ordering::Relaxed),
            r0.op_len.load(Ordering::Relaxed),
            r0.op_index.load(Ordering::Relaxed),
        );
        let mut diffs = Vec::new();
        for r in 1..self.seg.world {
            let s = self.seg.slot(r);
            let (kind, len, index) = (
                s.op_kind.load(Ordering::Relaxed),
                s.op_len.load(Ordering::Relaxed),
                s.op_index.load(Ordering::Relaxed),
            );
            // A broadcast's length is known only to its root.
            let len_differs = op != Op::Broadcast && len != len0;
            if kind != kind0 || index != index0 || len_differs {
                diffs.push(format!(
                    "rank {r} called {} #{index} of length {len} while rank 0 called {} #{index0} of length {len0}",
                    Op::from_code(kind).name(),
                    Op::from_code(kind0).name()
                ));
            }
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            // Every rank sees the same records and fails the same way; the abort record also
            // stops any rank that would read them late.
            Err(self.fail(DistError::CollectiveMismatch(diffs.join("; "))))
        }
    }

    fn end(&mut self) {
        self.set_doing(Doing::Between);
    }

    /// Replaces `values` on every rank by their mean over the ranks: each element is
    /// `((x_0 + x_1) + ... + x_{P-1}) / P` in f32, summed in rank order, so the result is
    /// bit-identical on every rank and from run to run. Reduce-scatter then all-gather through
    /// the segment: each rank copies its chunk in, sums its 1/P share of it over all ranks into
    /// the result slot, and copies the whole reduced chunk out.
    pub fn all_reduce_mean(&mut self, values: &mut [f32]) -> Result<(), DistError> {
        self.reduce_scatter_gather(values, None)
    }

    /// The node's part of a hierarchical mean (`MpiGroup` across nodes): as
    /// [`ShmGroup::all_reduce_mean`], except that each rank's share of each chunk is the sum
    /// over this node's ranks (in rank order), which `across` then replaces, in place, by the
    /// mean over every node before the all-gather copies it out. `across` is called once per
    /// chunk on every rank, also with an empty share (a chunk shorter than the group), in the
    /// same order on every node, so it may run a collective between the ranks of equal rank
    /// on each node: their shares are the same elements.
    pub fn all_reduce_mean_across(
        &mut self,
        values: &mut [f32],
        across: &mut dyn FnMut(&mut [f32]) -> Result<(), DistError>,
    ) -> Result<(), DistError> {
        self.reduce_scatter_gather(values, Some(across))
    }

    fn reduce_scatter_gather(
        &mut self,
        values: &mut [f32],
        mut across: Option<AcrossNodes<'_>>,
    ) -> Result<(), DistError> {
        self.begin(Op::Mean, values.len() as u64)?;
        let world = self.seg.world;
        let chunk = self.seg.chunk_elems;
        let chunks = values.len().div_ceil(chunk).max(1);
        // The node's sum when another stage finishes the mean (x / 1 is exact).
        let divisor = if across.is_some() { 1.0 } else { world as f32 };
        for k in 0..chunks {
            let lo = k * chunk;
            let hi = (lo + chunk).min(values.len());
            let part = &mut values[lo..hi];
            let n = part.len();
            self.set_chunk(Doing::CopyIn, k, chunks);
            // SAFETY: this rank's staging slot is written only by this rank, and only between
            // the second barrier of the previous chunk (after which no rank reads it) and the
            // first barrier of this one (before which no rank reads it).
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), self.seg.data_ptr(self.rank) as *mut f32, n) };
            if k == 0 {
                self.first_barrier(Op::Mean)?;
            } else {
                self.barrier_step(Op::Mean)?;
            }
            self.set_doing(Doing::Reduce);
            let (a, b) = share(n, world, self.rank);
            // SAFETY: between the two barriers every staging slot is read-only, and the range
            // [a, b) of the result slot is written by this rank alone.
            let out = unsafe { std::slice::from_raw_parts_mut((self.seg.data_ptr(world) as *mut f32).add(a), b - a) };
            if a < b {
                self.acc.resize(REDUCE_BLOCK, 0.0);
                let inputs: Vec<&[f32]> = (0..world)
                    .map(|r| unsafe { std::slice::from_raw_parts((self.seg.data_ptr(r) as *const f32).add(a), b - a) })
                    .collect();
                mean_in_rank_order(&inputs, out, divisor, &mut self.acc);
            }
            if let Some(across) = across.as_mut() {
                if let Err(e) = across(out) {
                    return Err(self.fail(e));
                }
            }
            self.barrier_step(Op::Mean)?;
            self.set_doing(Doing::CopyOut);
            // SAFETY: the result slot is written again only after the next first barrier, which
            // this rank reaches after this copy.
            unsafe { std::ptr::copy_nonoverlapping(self.seg.data_ptr(world) as *const f32, part.as_mut_ptr(), n) };
        }
        self.end();
        Ok(())
    }

    /// Replaces `values` by their element-wise maximum over the ranks (f64::max, rank order).
    /// The wall-clock stop: every rank stops at the slowest rank's elapsed time.
    pub fn all_reduce_max_f64(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        self.reduce_f64(Op::MaxF64, values, f64::max)
    }

    /// Replaces `values` by their element-wise sum over the ranks, added in rank order (so equal
    /// on every rank): global loss sums, token and byte counts for validation.
    pub fn all_reduce_sum_f64(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        self.reduce_f64(Op::SumF64, values, |a, b| a + b)
    }

    fn reduce_f64(&mut self, op: Op, values: &mut [f64], combine: fn(f64, f64) -> f64) -> Result<(), DistError> {
        self.begin(op, values.len() as u64)?;
        let world = self.seg.world;
        let cap = self.seg.chunk_elems / 2;
        let chunks = values.len().div_ceil(cap).max(1);
        for k in 0..chunks {
            let lo = k * cap;
            let hi = (lo + cap).min(values.len());
            let part = &mut values[lo..hi];
            self.set_chunk(Doing::CopyIn, k, chunks);
            // SAFETY: own slot, written before the first barrier of the round and read by the
            // others only between it and the trailing barrier.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), self.seg.data_ptr(self.rank) as *mut f64, part.len())
            };
            if k == 0 {
                self.first_barrier(op)?;
            } else {
                self.barrier_step(op)?;
            }
            self.set_doing(Doing::Reduce);
            for (i, v) in part.iter_mut().enumerate() {
                // SAFETY: every slot is read-only until the trailing barrier; slots are
                // page-aligned, so f64 reads are aligned.
                let read = |r: usize| unsafe { *(self.seg.data_ptr(r) as *const f64).add(i) };
                let mut acc = read(0);
                for r in 1..world {
                    acc = combine(acc, read(r));
                }
                *v = acc;
            }
            self.barrier_step(op)?;
        }
        self.end();
        Ok(())
    }

    /// Replaces `bytes` on every rank by rank 0's `bytes` (rank 0's are left as they are).
    pub fn broadcast_bytes(&mut self, bytes: &mut Vec<u8>) -> Result<(), DistError> {
        let root = self.rank == 0;
        self.begin(Op::Broadcast, if root { bytes.len() as u64 } else { u64::MAX })?;
        let cap = self.seg.chunk_elems * 4;
        let slot0 = self.seg.data_ptr(0);
        // The first round carries the length in its first 8 bytes.
        let mut total = bytes.len();
        let mut sent = 0usize;
        let mut round = 0usize;
        if !root {
            bytes.clear();
        }
        loop {
            let head = if round == 0 { 8 } else { 0 };
            self.set_doing(Doing::CopyIn);
            if root {
                let n = (total - sent).min(cap - head);
                // SAFETY: slot 0 belongs to rank 0, which writes it only before the first
                // barrier of a round; the others read it only between the two barriers.
                unsafe {
                    if round == 0 {
                        std::ptr::copy_nonoverlapping((total as u64).to_le_bytes().as_ptr(), slot0, 8);
                    }
                    std::ptr::copy_nonoverlapping(bytes.as_ptr().add(sent), slot0.add(head), n);
                }
            }
            if round == 0 {
                self.first_barrier(Op::Broadcast)?;
            } else {
                self.barrier_step(Op::Broadcast)?;
            }
            if !root {
                self.set_doing(Doing::CopyOut);
                // SAFETY: as above.
                unsafe {
                    if round == 0 {
                        let mut len = [0u8; 8];
                        std::ptr::copy_nonoverlapping(slot0, len.as_mut_ptr(), 8);
                        total = u64::from_le_bytes(len) as usize;
                        bytes.reserve_exact(total);
                    }
                    let n = (total - sent).min(cap - head);
                    bytes.extend_from_slice(std::slice::from_raw_parts(slot0.add(head), n));
                }
            }
            sent += (total - sent).min(cap - head);
            self.barrier_step(Op::Broadcast)?;
            round += 1;
            if sent >= total {
                break;
            }
        }
        self.end();
        Ok(())
    }

    /// Every rank's `own` values, concatenated in rank order, into `out` on every rank:
    /// `counts[r]` is rank r's number of values (the same list on every rank; `own.len()`
    /// must be this rank's, `out.len()` their sum). Each round every rank copies its next
    /// chunk into its staging slot, and after a barrier every rank copies every slot's chunk
    /// out. Distributed Muon's exchange of the orthogonalized updates.
    pub fn all_gather(&mut self, own: &[f32], counts: &[usize], out: &mut [f32]) -> Result<(), DistError> {
        let world = self.seg.world;
        let total: usize = counts.iter().sum();
        if counts.len() != world || own.len() != counts[self.rank] || out.len() != total {
            return Err(DistError::InvalidArgument(format!(
                "all_gather on rank {} of {world}: {} values for counts {counts:?} into {}",
                self.rank,
                own.len(),
                out.len()
            )));
        }
        self.begin(Op::Gather, total as u64)?;
        let chunk = self.seg.chunk_elems;
        let rounds = counts.iter().map(|c| c.div_ceil(chunk)).max().unwrap_or(0).max(1);
        let starts: Vec<usize> = counts.iter().scan(0, |at, &c| Some(std::mem::replace(at, *at + c))).collect();
        let piece = |count: usize, k: usize| (k * chunk).min(count)..((k + 1) * chunk).min(count);
        for k in 0..rounds {
            let mine = piece(own.len(), k);
            self.set_chunk(Doing::CopyIn, k, rounds);
            // SAFETY: this rank's staging slot is written only by this rank, before the first
            // barrier of a round; the others read it only between that barrier and the next.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    own[mine.clone()].as_ptr(),
                    self.seg.data_ptr(self.rank) as *mut f32,
                    mine.len(),
                )
            };
            if k == 0 {
                self.first_barrier(Op::Gather)?;
            } else {
                self.barrier_step(Op::Gather)?;
            }
            self.set_doing(Doing::CopyOut);
            for (r, (&count, &start)) in counts.iter().zip(&starts).enumerate() {
                let theirs = piece(count, k);
                let dst = &mut out[start + theirs.start..start + theirs.end];
                // SAFETY: as above; every slot is read-only until the round's second barrier.
                unsafe {
                    std::ptr::copy_nonoverlapping(self.seg.data_ptr(r) as *const f32, dst.as_mut_ptr(), dst.len())
                };
            }
            self.barrier_step(Op::Gather)?;
        }
        self.end();
        Ok(())
    }

    /// Waits until every rank has called `barrier`.
    pub fn barrier(&mut self) -> Result<(), DistError> {
        self.begin(Op::Barrier, 0)?;
        self.first_barrier(Op::Barrier)?;
        // A second arrival: the check above reads the other ranks' records of this call, which
        // a rank could otherwise overwrite with its next call's before a slower rank reads them.
        self.barrier_step(Op::Barrier)?;
        self.end();
        Ok(())
    }

    /// Aborts the group: every other rank's current or next wait fails with `reason`, naming
    /// this rank, instead of waiting for its timeout.
    pub fn abort(&mut self, reason: &str) {
        if self.failed.is_none() {
            self.failed = Some((self.rank, reason.to_string()));
            self.raise_abort(reason);
        }
        self.set_doing(Doing::Failed);
    }
}

impl Drop for ShmGroup {
    fn drop(&mut self) {
        // Peers still waiting for this rank fail at once ("left the group") rather than at
        // their timeout.
        if self.claimed {
            self.me().joined.store(LEFT, Ordering::Release);
        }
        if let Some(id) = self.created.take() {
            if same_file(&self.path, id) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// The elements of a chunk of `n` that `rank` reduces: contiguous shares differing by at most
/// one element, the first `n % world` ranks taking the extra one.
fn share(n: usize, world: usize, rank: usize) -> (usize, usize) {
    let (base, extra) = (n / world, n % world);
    let start = rank * base + rank.min(extra);
    (start, start + base + usize::from(rank < extra))
}

/// Elements per block of the reduction: a block of the accumulator stays in L1 while every
/// rank's inputs stream through it once.
const REDUCE_BLOCK: usize = 2048;

/// `out[i] = ((inputs[0][i] + inputs[1][i]) + ...) / divisor`, in that order, blockwise.
fn mean_in_rank_order(inputs: &[&[f32]], out: &mut [f32], divisor: f32, acc: &mut [f32]) {
    let n = out.len();
    let mut i = 0;
    while i < n {
        let m = REDUCE_BLOCK.min(n - i);
        let acc = &mut acc[..m];
        acc.copy_from_slice(&inputs[0][i..i + m]);
        for input in &inputs[1..] {
            for (a, x) in acc.iter_mut().zip(&input[i..i + m]) {
                *a += *x;
            }
        }
        for (o, a) in out[i..i + m].iter_mut().zip(acc.iter()) {
            *o = *a / divisor;
        }
        i += m;
    }
}

/// Rank 0: clears a stale segment of this run id, creates a new one at its full size under a
/// temporary name, initializes its header and gives it its public name atomically.
fn create(
    run_id: &str,
    path: &Path,
    world: usize,
    chunk_elems: usize,
) -> Result<(Segment, Option<(u64, u64)>), DistError> {
    let (slots_offset, data_offset, slot_bytes, total) = layout(world, chunk_elems).ok_or_else(|| {
        DistError::InvalidArgument(format!("world {world} with chunk {chunk_elems}: the segment size overflows"))
    })?;
    clear_stale(run_id, path)?;
    let tmp = Path::new(SHM_DIR).join(format!(".wgolf-{run_id}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| DistError::io(&tmp, "create segment", e))?;
    let cleanup = |e: DistError| {
        let _ = std::fs::remove_file(&tmp);
        e
    };
    // SAFETY: a plain syscall on an open descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, total as libc::off_t) };
    if rc != 0 {
        return Err(cleanup(DistError::NoSpace {
            path: path.to_path_buf(),
            bytes: total as u64,
            source: std::io::Error::from_raw_os_error(rc),
        }));
    }
    // SAFETY: see `Segment::open`; the file has just been given its full size.
    let map = unsafe { memmap2::MmapOptions::new().len(total).map_mut(&file) }
        .map_err(|e| cleanup(DistError::io(&tmp, "memory-map segment", e)))?;
    let seg = Segment { map, world, chunk_elems, slots_offset, data_offset, slot_bytes };
    let hdr = seg.header();
    hdr.version.store(VERSION, Ordering::Relaxed);
    hdr.world.store(world as u32, Ordering::Relaxed);
    hdr.chunk_elems.store(chunk_elems as u64, Ordering::Relaxed);
    hdr.creator_pid.store(std::process::id(), Ordering::Relaxed);
    hdr.creator_start.store(own_start_time(), Ordering::Relaxed);
    hdr.magic.store(MAGIC, Ordering::Release);
    let meta = file.metadata().map_err(|e| cleanup(DistError::io(&tmp, "stat segment", e)))?;
    // A hard link creates the public name only if it is free, atomically; the segment is
    // complete before any other rank can open it.
    match std::fs::hard_link(&tmp, path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&tmp);
            return Err(DistError::InUse {
                path: path.to_path_buf(),
                run_id: run_id.to_string(),
                pid: 0,
                who: "a rank 0 that created it at the same moment".into(),
            });
        }
        Err(e) => return Err(cleanup(DistError::io(path, "name segment", e))),
    }
    let _ = std::fs::remove_file(&tmp);
    Ok((seg, Some((meta.dev(), meta.ino()))))
}

/// Removes a segment of this run id whose processes are all dead (a crashed run), and the
/// temporary files of dead creators; refuses one with a live member.
fn clear_stale(run_id: &str, path: &Path) -> Result<(), DistError> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => {
            if let Some(seg) = Segment::open(&file, path)? {
                if let Some((pid, who)) = seg.live_member() {
                    return Err(DistError::InUse { path: path.to_path_buf(), run_id: run_id.to_string(), pid, who });
                }
            }
            log::warn!("{}: removing a stale shared-memory segment left by a crashed run", path.display());
            std::fs::remove_file(path).map_err(|e| DistError::io(path, "remove stale segment", e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DistError::io(path, "open existing segment", e)),
    }
    let prefix = format!(".wgolf-{run_id}.");
    if let Ok(entries) = std::fs::read_dir(SHM_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if proc_stat(pid).is_none() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    Ok(())
}

/// Ranks 1..P: waits for rank 0's segment. A segment whose creator is dead is a stale one from
/// a crashed run, which this run's rank 0 is about to replace: it is skipped, not joined.
fn open_existing(path: &Path, rank: usize, deadline: Instant) -> Result<Segment, DistError> {
    let start = Instant::now();
    let mut stale_seen = None;
    loop {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => {
                if let Some(seg) = Segment::open(&file, path)? {
                    let hdr = seg.header();
                    let creator = hdr.creator_pid.load(Ordering::Acquire);
                    match liveness(creator, hdr.creator_start.load(Ordering::Acquire)) {
                        Liveness::Alive => return Ok(seg),
                        Liveness::Dead => stale_seen = Some(creator),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DistError::io(path, "open segment", e)),
        }
        if Instant::now() >= deadline {
            let hint = match stale_seen {
                Some(pid) => format!(
                    "; the segment there was created by pid {pid}, which is dead: a stale segment of a crashed run that \
                     rank 0 never replaced, or rank 0 died"
                ),
                None => "; rank 0 never created the segment".into(),
            };
            return Err(DistError::JoinTimeout {
                path: path.to_path_buf(),
                missing: vec![0],
                secs: start.elapsed().as_secs_f64(),
                me: rank,
                hint,
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn same_file(path: &Path, (dev, ino): (u64, u64)) -> bool {
    std::fs::metadata(path).map(|m| m.dev() == dev && m.ino() == ino).unwrap_or(false)
}

/// Waits in three stages: spinning (a peer a few microseconds behind), yielding (a peer on the
/// same core when processes outnumber cores), then short sleeps (a peer still computing).
struct Backoff {
    iter: u32,
    start: Instant,
    next_check: Instant,
}

impl Backoff {
    fn new() -> Self {
        let now = Instant::now();
        Backoff { iter: 0, start: now, next_check: now }
    }

    /// Whether the periodic checks (deadline, liveness, abort) are due; true on the first call.
    fn check_due(&mut self) -> bool {
        if !self.iter.is_multiple_of(32) {
            return false;
        }
        let now = Instant::now();
        if now >= self.next_check {
            self.next_check = now + CHECK_EVERY;
            true
        } else {
            false
        }
    }

    fn wait(&mut self) {
        self.iter = self.iter.wrapping_add(1);
        if self.iter < 100 {
            std::hint::spin_loop();
        } else if self.start.elapsed() < Duration::from_millis(2) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

enum Liveness {
    Alive,
    Dead,
}

/// Whether `pid` is the live process that started at `start_time` (a reused pid is dead to
/// us, and so is a zombie waiting for its parent to reap it).
fn liveness(pid: u32, start_time: u64) -> Liveness {
    if pid == 0 || pid > i32::MAX as u32 {
        return Liveness::Dead;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return Liveness::Dead;
    }
    match proc_stat(pid) {
        Some((state, start)) if start == start_time && state != 'Z' && state != 'X' => Liveness::Alive,
        _ => Liveness::Dead,
    }
}

/// (state, start time in clock ticks since boot) from /proc/<pid>/stat.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4..: ppid is the next one; the start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn own_start_time() -> u64 {
    proc_stat(std::process::id()).map(|(_, s)| s).unwrap_or(0)
}

fn state_name(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "in uninterruptible I/O",
        'T' => "stopped",
        't' => "stopped by a debugger",
        _ => "other",
    }
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_chunk_once() {
        for n in [0, 1, 2, 3, 7, 8, 1000, 1001] {
            for world in 1..=9 {
                let mut next = 0;
                for r in 0..world {
                    let (a, b) = share(n, world, r);
                    assert_eq!(a, next, "n {n} world {world} rank {r}");
                    assert!(b - a <= n / world + 1);
                    next = b;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn proc_stat_reads_this_process() {
        let (state, start) = proc_stat(std::process::id()).expect("own /proc entry");
        // The leader thread's state: the harness's main thread waits on this one.
        assert!(state == 'R' || state == 'S', "state {state}");
        assert!(start > 0);
        assert!(matches!(liveness(std::process::id(), start), Liveness::Alive));
        assert!(matches!(liveness(std::process::id(), start + 1), Liveness::Dead));
    }
}
