//! The training stream and the validation set, with the reference's exact semantics.
//!
//! **Training.** The train shards, in sorted name order, form one endless token stream that
//! wraps from the last shard back to the first; there is no shuffling and the seed plays no
//! part. Each call of [`TrainStream::next_batch`] (one micro-batch) takes
//! `world_size x (local_tokens + 1)` contiguous tokens from it; rank `r` keeps the span
//! `[r (local_tokens + 1), (r + 1)(local_tokens + 1))`, whose first `local_tokens` tokens are
//! the inputs and last `local_tokens` the targets. Because consecutive calls tile the stream
//! in the same spans, 1 process running 8 micro-batches (with `local_tokens` = global / 8)
//! sees exactly the windows that 8 processes see in one micro-batch each.
//!
//! **Validation.** All val shards are concatenated and cut to `num_seqs x seq_len + 1`
//! tokens, `num_seqs = (total - 1) / seq_len`. Sequence `i` has inputs
//! `tokens[i T .. i T + T]` and targets one further on. Ranks split the sequence indices
//! contiguously: rank `r` of `W` gets `[n r / W, n (r + 1) / W)`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::shard::{list_shards, read_shard, Shard, Split};
use super::DataError;

/// A point in the training stream, saved in checkpoints so that a resumed run continues with
/// exactly the tokens it would have seen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamPosition {
    /// Index of the current shard in the sorted train-shard list.
    pub shard_index: usize,
    /// That shard's file name, checked on [`TrainStream::seek`] so that a checkpoint is not
    /// silently resumed on different data.
    pub shard_name: String,
    /// Tokens of the current shard already consumed (0 ..= shard length).
    pub offset: u64,
    /// Tokens consumed since the stream was opened, over all shards and wraps (for logs).
    pub tokens_consumed: u64,
}

/// The reference's sequential training token stream over the train shards of a directory.
/// Every rank opens its own stream and they all advance in lockstep.
#[derive(Debug)]
pub struct TrainStream {
    dir: PathBuf,
    files: Vec<PathBuf>,
    vocab_size: usize,
    shard_index: usize,
    shard: Shard,
    pos: usize,
    consumed: u64,
    /// Scratch span of `local_tokens + 1` tokens, reused between calls.
    span: Vec<u16>,
}

impl TrainStream {
    /// Opens the `fineweb_train_*.bin` shards of `dir` (sorted by name) and positions the
    /// stream at the first token of the first. Each shard is validated when the stream
    /// reaches it, including that its tokens are below `vocab_size`, and checked to be
    /// unchanged (size and mtime) each time tokens are read from it: a shard truncated or
    /// rewritten under a running job is a [`DataError::ShardChanged`], not a SIGBUS.
    pub fn open(dir: &Path, vocab_size: usize) -> Result<Self, DataError> {
        let files = list_shards(dir, Split::Train)?;
        let shard = read_shard(&files[0], Some(vocab_size))?;
        Ok(TrainStream {
            dir: dir.to_path_buf(),
            files,
            vocab_size,
            shard_index: 0,
            shard,
            pos: 0,
            consumed: 0,
            span: Vec::new(),
        })
    }

    /// The train shards, in stream order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Moves to the next shard (wrapping to the first after the last).
    fn advance_shard(&mut self) -> Result<(), DataError> {
        let next = (self.shard_index + 1) % self.files.len();
        if next != self.shard_index {
            self.shard = read_shard(&self.files[next], Some(self.vocab_size))?;
        }
        self.shard_index = next;
        self.pos = 0;
        Ok(())
    }

    /// Consumes `n` tokens from the stream, appending them to `out` when given (skipping them
    /// otherwise). Moves to the next shard only when more tokens are needed and the current
    /// one is used up, as the reference does.
    fn take(&mut self, mut n: usize, mut out: Option<&mut Vec<u16>>) -> Result<(), DataError> {
        while n > 0 {
            let avail = self.shard.len() - self.pos;
            if avail == 0 {
                self.advance_shard()?;
                continue;
            }
            let k = n.min(avail);
            if let Some(out) = out.as_deref_mut() {
                // The shard may be read hours after it was opened: check the file first.
                out.extend_from_slice(&self.shard.checked_tokens()?[self.pos..self.pos + k]);
            }
            self.pos += k;
            self.consumed += k as u64;
            n -= k;
        }
        Ok(())
    }

    /// Checks the shape of a batch request and returns the per-rank span length.
    fn check_request(
        &self,
        local_tokens: usize,
        seq_len: usize,
        world_size: usize,
        rank: usize,
    ) -> Result<usize, DataError> {
        let bad = |p: String| Err(DataError::bad_request(&self.dir, p));
        if seq_len == 0 || local_tokens == 0 {
            return bad(format!("train batch: local_tokens ({local_tokens}) and seq_len ({seq_len}) must be positive"));
        }
        if !local_tokens.is_multiple_of(seq_len) {
            return bad(format!("train batch: local_tokens ({local_tokens}) is not a multiple of seq_len ({seq_len})"));
        }
        if world_size == 0 || rank >= world_size {
            return bad(format!("train batch: rank {rank} is outside a world of size {world_size}"));
        }
        let span = local_tokens + 1;
        if span.checked_mul(world_size).is_none() {
            return bad(format!("train batch: {world_size} x ({local_tokens} + 1) tokens overflows"));
        }
        Ok(span)
    }

    /// One micro-batch for `rank` of `world_size`: the stream takes
    /// `world_size x (local_tokens + 1)` contiguous tokens (wrapping across shards and at the
    /// end) and rank `rank` uses its span of `local_tokens + 1`. Returns `(inputs, targets)`,
    /// each `local_tokens` long and row-major `(local_tokens / seq_len, seq_len)`; targets are
    /// the inputs shifted by one token.
    ///
    /// `local_tokens` is the reference's `global_tokens / (world_size x grad_accum_steps)`.
    pub fn next_batch(
        &mut self,
        local_tokens: usize,
        seq_len: usize,
        world_size: usize,
        rank: usize,
    ) -> Result<(Vec<u32>, Vec<u32>), DataError> {
        let mut inputs = Vec::new();
        let mut targets = Vec::new();
        self.next_batch_into(local_tokens, seq_len, world_size, rank, &mut inputs, &mut targets)?;
        Ok((inputs, targets))
    }

    /// [`TrainStream::next_batch`] into caller-owned buffers (cleared first), so that a
    /// training loop allocates nothing per step.
    pub fn next_batch_into(
        &mut self,
        local_tokens: usize,
        seq_len: usize,
        world_size: usize,
        rank: usize,
        inputs: &mut Vec<u32>,
        targets: &mut Vec<u32>,
    ) -> Result<(), DataError> {
        let span_len = self.check_request(local_tokens, seq_len, world_size, rank)?;
        let mut span = std::mem::take(&mut self.span);
        span.clear();
        let result = (|| {
            self.take(rank * span_len, None)?;
            self.take(span_len, Some(&mut span))?;
            self.take((world_size - rank - 1) * span_len, None)
        })();
        if result.is_ok() {
            inputs.clear();
            targets.clear();
            inputs.extend(span[..local_tokens].iter().map(|&t| t as u32));
            targets.extend(span[1..].iter().map(|&t| t as u32));
        }
        self.span = span;
        result
    }

    /// The current position, for a checkpoint.
    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            shard_index: self.shard_index,
            shard_name: file_name(&self.files[self.shard_index]),
            offset: self.pos as u64,
            tokens_consumed: self.consumed,
        }
    }

    /// Moves the stream to a position saved by [`TrainStream::position`]. Fails, naming the
    /// directory, when the position does not fit these shards (an index past the list, a
    /// different file name at that index, or an offset past the shard's end).
    pub fn seek(&mut self, pos: &StreamPosition) -> Result<(), DataError> {
        let Some(path) = self.files.get(pos.shard_index) else {
            return Err(DataError::bad_request(
                &self.dir,
                format!(
                    "cannot seek: position names shard #{} ({}) but there are only {} train shards",
                    pos.shard_index,
                    pos.shard_name,
                    self.files.len()
                ),
            ));
        };
        let name = file_name(path);
        if name != pos.shard_name {
            return Err(DataError::bad_request(
                &self.dir,
                format!(
                    "cannot seek: shard #{} is {name}, but the saved position is in {}",
                    pos.shard_index, pos.shard_name
                ),
            ));
        }
        let shard =
            if pos.shard_index == self.shard_index { None } else { Some(read_shard(path, Some(self.vocab_size))?) };
        let len = shard.as_ref().unwrap_or(&self.shard).len() as u64;
        if pos.offset > len {
            return Err(DataError::bad_request(
                path,
                format!("cannot seek: offset {} is past the end of the shard ({len} tokens)", pos.offset),
            ));
        }
        if let Some(shard) = shard {
            self.shard = shard;
        }
        self.shard_index = pos.shard_index;
        self.pos = pos.offset as usize;
        self.consumed = pos.tokens_consumed;
        Ok(())
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The validation set: all `fineweb_val_*.bin` shards of a directory concatenated (sorted by
/// name) and truncated to `num_seqs x seq_len + 1` tokens.
#[derive(Debug, Clone)]
pub struct ValSet {
    tokens: Vec<u16>,
    seq_len: usize,
    num_seqs: usize,
}

impl ValSet {
    /// Reads and validates every val shard in `dir` (token ids below `vocab_size`) and cuts
    /// the concatenation to a whole number of `seq_len` sequences plus one token. Fails with
    /// [`DataError::ValTooShort`] when not even one sequence fits.
    pub fn open(dir: &Path, vocab_size: usize, seq_len: usize) -> Result<Self, DataError> {
        if seq_len == 0 {
            return Err(DataError::bad_request(dir, "validation set: seq_len must be positive"));
        }
        let files = list_shards(dir, Split::Val)?;
        let mut tokens = Vec::new();
        for f in &files {
            let shard = read_shard(f, Some(vocab_size))?;
            tokens.extend_from_slice(shard.checked_tokens()?);
        }
        Self::from_tokens(dir, tokens, seq_len)
    }

    /// Builds a validation set from tokens already in memory (`origin` names where they came
    /// from, for errors). Same truncation as [`ValSet::open`].
    pub fn from_tokens(origin: &Path, mut tokens: Vec<u16>, seq_len: usize) -> Result<Self, DataError> {
        if seq_len == 0 || tokens.len() < seq_len + 1 {
            return Err(DataError::ValTooShort { dir: origin.to_path_buf(), tokens: tokens.len() as u64, seq_len });
        }
        let num_seqs = (tokens.len() - 1) / seq_len;
        tokens.truncate(num_seqs * seq_len + 1);
        tokens.shrink_to_fit();
        Ok(ValSet { tokens, seq_len, num_seqs })
    }

    /// Number of whole sequences.
    pub fn num_seqs(&self) -> usize {
        self.num_seqs
    }

    /// The sequence length T it was cut for.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Number of scored targets: `num_seqs x seq_len`.
    pub fn num_targets(&self) -> usize {
        self.num_seqs * self.seq_len
    }

    /// All kept tokens (`num_seqs x seq_len + 1` of them).
    pub fn tokens(&self) -> &[u16] {
        &self.tokens
    }

    /// The sequence indices rank `rank` of `world_size` evaluates: a contiguous range,
    /// `[n rank / world_size, n (rank + 1) / world_size)` with `n = num_seqs`, as the
    /// reference splits them. Ranks outside the world get an empty range.
    pub fn rank_range(&self, world_size: usize, rank: usize) -> Range<usize> {
        if world_size == 0 || rank >= world_size {
            return 0..0;
        }
        let n = self.num_seqs as u128;
        let (w, r) = (world_size as u128, rank as u128);
        ((n * r / w) as usize)..((n * (r + 1) / w) as usize)
    }

    /// Sequence `i`: inputs `tokens[i T .. i T + T]` and targets `tokens[i T + 1 .. i T + T + 1]`.
    ///
    /// # Panics
    /// If `i >= num_seqs()` (an indexing bug in the caller, like slice indexing).
    pub fn sequence(&self, i: usize) -> (Vec<u32>, Vec<u32>) {
        self.batch(i..i + 1)
    }

    /// The sequences `seqs` as one row-major `(seqs.len(), seq_len)` batch, inputs and
    /// targets, as the reference's evaluation reads them (one contiguous window of
    /// `len x T + 1` tokens).
    ///
    /// # Panics
    /// If the range reaches past `num_seqs()`.
    pub fn batch(&self, seqs: Range<usize>) -> (Vec<u32>, Vec<u32>) {
        assert!(
            seqs.start <= seqs.end && seqs.end <= self.num_seqs,
            "validation sequences {seqs:?} out of range 0..{}",
            self.num_seqs
        );
        let t = self.seq_len;
        let window = &self.tokens[seqs.start * t..seqs.end * t + 1];
        let inputs = window[..window.len() - 1].iter().map(|&x| x as u32).collect();
        let targets = window[1..].iter().map(|&x| x as u32).collect();
        (inputs, targets)
    }
}
