//! The forward-only scorer: an evaluation plan ([`crate::model::build_eval_plan`]) with its
//! own executor, which takes a batch of token windows and returns the negative
//! log-likelihood of each scored position. The non-sliding and sliding evaluations and
//! test-time training all score through it.
use crate::checkpoint;
use crate::config::Config;
use crate::exec::{Executor, HostData};
use crate::host::Device;
use crate::plan::{Phase, Plan, Role};
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::ops::Range;

/// One window of a batch: `tokens` holds its `len + 1` tokens (inputs `tokens[..len]`,
/// targets `tokens[1..]`, `len <= train.seq_len`), and `scored` the positions (of `0..len`)
/// whose target is scored. A window shorter than the sequence is padded with token 0, which
/// the causal attention keeps from reaching the real positions.
#[derive(Clone, Debug)]
pub struct Window<'a> {
    pub tokens: &'a [u16],
    pub scored: Range<usize>,
}

impl Window<'_> {
    /// The number of scored targets.
    pub fn scored_len(&self) -> usize {
        self.scored.len()
    }
}

/// An evaluation plan and the executor that runs it.
pub struct Scorer {
    plan: Plan,
    ex: Box<dyn Executor>,
    seq: usize,
    batch: usize,
    scored_rows: usize,
    bigram_buckets: usize,
}

impl Scorer {
    /// A scorer of `batch` windows of `train.seq_len`, with room for `scored_rows` scored
    /// positions per batch, on `device` (shared with the training executor on a GPU).
    pub fn new(cfg: &Config, device: &Device, batch: usize, scored_rows: usize) -> Result<Scorer> {
        let plan = crate::model::build_eval_plan(cfg, batch, scored_rows)?;
        let ex = device.executor(&plan)?;
        let (seq, bigram_buckets) = (cfg.train.seq_len, cfg.model.bigram_buckets);
        Ok(Scorer { plan, ex, seq, batch, scored_rows, bigram_buckets })
    }

    /// The non-sliding scorer: `eval.batch_seqs` whole sequences, every position scored.
    pub fn whole_sequences(cfg: &Config, device: &Device) -> Result<Scorer> {
        let b = cfg.eval.batch_seqs;
        Scorer::new(cfg, device, b, b * cfg.train.seq_len)
    }

    /// The sliding scorer at `stride`: `eval.batch_seqs` windows, room for one window scored
    /// whole (the first) and `stride` positions of each other.
    pub fn sliding(cfg: &Config, device: &Device, stride: usize) -> Result<Scorer> {
        let (b, t) = (cfg.eval.batch_seqs, cfg.train.seq_len);
        Scorer::new(cfg, device, b, t + (b - 1) * stride.clamp(1, t))
    }

    /// The evaluation plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Positions per window (`train.seq_len`).
    pub fn seq_len(&self) -> usize {
        self.seq
    }

    /// Windows per batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Scored positions per batch.
    pub fn scored_rows(&self) -> usize {
        self.scored_rows
    }

    /// The executor's adapter, for log lines.
    pub fn describe(&self) -> String {
        self.ex.describe()
    }

    /// Loads weights by parameter name (the reference's state-dict names). Every parameter
    /// of the plan must be given, with its element count; unknown names are an error.
    pub fn load_weights(&mut self, weights: &[(String, Vec<f32>)]) -> Result<()> {
        let params: HashMap<&str, usize> = self
            .plan
            .with_role(|r| matches!(r, Role::Param { .. }))
            .into_iter()
            .map(|id| (self.plan.tensor(id).name.as_str(), id))
            .collect();
        let mut seen = 0;
        for (name, values) in weights {
            let Some(&id) = params.get(name.as_str()) else {
                bail!("weights: the evaluation plan has no parameter {name}");
            };
            let want = self.plan.tensor(id).numel();
            if values.len() != want {
                bail!("weights: {name} has {} values, the evaluation plan expects {want}", values.len());
            }
            self.ex.write(id, HostData::F32(values))?;
            seen += 1;
        }
        if seen != params.len() {
            let given: Vec<&str> = weights.iter().map(|(n, _)| n.as_str()).collect();
            let missing: Vec<&&str> = params.keys().filter(|n| !given.contains(n)).collect();
            bail!("weights: {} parameter(s) of the evaluation plan not given: {missing:?}", missing.len());
        }
        Ok(())
    }

    /// Loads the weights a training run exports (the EMA when it keeps one) out of the
    /// training plan's executor.
    pub fn load_exported(&mut self, plan: &Plan, ex: &mut dyn Executor) -> Result<()> {
        let named: Vec<(String, Vec<f32>)> =
            checkpoint::model_weights(plan, ex)?.into_iter().map(|(id, v)| (plan.tensor(id).name.clone(), v)).collect();
        self.load_weights(&named)
    }

    /// Runs one batch (at most [`Scorer::batch`] windows, at most [`Scorer::scored_rows`]
    /// scored positions in all) and returns the NLL (nats) of every scored position, window
    /// by window in order.
    pub fn score(&mut self, windows: &[Window<'_>]) -> Result<Vec<f32>> {
        let (t, cap) = (self.seq, self.scored_rows);
        if windows.len() > self.batch {
            bail!("scorer: {} windows for a batch of {}", windows.len(), self.batch);
        }
        let total: usize = windows.iter().map(Window::scored_len).sum();
        if total > cap {
            bail!("scorer: {total} scored positions for room of {cap}");
        }
        let mut ids = vec![0u32; self.batch * t];
        let (mut rows, mut targets) = (vec![0u32; cap], vec![0u32; cap]);
        let mut k = 0;
        for (w, win) in windows.iter().enumerate() {
            let len = win.tokens.len().saturating_sub(1);
            if len == 0 || len > t || win.scored.end > len {
                bail!(
                    "scorer: window {w} has {len} positions and scores {:?} (expected 1..={t} and a range inside)",
                    win.scored
                );
            }
            for (j, &tok) in win.tokens[..len].iter().enumerate() {
                ids[w * t + j] = u32::from(tok);
            }
            for pos in win.scored.clone() {
                rows[k] = (w * t + pos) as u32;
                targets[k] = u32::from(win.tokens[pos + 1]);
                k += 1;
            }
        }
        let io = *self.plan.io();
        self.ex.write(io.ids, HostData::U32(&ids))?;
        if let Some(b) = io.bigram_ids {
            let buckets = crate::model::bigram_buckets(&ids, t, self.bigram_buckets);
            self.ex.write(b, HostData::U32(&buckets))?;
        }
        self.ex.write(io.scored.expect("an evaluation plan"), HostData::U32(&rows))?;
        self.ex.write(io.targets, HostData::U32(&targets))?;
        self.ex.run(Phase::Forward, 0..self.plan.steps(Phase::Forward).len())?;
        let mut nll = self.ex.read(io.loss_rows)?;
        nll.truncate(total);
        Ok(nll)
    }
}
