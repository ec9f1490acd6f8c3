//! Sliding-window evaluation (record-spec.md section 7), as the reference's
//! `eval_val_sliding` counts it.
//!
//! Over a stream of `N` targets (target `i` is token `i + 1`, predicted from tokens `..=i`),
//! windows start at `ws = 0, stride, 2 stride, ...` while `ws < N`; each covers the targets
//! `[ws, min(ws + seq_len, N))` (length `wlen`). The window at 0 scores all its positions;
//! every other window scores its last `stride` positions, `max(wlen - stride, 0)..wlen`.
//! So every target past the first window is scored with at least `seq_len - stride` tokens
//! of context, and the trailing windows shorter than `seq_len` score the stream's last
//! targets again (the reference's quirk: they are counted once per window, and so are
//! their bytes).
use super::scorer::{Scorer, Window};
use crate::data::{BpbAccumulator, ByteLuts};
use crate::progress::Progress;
use anyhow::{bail, Result};
use std::ops::Range;

/// One window: targets `start..start + len` of the stream, the positions `score_from..len`
/// of it scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindow {
    pub start: usize,
    pub len: usize,
    pub score_from: usize,
}

impl SlidingWindow {
    /// The stream's targets it scores.
    pub fn scored_targets(&self) -> Range<usize> {
        self.start + self.score_from..self.start + self.len
    }
}

/// The reference's windows over `total` targets (none when `total`, `seq_len` or `stride`
/// is 0).
pub fn windows(total: usize, seq_len: usize, stride: usize) -> Vec<SlidingWindow> {
    if seq_len == 0 || stride == 0 {
        return Vec::new();
    }
    (0..total)
        .step_by(stride)
        .map(|start| {
            let len = (start + seq_len).min(total) - start;
            let score_from = if start == 0 { 0 } else { len.saturating_sub(stride) };
            SlidingWindow { start, len, score_from }
        })
        .collect()
}

/// Scores the targets `range` of `tokens` with the sliding window at `stride` on the
/// scorer's weights: the windows of [`windows`] over the sub-stream
/// `tokens[range.start..=range.end]` (so no context reaches before `range.start`), in
/// batches of the scorer's size. Bytes pair each target with its previous token, as the
/// reference does. `0..tokens.len() - 1` is the whole stream.
pub fn score_range(
    scorer: &mut Scorer,
    tokens: &[u16],
    luts: &ByteLuts,
    range: Range<usize>,
    stride: usize,
    progress: &mut Progress,
) -> Result<BpbAccumulator> {
    if range.end >= tokens.len() || range.start > range.end {
        bail!("sliding evaluation: targets {range:?} of a stream of {} tokens", tokens.len());
    }
    let stream = &tokens[range.start..=range.end];
    let all = windows(range.len(), scorer.seq_len(), stride);
    score_windows(scorer, stream, luts, &all, progress)
}

/// Scores, of the sliding evaluation over the whole stream of `total` targets, the windows
/// whose scored targets begin in `range`: their context may reach before `range` (tokens
/// already scored), never past their own targets. Chunks that tile `0..total` at multiples
/// of `stride` split the whole-stream evaluation exactly, which is what score-first TTT
/// needs.
pub fn score_targets(
    scorer: &mut Scorer,
    tokens: &[u16],
    luts: &ByteLuts,
    total: usize,
    range: Range<usize>,
    stride: usize,
    progress: &mut Progress,
) -> Result<BpbAccumulator> {
    if total >= tokens.len() {
        bail!("sliding evaluation: {total} targets of a stream of {} tokens", tokens.len());
    }
    let mine: Vec<SlidingWindow> = windows(total, scorer.seq_len(), stride)
        .into_iter()
        .filter(|w| range.contains(&w.scored_targets().start))
        .collect();
    score_windows(scorer, &tokens[..=total], luts, &mine, progress)
}

/// Scores `all` (windows over the targets of `stream`) in batches of the scorer's size.
fn score_windows(
    scorer: &mut Scorer,
    stream: &[u16],
    luts: &ByteLuts,
    all: &[SlidingWindow],
    progress: &mut Progress,
) -> Result<BpbAccumulator> {
    let mut acc = BpbAccumulator::new();
    let mut done = 0;
    while done < all.len() {
        // As many windows as fit the batch and its scored rows.
        let (mut end, mut rows) = (done, 0);
        while end < all.len() && end - done < scorer.batch() {
            let w = &all[end];
            if rows + (w.len - w.score_from) > scorer.scored_rows() {
                break;
            }
            rows += w.len - w.score_from;
            end += 1;
        }
        if end == done {
            bail!("sliding evaluation: a window scores more positions than the scorer has room for");
        }
        let batch: Vec<Window<'_>> = all[done..end]
            .iter()
            .map(|w| Window { tokens: &stream[w.start..w.start + w.len + 1], scored: w.score_from..w.len })
            .collect();
        let nll = scorer.score(&batch)?;
        add_scored(&mut acc, luts, &batch, &nll);
        done = end;
        // The read-back waited for the device, so the position is real.
        if progress.due() {
            progress.update(acc.tokens(), &format!("loss {:.4}", acc.val_loss()));
        }
    }
    progress.finish();
    Ok(acc)
}

/// The number of scored targets of the sliding evaluation over `total` targets (the
/// progress total): `total` plus the trailing windows' re-scored targets.
pub fn scored_count(total: usize, seq_len: usize, stride: usize) -> u64 {
    windows(total, seq_len, stride).iter().map(|w| (w.len - w.score_from) as u64).sum()
}

/// Adds the scored positions of `windows` (their NLLs in order in `nll`) with their bytes.
pub(super) fn add_scored(acc: &mut BpbAccumulator, luts: &ByteLuts, windows: &[Window<'_>], nll: &[f32]) {
    let mut k = 0;
    for w in windows {
        for pos in w.scored.clone() {
            acc.add(luts, u32::from(w.tokens[pos]), u32::from(w.tokens[pos + 1]), f64::from(nll[k]));
            k += 1;
        }
    }
}
