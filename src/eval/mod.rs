//! Evaluation: the forward-only scorer ([`scorer::Scorer`], an evaluation plan with its own
//! executor), the non-sliding validation pass (disjoint sequences, as the reference's
//! `eval_val`), the sliding-window pass ([`sliding`]), and the run's artifact ([`export`]).
//! It reads executors and files and never trains; the training loop calls it for periodic
//! validation and at the end of a run.
use crate::config::Config;
use crate::data::{BpbAccumulator, ByteLuts, Tokenizer, ValSet};
use crate::progress::{Progress, Unit};
use anyhow::Result;

pub mod export;
pub mod pipeline;
pub mod scorer;
pub mod sliding;
pub mod ttt;

pub use scorer::{Scorer, Window};

/// The validation sequences and the byte tables that turn their losses into bpb.
pub struct ValData {
    pub set: ValSet,
    pub luts: ByteLuts,
}

impl ValData {
    /// Opens the config's validation shards (windows of `train.seq_len`) and tokenizer.
    pub fn open(cfg: &Config) -> Result<Self> {
        let vocab = cfg.model.vocab_size;
        let set = ValSet::open(&cfg.data.dir, vocab, cfg.train.seq_len)?;
        let tokenizer = Tokenizer::load(&cfg.data.tokenizer)?;
        Ok(ValData { set, luts: ByteLuts::from_tokenizer(&tokenizer, vocab) })
    }

    /// How many sequences a pass over `max_seqs` (0: all) scores.
    pub fn scored(&self, max_seqs: usize) -> usize {
        let all = self.set.num_seqs();
        if max_seqs == 0 {
            all
        } else {
            max_seqs.min(all)
        }
    }

    /// How many targets a sliding pass over `max_tokens` (0: all) covers.
    pub fn covered(&self, max_tokens: usize) -> usize {
        let all = self.set.num_targets();
        if max_tokens == 0 {
            all
        } else {
            max_tokens.min(all)
        }
    }
}

/// Scores the first `max_seqs` validation sequences (all with 0), each whole with its own
/// context only, on the scorer's weights (the reference's `eval_val`). Batches are the
/// scorer's; the last one is short and its padding is not scored.
pub fn evaluate(scorer: &mut Scorer, val: &ValData, max_seqs: usize) -> Result<BpbAccumulator> {
    evaluate_with(scorer, val, max_seqs, &mut Progress::hidden())
}

/// [`evaluate`], reporting the sequences scored to `progress` (whose total should be
/// [`ValData::scored`]).
pub fn evaluate_with(
    scorer: &mut Scorer,
    val: &ValData,
    max_seqs: usize,
    progress: &mut Progress,
) -> Result<BpbAccumulator> {
    evaluate_seqs(scorer, val, 0..val.scored(max_seqs), progress)
}

/// The non-sliding pass over the validation sequences `seqs` (one rank's share of a
/// multi-process validation; the ranks' accumulators add up to the whole pass's).
pub fn evaluate_seqs(
    scorer: &mut Scorer,
    val: &ValData,
    seqs: std::ops::Range<usize>,
    progress: &mut Progress,
) -> Result<BpbAccumulator> {
    let total = seqs.end.min(val.set.num_seqs());
    let t = val.set.seq_len();
    let tokens = val.set.tokens();
    let mut acc = BpbAccumulator::new();
    let mut start = seqs.start;
    while start < total {
        let end = (start + scorer.batch()).min(total);
        let batch: Vec<Window<'_>> =
            (start..end).map(|i| Window { tokens: &tokens[i * t..(i + 1) * t + 1], scored: 0..t }).collect();
        let nll = scorer.score(&batch)?;
        sliding::add_scored(&mut acc, &val.luts, &batch, &nll);
        start = end;
        // The read-back above waited for the device, so the position is real.
        if progress.due() {
            progress.update((start - seqs.start) as u64, &format!("loss {:.4}", acc.val_loss()));
        }
    }
    progress.finish();
    Ok(acc)
}

/// The non-sliding pass over `train.val_seqs` sequences with a progress display labelled
/// `label`.
pub fn validate(scorer: &mut Scorer, cfg: &Config, val: &ValData, label: &str) -> Result<BpbAccumulator> {
    let mut progress = Progress::new(label, val.scored(cfg.train.val_seqs) as u64, Unit::Count);
    progress.show_rate(cfg.train.seq_len as f64, "tok/s");
    evaluate_with(scorer, val, cfg.train.val_seqs, &mut progress)
}

/// The sliding-window pass at `stride` over the first `max_tokens` validation targets (all
/// with 0), on the scorer's weights (the reference's `eval_val_sliding`).
pub fn evaluate_sliding(
    scorer: &mut Scorer,
    val: &ValData,
    max_tokens: usize,
    stride: usize,
    progress: &mut Progress,
) -> Result<BpbAccumulator> {
    let covered = val.covered(max_tokens);
    sliding::score_range(scorer, val.set.tokens(), &val.luts, 0..covered, stride, progress)
}
