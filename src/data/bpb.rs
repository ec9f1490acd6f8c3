//! Bits-per-byte accounting: the byte tables of a tokenizer and the evaluation accumulator.
//!
//! The challenge scores a model by `val_bpb = (val_loss / ln 2) x (tokens / bytes)`: the mean
//! cross-entropy in bits per token, times tokens per byte of text. The bytes are not read from
//! the text but credited per target token from three tables built from the tokenizer:
//!
//! - `base_bytes[id]`: the UTF-8 length of the piece without a leading `▁`; 1 for a byte
//!   piece; 0 for control, unknown and unused pieces.
//! - `has_leading_space[id]`: the piece starts with `▁`.
//! - `is_boundary[id]`: control, unknown and unused pieces (and ids past the tokenizer).
//!
//! Target `y` after input `x` is credited `base_bytes[y] + (has_leading_space[y] && !is_boundary[x])`:
//! the space is counted unless the token before is a boundary such as BOS. Summed over a
//! document this equals the UTF-8 length of SentencePiece's normalized text.

use super::tokenizer::{PieceType, Tokenizer};

/// The three per-id tables used to count the bytes each target token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteLuts {
    base_bytes: Vec<u16>,
    has_leading_space: Vec<bool>,
    is_boundary: Vec<bool>,
}

impl ByteLuts {
    /// Builds the tables for ids `0 .. max(tokenizer vocab, vocab_size)`; ids past the
    /// tokenizer's vocabulary (padding of a larger model vocab) are boundaries with 0 bytes.
    pub fn from_tokenizer(t: &Tokenizer, vocab_size: usize) -> Self {
        let n = t.vocab_size().max(vocab_size);
        let mut base_bytes = vec![0u16; n];
        let mut has_leading_space = vec![false; n];
        let mut is_boundary = vec![true; n];
        for (id, p) in t.pieces().iter().enumerate() {
            match p.kind {
                PieceType::Control | PieceType::Unknown | PieceType::Unused => continue,
                PieceType::Byte => {
                    is_boundary[id] = false;
                    base_bytes[id] = 1;
                }
                PieceType::Normal | PieceType::UserDefined => {
                    is_boundary[id] = false;
                    let text = match p.piece.strip_prefix('\u{2581}') {
                        Some(rest) => {
                            has_leading_space[id] = true;
                            rest
                        }
                        None => p.piece.as_str(),
                    };
                    base_bytes[id] = text.len().min(u16::MAX as usize) as u16;
                }
            }
        }
        ByteLuts { base_bytes, has_leading_space, is_boundary }
    }

    /// Number of ids covered.
    pub fn len(&self) -> usize {
        self.base_bytes.len()
    }

    /// Whether the tables cover no id.
    pub fn is_empty(&self) -> bool {
        self.base_bytes.is_empty()
    }

    /// Per id: UTF-8 bytes of the piece without its leading `▁` (0 for boundaries).
    pub fn base_bytes(&self) -> &[u16] {
        &self.base_bytes
    }

    /// Per id: whether the piece starts with `▁` (one more byte unless after a boundary).
    pub fn has_leading_space(&self) -> &[bool] {
        &self.has_leading_space
    }

    /// Per id: control, unknown and unused pieces, after which no space byte is credited.
    pub fn is_boundary(&self) -> &[bool] {
        &self.is_boundary
    }

    /// Bytes credited to target `target` whose preceding input token is `prev`. Ids outside
    /// the tables count as boundaries with 0 bytes.
    #[inline]
    pub fn target_bytes(&self, prev: u32, target: u32) -> u64 {
        let t = target as usize;
        let Some(&base) = self.base_bytes.get(t) else {
            return 0;
        };
        let prev_boundary = self.is_boundary.get(prev as usize).copied().unwrap_or(true);
        base as u64 + (self.has_leading_space[t] && !prev_boundary) as u64
    }

    /// Total bytes of a batch of `(inputs[i], targets[i])` pairs (the shorter length rules).
    pub fn batch_bytes(&self, inputs: &[u32], targets: &[u32]) -> u64 {
        inputs.iter().zip(targets).map(|(&x, &y)| self.target_bytes(x, y)).sum()
    }
}

/// Running sums for `val_loss` and `val_bpb`: the summed natural-log loss (f64), the number
/// of scored targets and the bytes they stand for. Each rank accumulates its share; the
/// shares are combined with [`BpbAccumulator::merge`] (the all-reduce).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BpbAccumulator {
    /// Sum of per-target negative log-likelihoods, in nats.
    pub loss_sum: f64,
    /// Number of scored targets (BOS targets included: they add loss and 0 bytes).
    pub tokens: u64,
    /// Bytes credited to the scored targets.
    pub bytes: u64,
}

impl BpbAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one scored target: its negative log-likelihood `nll` (nats), credited with the
    /// bytes of `target` after `prev`.
    #[inline]
    pub fn add(&mut self, luts: &ByteLuts, prev: u32, target: u32, nll: f64) {
        self.loss_sum += nll;
        self.tokens += 1;
        self.bytes += luts.target_bytes(prev, target);
    }

    /// Adds a batch with per-target losses (`inputs`, `targets` and `nlls` of equal length;
    /// the shortest rules).
    pub fn add_batch(&mut self, luts: &ByteLuts, inputs: &[u32], targets: &[u32], nlls: &[f32]) {
        for ((&x, &y), &nll) in inputs.iter().zip(targets).zip(nlls) {
            self.add(luts, x, y, nll as f64);
        }
    }

    /// Adds a batch whose loss is known only as a mean over its targets, as the reference
    /// does (`mean x count`, in f64).
    pub fn add_batch_mean(&mut self, luts: &ByteLuts, inputs: &[u32], targets: &[u32], mean_nll: f64) {
        let n = inputs.len().min(targets.len());
        self.loss_sum += mean_nll * n as f64;
        self.tokens += n as u64;
        self.bytes += luts.batch_bytes(inputs, targets);
    }

    /// Adds another accumulator's sums (combining ranks or batches).
    pub fn merge(&mut self, other: &Self) {
        self.loss_sum += other.loss_sum;
        self.tokens += other.tokens;
        self.bytes += other.bytes;
    }

    /// Mean natural-log cross-entropy per scored target (NaN when nothing was added).
    pub fn val_loss(&self) -> f64 {
        self.loss_sum / self.tokens as f64
    }

    /// Tokens per byte of text (NaN when no bytes were counted).
    pub fn tokens_per_byte(&self) -> f64 {
        self.tokens as f64 / self.bytes as f64
    }

    /// Bits per byte: `val_loss / ln 2 x tokens / bytes` (NaN when empty).
    pub fn val_bpb(&self) -> f64 {
        self.val_loss() / std::f64::consts::LN_2 * self.tokens_per_byte()
    }

    /// Number of scored targets.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Bytes credited to them.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
