//! The scores a set of weights gets, as the reference's end of run reports them: test-time
//! training first when the config asks for it, then the non-sliding pass over whole
//! sequences and the sliding-window pass. `wgolf eval` (checkpoints, weights files and
//! artifacts) and the end of `wgolf train` both call [`score`], so the two print the same
//! numbers for the same weights.
use super::sliding;
use super::ttt::{self, Weights};
use super::{evaluate_sliding, evaluate_with, Scorer, ValData};
use crate::config::{Config, TttMode};
use crate::data::BpbAccumulator;
use crate::host::Device;
use crate::progress::{Progress, Unit};
use anyhow::Result;
use std::time::Instant;

/// What to score.
#[derive(Clone, Copy, Debug)]
pub struct ScoreOptions {
    /// Sequences of the non-sliding pass (0: the whole split); `None` skips it.
    pub whole_seqs: Option<usize>,
    /// Run the sliding-window pass (at `eval.stride`, over `eval.max_tokens`).
    pub sliding: bool,
}

/// The results of [`score`], each with the seconds it took.
#[derive(Debug, Default)]
pub struct Scores {
    /// The non-sliding pass (after train-then-score TTT when that ran).
    pub whole: Option<(BpbAccumulator, f64)>,
    /// The sliding pass (with score-first TTT, the chunked score while training).
    pub sliding: Option<(BpbAccumulator, f64)>,
    /// Seconds of train-then-score TTT (before the passes).
    pub ttt_secs: Option<f64>,
    /// The TTT kind that ran.
    pub ttt: TttMode,
}

impl Scores {
    /// A line that says which TTT ran, and whether the score is valid under the rules.
    pub fn ttt_label(&self) -> Option<&'static str> {
        match self.ttt {
            TttMode::Off => None,
            TttMode::TrainThenScore => Some("after TTT train-then-score: NOT valid under the challenge's rules"),
            TttMode::ScoreFirst => Some("with TTT score-first (each chunk scored before it is trained on)"),
        }
    }

    /// [`Scores::ttt_label`] of one pass: score-first TTT runs inside the sliding pass only,
    /// so the whole-sequence pass of such a run scored the weights as they came.
    pub fn ttt_label_of(&self, sliding: bool) -> Option<&'static str> {
        if self.ttt == TttMode::ScoreFirst && !sliding {
            None
        } else {
            self.ttt_label()
        }
    }
}

/// Scores `weights` (by reference name) on `device` (TTT's plan too, when configured).
pub fn score(cfg: &Config, device: &Device, val: &ValData, weights: &Weights, opts: ScoreOptions) -> Result<Scores> {
    let mut scores = Scores { ttt: cfg.eval.ttt, ..Scores::default() };
    let mut weights = weights.clone();
    if cfg.eval.ttt == TttMode::TrainThenScore {
        let start = Instant::now();
        weights = ttt::train_then_score(cfg, device, &val.set, &weights)?;
        scores.ttt_secs = Some(start.elapsed().as_secs_f64());
    }
    if let Some(seqs) = opts.whole_seqs {
        let start = Instant::now();
        let mut scorer = Scorer::whole_sequences(cfg, device)?;
        scorer.load_weights(&weights)?;
        let mut progress = Progress::new("eval", val.scored(seqs) as u64, Unit::Count);
        progress.show_rate(cfg.train.seq_len as f64, "tok/s");
        let acc = evaluate_with(&mut scorer, val, seqs, &mut progress)?;
        scores.whole = Some((acc, start.elapsed().as_secs_f64()));
    }
    if opts.sliding || cfg.eval.ttt == TttMode::ScoreFirst {
        let start = Instant::now();
        let stride = cfg.sliding_stride();
        let mut scorer = Scorer::sliding(cfg, device, stride)?;
        let acc = if cfg.eval.ttt == TttMode::ScoreFirst {
            let total = val.covered(cfg.eval_max_tokens());
            let (tokens, luts) = (val.set.tokens(), &val.luts);
            let mut score_chunk = |w: &Weights, range: std::ops::Range<usize>| {
                scorer.load_weights(w)?;
                sliding::score_targets(&mut scorer, tokens, luts, total, range, stride, &mut Progress::hidden())
            };
            ttt::score_first(cfg, device, &val.set, &weights, &mut score_chunk)?
        } else {
            scorer.load_weights(&weights)?;
            let total = sliding::scored_count(val.covered(cfg.eval_max_tokens()), cfg.train.seq_len, stride);
            let mut progress = Progress::new("sliding eval", total, Unit::Count);
            progress.show_rate(1.0, "tok/s");
            evaluate_sliding(&mut scorer, val, cfg.eval_max_tokens(), stride, &mut progress)?
        };
        scores.sliding = Some((acc, start.elapsed().as_secs_f64()));
    }
    Ok(scores)
}

/// The end of a training run's evaluation (record-spec.md sections 6-8): the exported
/// weights (the EMA when kept) packed into the artifact at `path`, read back from disk,
/// dequantized and scored: the roundtrip pass over `train.val_seqs` whole sequences, TTT
/// when `eval.ttt` asks for it, and the sliding pass when `eval.sliding` is on.
pub struct Submission {
    pub sizes: crate::quant::artifact::Sizes,
    /// Seconds to quantize, compress and write the artifact.
    pub pack_secs: f64,
    pub scores: Scores,
}

/// Packs and scores the weights `ex` holds for `plan`; see [`Submission`].
pub fn submit(
    cfg: &Config,
    plan: &crate::plan::Plan,
    ex: &mut dyn crate::exec::Executor,
    device: &Device,
    val: &ValData,
    path: &std::path::Path,
) -> Result<Submission> {
    let start = Instant::now();
    let exported = crate::checkpoint::model_weights(plan, ex)?;
    let sizes = crate::quant::artifact::write(path, cfg, plan, &exported)?;
    let pack_secs = start.elapsed().as_secs_f64();
    // Everything scored below comes from the file, as `wgolf eval --artifact` reads it.
    let art = crate::quant::artifact::read(path)?;
    let weights: Weights = art.weights.into_iter().map(|w| (w.name, w.values)).collect();
    let opts = ScoreOptions { whole_seqs: Some(cfg.train.val_seqs), sliding: cfg.eval.sliding };
    let scores = score(&art.config, device, val, &weights, opts)?;
    Ok(Submission { sizes, pack_secs, scores })
}
