//! The training loop: data in, plan replayed, metrics and checkpoints out.
//!
//! Each optimizer step zeroes the parameter gradients, runs `grad_accum` micro-batches
//! (forward + backward, each zeroing the activation gradients first), writes the step's
//! hyperparameters (scheduled learning rates, Muon momentum) and runs the optimizer pass
//! (clip, AdamW / Muon, EMA, as the plan has them): `step.rs`. The loss is read back only
//! every `log_every` steps, which is also when throughput is measured (`metrics.rs`). The
//! schedules are in `schedule.rs`. Every `eval.val_every` steps, and at the end after the
//! checkpoint is saved, [`crate::eval`] scores the weights the run exports (the EMA when it
//! keeps one) on its own forward-only plan (sharing the training executor's device) and the
//! loop writes a `val` event; the weights file is written last; [`crate::report`] then draws `curves.png` and writes `report.md`.
//! Progress (a live bar on a terminal, plain lines elsewhere) is [`crate::progress`]'s.
//! With [`DistOptions`] (`wgolf train --nproc-per-node N`) the process is one rank of a
//! group: its own share of each step's micro-batches, gradients averaged over the ranks
//! before every optimizer pass, and rank 0 alone writing and logging.
use crate::checkpoint::{self, Loaded};
use crate::config::Config;
use crate::data::{BpbAccumulator, TrainStream};
use crate::eval::{self, Scorer, ValData};
use crate::exec::Executor;
use crate::host::Device;
use crate::plan::Plan;
use crate::progress::{Progress, Unit};
use anyhow::{Context, Result};
use metrics::{Clock, Metrics, Throughput};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

mod agreement;
mod buckets;
mod metrics;
mod schedule;
mod step;

// A run's options name its backend; `make_executor` stays reachable here for the callers
// that build executors next to a run.
pub use crate::host::{make_executor, Backend};
pub use step::{init_state, train_step, write_hypers};

/// Options of a training run beyond the config.
pub struct TrainOptions {
    /// Where metrics.jsonl, config.toml, checkpoint.safetensors and model.safetensors go.
    pub out_dir: PathBuf,
    pub backend: Backend,
    /// Continue from this checkpoint (of the same config) instead of initializing.
    pub resume: Option<Loaded>,
    /// Also write the checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// The config file the config was loaded from, for the report's diff (None: not shown).
    pub config_source: Option<PathBuf>,
    /// This process's place in a multi-process run on one node (None: a single process).
    pub dist: Option<DistOptions>,
}

/// One rank of a run of `world` processes on one node (`wgolf train --nproc-per-node N`):
/// each runs `grad_accum / world` of every step's micro-batches on its own device, on its
/// span of the training stream, and the parameter gradients are averaged over the ranks
/// ([`crate::dist::Group`]: the node's shared memory, or MPI) before every optimizer pass. Rank 0 alone writes the run
/// directory and logs; the others print only errors.
#[derive(Clone, Debug)]
pub struct DistOptions {
    pub rank: usize,
    pub world: usize,
    /// Names the shared-memory segment: unique per launch.
    pub run_id: String,
    /// The bound on every wait for another rank.
    pub timeout: std::time::Duration,
    /// Launched by `mpirun` (feature `mpi`): the collectives go through MPI, with the nodes
    /// grouped as this says for the hierarchical mean. None: the node's shared memory alone.
    pub mpi: Option<crate::dist::MpiNodes>,
}

impl TrainOptions {
    /// A new run into `out_dir` on `backend`, checkpointed at the end only.
    pub fn new(out_dir: impl Into<PathBuf>, backend: Backend) -> Self {
        TrainOptions {
            out_dir: out_dir.into(),
            backend,
            resume: None,
            checkpoint_every: 0,
            config_source: None,
            dist: None,
        }
    }
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub steps: usize,
    pub last_train_loss: f32,
    pub val_loss: f64,
    pub val_bpb: f64,
    pub val_tokens: u64,
    pub val_bytes: u64,
    /// Mean over the run, excluding the first logged window (pipeline builds, warm-up).
    pub tokens_per_s: f64,
    pub step_ms: f64,
    pub adapter: String,
}

/// Trains `cfg` end to end (or resumes) and writes `metrics.jsonl`, `config.toml`,
/// `checkpoint.safetensors` and `model.safetensors` into the output directory.
pub fn train(cfg: &Config, opts: TrainOptions) -> Result<TrainSummary> {
    let mut run = Run::setup(cfg, &opts)?;
    while run.step < cfg.train.steps {
        if run.advance()? {
            break;
        }
    }
    run.finish()
}

/// A run in progress: what setup built, and what the loop carries from step to step.
struct Run<'a> {
    /// The run's config (what config.toml, the checkpoint and the logs show).
    cfg: &'a Config,
    /// This rank's config: `cfg` with `grad_accum` divided by the world size.
    local: Config,
    /// The other ranks of a multi-process run.
    group: Option<crate::dist::Group>,
    /// The parameter gradients in the buckets they are averaged in (empty without a group).
    buckets: Vec<step::GradBucket>,
    /// Distributed Muon's exchange buffer (see `step::DataParallel`).
    muon_exchange: Vec<f32>,
    opts: &'a TrainOptions,
    plan: Plan,
    ex: Box<dyn Executor>,
    /// The training executor's device, which the evaluation scorer shares.
    device: Device,
    /// The validation scorer, built at the first validation.
    scorer: Option<Scorer>,
    stream: TrainStream,
    val: ValData,
    /// None on ranks other than 0, which write nothing.
    metrics: Option<Metrics>,
    adapter: String,
    first_step: usize,
    /// Steps done (the next step's 0-based index).
    step: usize,
    last_loss: f32,
    clock: Clock,
    throughput: Throughput,
    progress: Progress,
    /// (stage, seconds) for the report.
    stages: Vec<(String, f64)>,
}

impl<'a> Run<'a> {
    /// Opens the data, builds the plan and the executor, prepares the output directory, and
    /// initializes the state or restores it from the checkpoint.
    fn setup(cfg: &'a Config, opts: &'a TrainOptions) -> Result<Self> {
        let setup_start = Instant::now();
        let local = local_config(cfg, opts.dist.as_ref())?;
        let mut stream = TrainStream::open(&cfg.data.dir, cfg.model.vocab_size)?;
        let val = ValData::open(cfg)?;
        let world = opts.dist.as_ref().map_or(1, |d| d.world);
        let plan = crate::model::build_rank_plan(&local, world)?;
        let group = match &opts.dist {
            Some(d) => Some(join_group(cfg, &plan, d)?),
            None => None,
        };
        let leader = opts.dist.as_ref().is_none_or(|d| d.rank == 0);
        let out = &opts.out_dir;
        if leader {
            std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
            crate::fsutil::write_atomic(&out.join("config.toml"), toml::to_string(cfg)?.as_bytes())?;
        }

        let setup = Instant::now();
        let device = Device::open(&opts.backend)?;
        let mut ex = device.executor(&plan)?;
        let adapter = ex.describe();
        let (first_step, elapsed_before) = match &opts.resume {
            Some(ck) => {
                checkpoint::restore_checkpoint(ck, &plan, ex.as_mut())?;
                stream.seek(&ck.stream()?)?;
                (ck.step()?, ck.elapsed_s()?)
            }
            None => {
                init_state(ex.as_mut(), &plan, cfg.train.seed)?;
                (0, 0.0)
            }
        };
        let mut metrics = None;
        if leader {
            let (m, cut) = Metrics::open(&out.join("metrics.jsonl"), opts.resume.as_ref().map(|_| first_step))?;
            if cut > 0 {
                eprintln!("metrics.jsonl: cut {cut} lines logged after the checkpoint of step {first_step}");
            }
            announce(cfg, &plan, first_step, &adapter, setup.elapsed().as_secs_f64(), opts.dist.as_ref());
            metrics = Some(m);
        }
        metrics.as_mut().map_or(Ok(()), |m| m.event(json!({"event": if opts.resume.is_some() { "resume" } else { "start" }, "step": first_step, "adapter": adapter, "device": ex.device(), "params": plan.param_count(), "step_tokens": cfg.step_tokens(), "config": cfg, "version": env!("CARGO_PKG_VERSION"), "commit": crate::report::COMMIT, "world_size": world})))?;
        let mut progress = Progress::new("train", cfg.train.steps as u64, Unit::Count);
        progress.show_rate(cfg.step_tokens() as f64, "tok/s");
        if cfg.train.max_wallclock_s > 0.0 {
            progress.set_deadline(cfg.train.max_wallclock_s - elapsed_before);
        }
        let buckets = match group {
            Some(_) => buckets::gradient_buckets(&plan, (cfg.train.allreduce_bucket_mb * 1e6) as usize),
            None => Vec::new(),
        };
        Ok(Run {
            cfg,
            local,
            group,
            buckets,
            muon_exchange: Vec::new(),
            opts,
            plan,
            ex,
            device,
            scorer: None,
            stream,
            val,
            metrics,
            adapter,
            first_step,
            step: first_step,
            last_loss: f32::NAN,
            clock: Clock::start(elapsed_before),
            throughput: Throughput::new(first_step),
            progress,
            stages: vec![("setup (data, plan, executor, init)".into(), setup_start.elapsed().as_secs_f64())],
        })
    }

    /// Runs one optimizer step, then logs and checkpoints when due. Returns whether the
    /// wall-clock cap stops the run here.
    fn advance(&mut self) -> Result<bool> {
        let (cfg, t) = (self.cfg, &self.cfg.train);
        let scale = cfg.lr_scale_at(self.step, self.agreed_elapsed()?);
        step::train_step_on(
            self.ex.as_mut(),
            &self.plan,
            &self.local,
            &mut self.stream,
            self.step,
            scale,
            self.group.as_mut().map(|group| step::DataParallel {
                group,
                buckets: &self.buckets,
                exchange: &mut self.muon_exchange,
            }),
        )?;
        self.step += 1;
        if cfg.needs_wallclock() {
            self.ex.sync()?;
        }
        let step = self.step;
        let capped = cfg.wallclock_reached(self.agreed_elapsed()?);
        if step.is_multiple_of(t.log_every) || step == t.steps || step == self.first_step + 1 || capped {
            self.log(scale)?;
        }
        if self.progress.due() {
            // Wait for the device so that the bar shows steps done, not steps submitted.
            self.ex.sync()?;
            let loss = if self.last_loss.is_finite() { format!("loss {:.4}", self.last_loss) } else { "loss -".into() };
            if self.leader() {
                self.progress.update(step as u64, &loss);
            }
        }
        let val_every = cfg.eval.val_every;
        if val_every > 0 && step.is_multiple_of(val_every) && step < t.steps && !capped {
            let start = Instant::now();
            // Every rank scores its share of the sequences; rank 0 reports the sums.
            let acc = self.validate("val", true)?;
            let secs = start.elapsed().as_secs_f64();
            self.clock.exclude(secs);
            self.throughput.exclude(secs);
            self.println(&format!(
                "step {step:>6}/{} val_loss {:.4} val_bpb {:.4} ({secs:.1} s)",
                t.steps,
                acc.val_loss(),
                acc.val_bpb()
            ));
            self.val_event(&acc, self.clock.elapsed())?;
        }
        let every = self.opts.checkpoint_every;
        if every > 0 && step.is_multiple_of(every) && step < t.steps && !capped {
            self.check_ranks_agree("the checkpoint")?;
            if self.leader() {
                self.save_checkpoint(self.clock.elapsed())?;
            }
        }
        if capped {
            self.println(&format!("stopping at step {step}: the {} s training-time cap is reached", t.max_wallclock_s));
        }
        Ok(capped)
    }

    /// On several ranks: that every rank's parameters, optimizer state and EMA equal rank 0's
    /// (see `agreement.rs`), before rank 0 writes them as the run's (`what`). Every rank calls
    /// it at the same point; a single process has nothing to compare.
    fn check_ranks_agree(&mut self, what: &str) -> Result<()> {
        let Some(group) = self.group.as_mut() else { return Ok(()) };
        let tensors = agreement::check_ranks_agree(group, &self.plan, self.ex.as_mut(), self.step, what)?;
        let world = group.world();
        self.println(&format!(
            "step {}: the {world} ranks agree on all {tensors} state tensors (weights, optimizer state, EMA) before {what}",
            self.step
        ));
        Ok(())
    }

    /// Whether this process writes the run directory and logs (rank 0, or a single process).
    fn leader(&self) -> bool {
        self.group.as_ref().is_none_or(|g| g.rank() == 0)
    }

    /// A log line, from rank 0 only.
    fn println(&self, line: &str) {
        if self.leader() {
            self.progress.println(line);
        }
    }

    /// A metrics event, from rank 0 only.
    fn event(&mut self, value: serde_json::Value) -> Result<()> {
        match self.metrics.as_mut() {
            Some(m) => m.event(value),
            None => Ok(()),
        }
    }

    /// The training time the schedules and the stop rule see: on several ranks, the slowest
    /// rank's (`all_reduce_max_f64`), so that every rank takes the same decisions.
    fn agreed_elapsed(&mut self) -> Result<f64> {
        let mut elapsed = [self.clock.elapsed()];
        if let Some(group) = self.group.as_mut().filter(|_| self.cfg.needs_wallclock()) {
            group.all_reduce_max_f64(&mut elapsed)?;
        }
        Ok(elapsed[0])
    }

    /// Reads the loss back (waiting for the GPU), ends the throughput window, and writes the
    /// log line and the `train` event. A non-finite loss ends the run with an error.
    fn log(&mut self, scale: f32) -> Result<()> {
        let (cfg, step) = (self.cfg, self.step);
        let mut loss = self.ex.read(self.plan.io().loss_total)?[0];
        if let Some(group) = self.group.as_mut() {
            // Each rank's loss is the mean over its tokens; the step's is the mean over ranks.
            let mut sum = [loss as f64];
            group.all_reduce_sum_f64(&mut sum)?;
            loss = (sum[0] / group.world() as f64) as f32;
        }
        self.last_loss = loss;
        let (step_ms, tok_s) = self.throughput.lap(step, cfg.step_tokens());
        if !loss.is_finite() {
            anyhow::bail!("training diverged: loss {loss} at step {step}; lower the learning rates");
        }
        self.println(&format!(
            "step {step:>6}/{} loss {loss:.4} lr x{scale:.3} {step_ms:8.1} ms/step {tok_s:10.0} tok/s",
            cfg.train.steps
        ));
        self.event(json!({"event": "train", "step": step, "train_loss": loss, "lr_scale": scale, "step_ms": step_ms, "tokens_per_s": tok_s, "elapsed_s": self.clock.elapsed()}))
    }

    /// Scores `train.val_seqs` validation sequences on the exported weights, through the
    /// evaluation scorer (built on first use). With several ranks each scores its contiguous
    /// share of the sequences and the loss, token and byte sums are added over the ranks
    /// (`all_reduce_sum_f64`) when `sharded` (every rank must call it then); the end of the
    /// run scores on rank 0 alone (see `finish`).
    fn validate(&mut self, label: &str, sharded: bool) -> Result<BpbAccumulator> {
        self.build_scorer()?;
        let scorer = self.scorer.as_mut().expect("built above");
        scorer.load_exported(&self.plan, self.ex.as_mut())?;
        let Some(group) = self.group.as_mut().filter(|_| sharded) else {
            return eval::validate(scorer, self.cfg, &self.val, label);
        };
        let n = self.val.scored(self.cfg.train.val_seqs);
        let (world, rank) = (group.world(), group.rank());
        let share = n * rank / world..n * (rank + 1) / world;
        let mut progress = Progress::new(label, share.len() as u64, Unit::Count);
        let acc = eval::evaluate_seqs(scorer, &self.val, share, &mut progress)?;
        let mut sums = [acc.loss_sum, acc.tokens as f64, acc.bytes as f64];
        group.all_reduce_sum_f64(&mut sums)?;
        Ok(BpbAccumulator { loss_sum: sums[0], tokens: sums[1] as u64, bytes: sums[2] as u64 })
    }

    /// The same score on the trained parameters themselves rather than their EMA: `None`
    /// when the plan keeps no EMA (then the two are the same weights).
    fn validate_raw(&mut self) -> Result<Option<BpbAccumulator>> {
        let plan = &self.plan;
        if plan.params.iter().all(|s| checkpoint::ema_of(plan, s.param).is_none()) {
            return Ok(None);
        }
        let raw: Vec<(String, Vec<f32>)> = plan
            .params
            .iter()
            .map(|s| Ok((plan.tensor(s.param).name.clone(), self.ex.read(s.param)?)))
            .collect::<Result<_>>()?;
        self.build_scorer()?;
        let scorer = self.scorer.as_mut().expect("built above");
        scorer.load_weights(&raw)?;
        eval::validate(scorer, self.cfg, &self.val, "validation (raw)").map(Some)
    }

    /// The whole-sequence scorer on the training device, built on first use.
    fn build_scorer(&mut self) -> Result<()> {
        if self.scorer.is_none() {
            self.scorer = Some(Scorer::whole_sequences(self.cfg, &self.device)?);
        }
        Ok(())
    }

    /// The submission stages after training: pack the artifact, score it from the file (the
    /// roundtrip, TTT when configured, the sliding window), each timed, printed the way the
    /// reference logs it and written to metrics.jsonl.
    fn submission(&mut self, elapsed_s: f64) -> Result<()> {
        let (cfg, step) = (self.cfg, self.step);
        let path = self.opts.out_dir.join(ARTIFACT_NAME);
        let sub = eval::pipeline::submit(cfg, &self.plan, self.ex.as_mut(), &self.device, &self.val, &path)?;
        let sz = sub.sizes;
        let limit = crate::quant::artifact::LIMIT;
        let verdict = if sz.total <= limit { "under" } else { "OVER" };
        eprintln!(
            "artifact {}: {} bytes ({verdict} the {limit}-byte limit): weights {}, code {}, header {} ({:.1} s)",
            path.display(),
            sz.total,
            sz.weights,
            sz.code,
            sz.header,
            sub.pack_secs
        );
        self.stages.push(("pack (artifact)".into(), sub.pack_secs));
        self.event(json!({"event": "artifact", "step": step, "bytes": sz.total, "weights_bytes": sz.weights, "code_bytes": sz.code, "header_bytes": sz.header, "limit": limit, "under_limit": sz.total <= limit, "seconds": sub.pack_secs, "elapsed_s": elapsed_s}))?;
        let s = &sub.scores;
        let note = |ttt: Option<&str>| ttt.map(|n| format!(" ({n})")).unwrap_or_default();
        if let Some(secs) = s.ttt_secs {
            self.stages.push(("ttt train-then-score (NOT valid under the rules)".into(), secs));
            self.event(json!({"event": "ttt", "step": step, "kind": "train-then-score", "valid_under_rules": false, "seconds": secs}))?;
        }
        if let Some((acc, secs)) = &s.whole {
            let ttt = s.ttt_label_of(false);
            eprintln!(
                "final_int6_roundtrip val_loss:{:.8} val_bpb:{:.8}{} ({secs:.1} s)",
                acc.val_loss(),
                acc.val_bpb(),
                note(ttt)
            );
            self.stages.push(("roundtrip eval".into(), *secs));
            self.event(json!({"event": "roundtrip", "step": step, "val_loss": acc.val_loss(), "val_bpb": acc.val_bpb(), "val_tokens": acc.tokens(), "val_bytes": acc.bytes(), "ttt": ttt, "seconds": secs}))?;
        }
        if let Some((acc, secs)) = &s.sliding {
            let (stride, ttt) = (cfg.sliding_stride(), s.ttt_label_of(true));
            eprintln!(
                "final_sliding_s{stride} val_loss:{:.8} val_bpb:{:.8}{} ({secs:.1} s)",
                acc.val_loss(),
                acc.val_bpb(),
                note(ttt)
            );
            self.stages.push((format!("sliding eval s{stride}"), *secs));
            self.event(json!({"event": "sliding", "step": step, "stride": stride, "val_loss": acc.val_loss(), "val_bpb": acc.val_bpb(), "val_tokens": acc.tokens(), "val_bytes": acc.bytes(), "ttt": ttt, "seconds": secs}))?;
        }
        Ok(())
    }

    /// The `val` event of a validation at the current step.
    fn val_event(&mut self, acc: &BpbAccumulator, elapsed_s: f64) -> Result<()> {
        self.event(json!({"event": "val", "step": self.step, "val_loss": acc.val_loss(), "val_bpb": acc.val_bpb(), "val_tokens": acc.tokens(), "val_bytes": acc.bytes(), "elapsed_s": elapsed_s}))
    }

    /// Writes the checkpoint (state, step, `elapsed_s` of training, data position).
    fn save_checkpoint(&mut self, elapsed_s: f64) -> Result<()> {
        let path = checkpoint::checkpoint_path(&self.opts.out_dir);
        let position = self.stream.position();
        checkpoint::save_checkpoint(&path, &self.plan, self.ex.as_mut(), self.cfg, self.step, elapsed_s, &position)
    }

    /// Saves the final checkpoint, evaluates and exports the weights, and reports the run.
    fn finish(mut self) -> Result<TrainSummary> {
        let cfg = self.cfg;
        let train_secs = self.clock.elapsed();
        let run_secs = self.clock.run_secs();
        let done_steps = self.step - self.first_step;
        let (tokens_per_s, step_ms) = self.throughput.mean(done_steps, run_secs, cfg.step_tokens());
        self.progress.finish();
        self.check_ranks_agree("the final checkpoint and weights")?;
        if !self.leader() {
            // Rank 0 saves, scores and exports; the others are done.
            return Ok(TrainSummary {
                steps: self.step,
                last_train_loss: self.last_loss,
                val_loss: f64::NAN,
                val_bpb: f64::NAN,
                val_tokens: 0,
                val_bytes: 0,
                tokens_per_s,
                step_ms,
                adapter: self.adapter,
            });
        }
        self.stages.push(("training".into(), run_secs));
        let save_start = Instant::now();
        self.save_checkpoint(train_secs)?;
        self.stages.push(("checkpoint".into(), save_start.elapsed().as_secs_f64()));

        // The raw weights first, then the EMA the run exports (record-spec.md section 6): the
        // difference is what the EMA is worth.
        let raw_start = Instant::now();
        if let Some(raw) = self.validate_raw()? {
            let secs = raw_start.elapsed().as_secs_f64();
            self.stages.push(("validation, raw weights".into(), secs));
            eprintln!(
                "validation (raw weights, no EMA): val_loss {:.4} val_bpb {:.4} ({secs:.1} s)",
                raw.val_loss(),
                raw.val_bpb()
            );
            self.event(json!({"event": "val_raw", "step": self.step, "val_loss": raw.val_loss(), "val_bpb": raw.val_bpb(), "val_tokens": raw.tokens(), "val_bytes": raw.bytes(), "seconds": secs, "elapsed_s": train_secs}))?;
        }
        let val_start = Instant::now();
        let acc = self.validate("validation", false)?;
        self.stages.push(("validation".into(), val_start.elapsed().as_secs_f64()));
        eprintln!(
            "validation: {} tokens, {} bytes: val_loss {:.4} val_bpb {:.4} ({:.1} s)",
            acc.tokens(),
            acc.bytes(),
            acc.val_loss(),
            acc.val_bpb(),
            val_start.elapsed().as_secs_f64()
        );
        let step = self.step;
        self.val_event(&acc, train_secs)?;

        let out = &self.opts.out_dir;
        let path = out.join("model.safetensors");
        let export_start = Instant::now();
        eval::export::save_export(&path, &self.plan, cfg, self.ex.as_mut())?;
        self.stages.push(("export (model.safetensors)".into(), export_start.elapsed().as_secs_f64()));
        eprintln!("saved {} and {}", checkpoint::checkpoint_path(out).display(), path.display());
        if cfg.eval.submission {
            self.submission(train_secs)?;
        }
        self.event(json!({"event": "end", "step": step, "train_loss": self.last_loss, "val_loss": acc.val_loss(), "val_bpb": acc.val_bpb(), "tokens_per_s": tokens_per_s, "step_ms": step_ms, "elapsed_s": train_secs}))?;
        crate::report::finish_run(out, self.opts.config_source.clone(), std::mem::take(&mut self.stages));
        Ok(TrainSummary {
            steps: step,
            last_train_loss: self.last_loss,
            val_loss: acc.val_loss(),
            val_bpb: acc.val_bpb(),
            val_tokens: acc.tokens(),
            val_bytes: acc.bytes(),
            tokens_per_s,
            step_ms,
            adapter: self.adapter,
        })
    }
}

/// The artifact's file name in the run directory.
pub const ARTIFACT_NAME: &str = "final_model.wgolf";

/// The run's first line: model size, steps, batch geometry, adapter, plan memory, setup time.
fn announce(cfg: &Config, plan: &Plan, first_step: usize, adapter: &str, setup_s: f64, dist: Option<&DistOptions>) {
    let t = &cfg.train;
    let muon = match plan.muon_shards.len() {
        0 => String::new(),
        n => format!(", distributed Muon in {n} shards"),
    };
    let ranks = dist
        .map(|d| format!(" x {} processes{}{muon}", d.world, if d.mpi.is_some() { " (MPI)" } else { "" }))
        .unwrap_or_default();
    eprintln!(
        "wgolf train: {} parameters, steps {}..{} of {} tokens ({} x {} x {} micro-batches) on {adapter}{ranks}; plan {:.1} MiB, setup {:.2} s",
        plan.param_count(),
        first_step,
        t.steps,
        cfg.step_tokens(),
        t.batch_seqs,
        t.seq_len,
        t.grad_accum,
        plan.bytes() as f64 / (1 << 20) as f64,
        setup_s
    );
}

/// This rank's config: the run's, with `grad_accum` divided among the ranks.
fn local_config(cfg: &Config, dist: Option<&DistOptions>) -> Result<Config> {
    let mut local = cfg.clone();
    if let Some(d) = dist {
        let accum = cfg.train.grad_accum;
        if d.world == 0 || !accum.is_multiple_of(d.world) {
            anyhow::bail!(
                "train.grad_accum = {accum} does not divide among {} processes: each rank runs grad_accum / processes \
                 micro-batches of every step (set train.grad_accum to a multiple of {})",
                d.world,
                d.world
            );
        }
        local.train.grad_accum = accum / d.world;
    }
    Ok(local)
}

/// Joins the node's group, presenting a digest of what must be equal on every rank: the
/// config, the plan and the training data's files (names and sizes).
fn join_group(cfg: &Config, plan: &Plan, d: &DistOptions) -> Result<crate::dist::Group> {
    let config = crc32fast::hash(toml::to_string(cfg)?.as_bytes());
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&cfg.data.dir)
        .with_context(|| format!("listing {}", cfg.data.dir.display()))?
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    files.sort();
    let data = crc32fast::hash(format!("{files:?}").as_bytes());
    let digest = format!("config {config:08x} plan {} params data {data:08x}", plan.param_count());
    if let Some(nodes) = d.mpi {
        return join_mpi(&digest, nodes, d);
    }
    let group = crate::dist::ShmGroup::join(&d.run_id, d.rank, d.world, &digest, d.timeout)
        .with_context(|| format!("rank {} of {}: forming the group", d.rank, d.world))?;
    Ok(crate::dist::Group::Shm(group))
}

/// Joins MPI's world (the ranks `mpirun` started), which must be the world the environment
/// announced.
#[cfg(feature = "mpi")]
fn join_mpi(digest: &str, nodes: crate::dist::MpiNodes, d: &DistOptions) -> Result<crate::dist::Group> {
    let group = crate::dist::MpiGroup::join(digest, nodes, d.timeout)?;
    anyhow::ensure!(
        (group.rank(), group.world()) == (d.rank, d.world),
        "MPI says rank {} of {}, the launcher's environment rank {} of {}",
        group.rank(),
        group.world(),
        d.rank,
        d.world
    );
    if d.rank == 0 {
        eprintln!("MPI: {}", group.layout());
    }
    Ok(crate::dist::Group::Mpi(group))
}

#[cfg(not(feature = "mpi"))]
fn join_mpi(_: &str, _: crate::dist::MpiNodes, d: &DistOptions) -> Result<crate::dist::Group> {
    anyhow::bail!(
        "rank {} of {}: started by an MPI launcher, but this wgolf was built without MPI: \
         rebuild with `cargo build --release --features mpi` (needs an MPI library and libclang)",
        d.rank,
        d.world
    )
}
