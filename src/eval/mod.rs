//! Evaluation: the validation scorer (forward plan only, whole sequences, bpb), the
//! exported weights swapped in for scoring, and the run's artifact ([`export`]). It reads
//! executors and files and never trains; the training loop calls it at the end of a run.
use crate::checkpoint;
use crate::config::Config;
use crate::data::{BpbAccumulator, ByteLuts, Tokenizer, ValSet};
use crate::exec::Executor;
use crate::host::{write_inputs, write_values};
use crate::plan::{Phase, Plan};
use crate::progress::Progress;
use anyhow::Result;

pub mod export;
pub mod ttt;

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
}

/// Scores the first `max_seqs` validation sequences (all with 0) through the forward plan,
/// on the parameters the executor holds. The last batch is padded with sequence 0 and only
/// its real rows are counted.
pub fn evaluate(
    ex: &mut dyn Executor,
    plan: &Plan,
    cfg: &Config,
    val: &ValData,
    max_seqs: usize,
) -> Result<BpbAccumulator> {
    evaluate_with(ex, plan, cfg, val, max_seqs, &mut Progress::hidden())
}

/// [`evaluate`], reporting the sequences scored to `progress` (whose total should be
/// [`ValData::scored`]).
pub fn evaluate_with(
    ex: &mut dyn Executor,
    plan: &Plan,
    cfg: &Config,
    val: &ValData,
    max_seqs: usize,
    progress: &mut Progress,
) -> Result<BpbAccumulator> {
    let total = val.scored(max_seqs);
    let (b, t) = (cfg.train.batch_seqs, cfg.train.seq_len);
    let mut acc = BpbAccumulator::new();
    let mut start = 0;
    while start < total {
        let real = b.min(total - start);
        let (mut x, mut y) = val.set.batch(start..start + real);
        if real < b {
            let (px, py) = val.set.sequence(0);
            for _ in real..b {
                x.extend_from_slice(&px);
                y.extend_from_slice(&py);
            }
        }
        write_inputs(ex, plan, cfg, &x, &y)?;
        ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len())?;
        let nll = ex.read(plan.io().loss_rows)?;
        acc.add_batch(&val.luts, &x[..real * t], &y[..real * t], &nll[..real * t]);
        start += real;
        // The read-back above waited for the device, so the position is real.
        if progress.due() {
            progress.update(start as u64, &format!("loss {:.4}", acc.val_loss()));
        }
    }
    progress.finish();
    Ok(acc)
}

/// Scores `train.val_seqs` sequences on the weights the run exports (the EMA when kept):
/// swaps them into the parameters for the pass and restores the training parameters
/// afterwards.
pub fn evaluate_export(
    ex: &mut dyn Executor,
    plan: &Plan,
    cfg: &Config,
    val: &ValData,
    progress: &mut Progress,
) -> Result<BpbAccumulator> {
    let has_ema = plan.params.iter().any(|s| checkpoint::ema_of(plan, s.param).is_some());
    if !has_ema {
        return evaluate_with(ex, plan, cfg, val, cfg.train.val_seqs, progress);
    }
    let raw: Vec<_> = plan.params.iter().map(|s| Ok((s.param, ex.read(s.param)?))).collect::<Result<_>>()?;
    let exported = checkpoint::model_weights(plan, ex)?;
    write_values(ex, &exported)?;
    let acc = evaluate_with(ex, plan, cfg, val, cfg.train.val_seqs, progress)?;
    write_values(ex, &raw)?;
    Ok(acc)
}
