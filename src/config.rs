//! The run configuration, read from TOML. Every field has a comment with its meaning and
//! unit; `--set section.key=value` overrides any of them from the command line. The
//! schedules these fields describe (learning-rate scale, Muon momentum, the wall-clock stop
//! rule) are methods of [`Config`] written in `train::schedule`.
//!
//! Parsing rejects unknown sections and fields (suggesting the nearest known name), then
//! [`Config::validate`] checks every numeric field's range and the relations between fields,
//! naming the field's path (`train.beta2`), the value and what was expected.
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A configuration error, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: field `{field}`: {message}")]
    Field { file: String, field: String, message: String },
    #[error("--set {arg}: {message}")]
    Set { arg: String, message: String },
}

/// The model's shape (the challenge baseline's structure).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Vocabulary size (token ids are below it); 1024 for sp1024.
    pub vocab_size: usize,
    /// Number of transformer blocks; the first half (rounded down) are U-Net encoders.
    pub num_layers: usize,
    /// Width of the residual stream.
    pub model_dim: usize,
    /// Query heads; head_dim = model_dim / num_heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention); divides num_heads.
    pub num_kv_heads: usize,
    /// MLP hidden width as a multiple of model_dim (relu^2 activation).
    pub mlp_mult: usize,
    /// RoPE base (theta = p * base^(-2i/head_dim)).
    pub rope_base: f64,
    /// Logit softcap: logits = cap * tanh(logits / cap).
    pub logit_softcap: f64,
    /// Initial value of every per-head query gain.
    pub qk_gain_init: f32,
    /// Std of the normal init of the tied token embedding.
    pub tied_embed_init_std: f32,
    /// BigramHash buckets (0 = off). The record uses 2048: bucket
    /// `((36313 id_t) xor (27191 id_{t-1})) mod (buckets - 1)`, the last bucket for position 0.
    #[serde(default)]
    pub bigram_buckets: usize,
    /// Width of the BigramHash table, projected to model_dim.
    #[serde(default = "default_bigram_dim")]
    pub bigram_dim: usize,
    /// Initial value of the BigramHash output scale.
    #[serde(default = "default_bigram_scale")]
    pub bigram_scale_init: f32,
    /// SmearGate on the normalized embeddings: each position mixes in the previous one
    /// through a learned per-channel sigmoid gate.
    #[serde(default)]
    pub smear_gate: bool,
    /// XSA (exclusive self-attention) on the last this many blocks (0 = off).
    #[serde(default)]
    pub xsa_last_n: usize,
    /// The reference's RoPE NTK quirk: its rotary module was built for this length, and for
    /// longer sequences it scales the base by `(seq_len / this)^(head_dim / (head_dim - 2))`
    /// (0 = off; the record's 1024 gives base 20,452.23 at seq_len 2048).
    #[serde(default)]
    pub rope_ntk_base_len: usize,
    /// OrthoInit: orthogonal init (gain 1) of every linear with both dims >= 64, and the
    /// bigram projection then scaled by 1/sqrt(2 num_layers). Output projections stay zero.
    #[serde(default)]
    pub ortho_init: bool,
}

fn default_bigram_dim() -> usize {
    128
}
fn default_bigram_scale() -> f32 {
    0.05
}
fn default_ns_steps() -> usize {
    5
}
fn default_momentum() -> f32 {
    0.95
}

/// The optimizer of the block matrices (and the bigram projection).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MatrixOptimizer {
    /// AdamW, like every other parameter.
    #[default]
    Adamw,
    /// Muon: momentum, Nesterov, Newton-Schulz orthogonalization.
    Muon,
}

/// How the learning rate decays.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Warmdown {
    /// Flat, then linear to zero over the last `warmdown_steps` of `steps`.
    #[default]
    Steps,
    /// The reference's wall-clock schedule: flat while the time left exceeds
    /// `warmdown_steps` x the mean step time so far, then linear to zero at `max_wallclock_s`.
    Wallclock,
}

/// Training: batch geometry, optimizer and schedule.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Tokens per sequence (training and validation).
    pub seq_len: usize,
    /// Sequences per micro-batch (what one forward/backward pass holds).
    pub batch_seqs: usize,
    /// Micro-batches per optimizer step (gradients are averaged over all of them).
    pub grad_accum: usize,
    /// Optimizer steps to run.
    pub steps: usize,
    /// The learning rate is flat, then falls linearly to zero over the last this many steps
    /// (longer than the run: it starts below 1).
    pub warmdown_steps: usize,
    /// Seed of the parameter init (the data order does not depend on it).
    pub seed: u64,
    /// AdamW learning rate of the tied embedding.
    pub embed_lr: f32,
    /// AdamW learning rate of the block matrices.
    pub matrix_lr: f32,
    /// AdamW learning rate of scales, gains, mixes and skip weights.
    pub scalar_lr: f32,
    /// Adam beta1.
    pub beta1: f32,
    /// Adam beta2.
    pub beta2: f32,
    /// Adam epsilon.
    pub adam_eps: f32,
    /// Decoupled weight decay, multiplied by the scheduled learning rate.
    pub weight_decay: f32,
    /// Print and log the training loss every this many steps (it is read back only then).
    pub log_every: usize,
    /// Validation sequences scored at the end of training (0 = the whole val set).
    pub val_seqs: usize,
    /// Optimizer of the block matrices: "adamw" (lr matrix_lr) or "muon" (lr matrix_lr).
    #[serde(default)]
    pub matrix_optimizer: MatrixOptimizer,
    /// Muon momentum after warmup.
    #[serde(default = "default_momentum")]
    pub muon_momentum: f32,
    /// Muon momentum at step 0, raised linearly to muon_momentum over the warmup.
    #[serde(default = "default_momentum")]
    pub muon_momentum_start: f32,
    /// Steps of the Muon momentum warmup (0 = none).
    #[serde(default)]
    pub muon_momentum_warmup_steps: usize,
    /// Newton-Schulz iterations of Muon.
    #[serde(default = "default_ns_steps")]
    pub muon_ns_steps: usize,
    /// Clip the global gradient norm (all parameters) to this (0 = off).
    #[serde(default)]
    pub grad_clip_norm: f32,
    /// EMA decay of all weights, updated after every step from step 0 (0 = off). The
    /// final evaluation and the saved weights use the EMA.
    #[serde(default)]
    pub ema_decay: f32,
    /// Stop once training (validation excluded) has run this many seconds (0 = no cap).
    #[serde(default)]
    pub max_wallclock_s: f64,
    /// "steps" or "wallclock" (needs max_wallclock_s).
    #[serde(default)]
    pub warmdown: Warmdown,
    /// With several processes: the gradients are averaged in buckets of about this many MB,
    /// each as soon as the last micro-batch's backward has finished it, while the device runs
    /// the backward of the layers before (0 = all at once after the backward).
    #[serde(default = "default_allreduce_bucket_mb")]
    pub allreduce_bucket_mb: f64,
    /// With several processes and Muon: distributed Muon, as the reference runs it. Each rank
    /// runs Newton-Schulz for its share of the matrices (every `world`-th of each shape) and
    /// the orthogonalized updates are exchanged (an all-gather) before every rank applies all
    /// of them. Off by default: the exchange through the host is as large as the gradients'
    /// and costs more than the share of Newton-Schulz it saves (docs/perf.md).
    #[serde(default)]
    pub distributed_muon: bool,
}

/// PyTorch DDP's default bucket (25 MB): the record's 107 MB of gradients in 5 buckets.
fn default_allreduce_bucket_mb() -> f64 {
    25.0
}

/// Where the data lives (paths relative to the working directory).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Directory holding `fineweb_train_*.bin` and `fineweb_val_*.bin`.
    pub dir: PathBuf,
    /// The SentencePiece model, for the bpb byte tables.
    pub tokenizer: PathBuf,
}

/// Test-time training at evaluation (record-spec.md section 8).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TttMode {
    /// No test-time training.
    #[default]
    Off,
    /// PR #317's kind: train on all validation sequences, then score them. Not valid under the
    /// challenge's rules (every scored token was trained on first).
    TrainThenScore,
    /// The legal kind: chunk by chunk, score with the sliding window first, then train on the
    /// chunk already scored; the last chunk is never trained on.
    ScoreFirst,
}

/// Evaluation after training: the sliding window, its batches, periodic validation and
/// test-time training (record-spec.md sections 7 and 8). Every field has a default, so
/// configs without an `[eval]` section keep working. The window is `train.seq_len`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Sliding-window stride in tokens: every window after the first scores its last
    /// `stride` positions.
    pub stride: usize,
    /// Windows (or sequences) per forward-only evaluation batch.
    pub batch_seqs: usize,
    /// Validation targets the sliding evaluation and TTT cover (0 = those of the non-sliding
    /// validation: `train.val_seqs` sequences, the whole split when that is 0).
    pub max_tokens: usize,
    /// At the end of `wgolf train`: pack the artifact, score it (the roundtrip and, with
    /// `sliding`, the sliding window) and run TTT when `ttt` asks for it.
    pub submission: bool,
    /// Run the sliding-window evaluation at the end of training.
    pub sliding: bool,
    /// Validate (non-sliding, `train.val_seqs` sequences) every this many steps during
    /// training (0 = only at the end).
    pub val_every: usize,
    /// "off", "train-then-score" (PR #317's, not valid under the rules) or "score-first".
    pub ttt: TttMode,
    /// TTT: SGD learning rate (score-first decays it with a cosine across chunks).
    pub ttt_lr: f32,
    /// TTT: SGD momentum (no Nesterov, no dampening).
    pub ttt_momentum: f32,
    /// TTT: epochs over the training data of each pass (all sequences, or one chunk).
    pub ttt_epochs: usize,
    /// TTT: sequences per SGD step.
    pub ttt_batch_seqs: usize,
    /// TTT: clip of the global norm of the trainable parameters' gradients (0 = off).
    pub ttt_grad_clip: f32,
    /// TTT: the first this many blocks are frozen (no gradients kept for them). Unset: 2 for
    /// train-then-score (the PR's), 0 for score-first.
    pub ttt_freeze_blocks: Option<usize>,
    /// TTT score-first: tokens per chunk.
    pub ttt_chunk_tokens: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            stride: 64,
            batch_seqs: 32,
            max_tokens: 0,
            submission: true,
            sliding: true,
            val_every: 0,
            ttt: TttMode::Off,
            ttt_lr: 0.002,
            ttt_momentum: 0.9,
            ttt_epochs: 3,
            ttt_batch_seqs: 32,
            ttt_grad_clip: 1.0,
            ttt_freeze_blocks: None,
            ttt_chunk_tokens: 32_768,
        }
    }
}

impl EvalConfig {
    /// The frozen leading blocks of the configured TTT kind.
    pub fn freeze_blocks(&self) -> usize {
        self.ttt_freeze_blocks.unwrap_or(match self.ttt {
            TttMode::TrainThenScore => 2,
            _ => 0,
        })
    }
}

/// A whole run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub data: DataConfig,
    /// Optional: every field has a default.
    #[serde(default)]
    pub eval: EvalConfig,
}

impl Config {
    /// Reads a TOML config, applies `key=value` overrides, and checks it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        Self::parse(&text, &file, overrides)
    }

    /// Parses TOML text (`file` names it in errors), applies overrides, and checks it.
    pub fn parse(text: &str, file: &str, overrides: &[String]) -> Result<Config, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse { file: file.into(), message: e.to_string() };
        let mut value: toml::Table = toml::from_str(text).map_err(parse_err)?;
        check_known_fields(&value, file)?;
        if !overrides.is_empty() {
            // Overrides apply to the whole config, defaulted fields included: parse it once,
            // then write it back out as a table with every field present.
            let full: Config = value.clone().try_into().map_err(parse_err)?;
            value = toml::Table::try_from(&full)
                .map_err(|e| ConfigError::Parse { file: file.into(), message: e.to_string() })?;
        }
        for arg in overrides {
            apply_override(&mut value, arg)?;
        }
        let config: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse { file: file.into(), message: e.to_string() })?;
        config.validate(file)?;
        Ok(config)
    }

    /// Checks every field's range and the relations between fields; the error names the
    /// field by its path (`train.beta2`), its value and what was expected. [`Config::parse`]
    /// runs it after the overrides; a config built in code can run it itself.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let c = Checker { file };
        validate_model(&c, &self.model)?;
        validate_train(&c, &self.train)?;
        validate_data(&c, &self.data)?;
        validate_eval(&c, self)
    }

    /// The RoPE base actually used at `seq_len` (the NTK quirk applied when configured).
    pub fn effective_rope_base(&self) -> f64 {
        let (base, len, t) = (self.model.rope_base, self.model.rope_ntk_base_len, self.train.seq_len);
        if len == 0 || t <= len {
            return base;
        }
        let hd = self.head_dim() as f64;
        base * (t as f64 / len as f64).powf(hd / (hd - 2.0))
    }

    /// The sliding-window stride: `eval.stride`, at most the window (`train.seq_len`), so a
    /// config with short sequences keeps the default stride and still scores every target.
    pub fn sliding_stride(&self) -> usize {
        self.eval.stride.min(self.train.seq_len)
    }

    /// The validation targets the sliding evaluation and TTT cover (0: all): `eval.max_tokens`,
    /// or the non-sliding validation's `train.val_seqs` sequences when that is 0.
    pub fn eval_max_tokens(&self) -> usize {
        match self.eval.max_tokens {
            0 => self.train.val_seqs * self.train.seq_len,
            m => m,
        }
    }

    /// Head dimension.
    pub fn head_dim(&self) -> usize {
        self.model.model_dim / self.model.num_heads
    }

    /// Tokens in one micro-batch.
    pub fn micro_tokens(&self) -> usize {
        self.train.batch_seqs * self.train.seq_len
    }

    /// Tokens per optimizer step.
    pub fn step_tokens(&self) -> usize {
        self.micro_tokens() * self.train.grad_accum
    }
}

/// The range checks of [`Config::validate`]: each error names the file, the field by its
/// path, the value and what was expected.
struct Checker<'a> {
    file: &'a str,
}

impl Checker<'_> {
    fn bad(&self, field: &str, message: String) -> ConfigError {
        ConfigError::Field { file: self.file.into(), field: field.into(), message }
    }
    fn at_least(&self, field: &str, v: usize, min: usize) -> Result<(), ConfigError> {
        if v < min {
            return Err(self.bad(field, format!("is {v}, expected at least {min}")));
        }
        Ok(())
    }
    /// `ok` is the allowed range in words; NaN and infinities never pass.
    fn real(&self, field: &str, v: f64, ok: &str, pass: bool) -> Result<(), ConfigError> {
        if !v.is_finite() || !pass {
            return Err(self.bad(field, format!("is {v}, expected {ok}")));
        }
        Ok(())
    }
    fn positive(&self, field: &str, v: f64) -> Result<(), ConfigError> {
        self.real(field, v, "a finite value > 0", v > 0.0)
    }
    fn non_negative(&self, field: &str, v: f64) -> Result<(), ConfigError> {
        self.real(field, v, "a finite value >= 0", v >= 0.0)
    }
    fn unit(&self, field: &str, v: f64) -> Result<(), ConfigError> {
        self.real(field, v, "a value in [0, 1)", (0.0..1.0).contains(&v))
    }
}

/// The model's shape.
fn validate_model(c: &Checker, m: &ModelConfig) -> Result<(), ConfigError> {
    c.at_least("model.vocab_size", m.vocab_size, 1)?;
    if m.vocab_size > 65536 {
        return Err(c.bad(
            "model.vocab_size",
            format!("is {}, expected at most 65536 (token ids are uint16 in shards)", m.vocab_size),
        ));
    }
    c.at_least("model.num_layers", m.num_layers, 1)?;
    c.at_least("model.model_dim", m.model_dim, 1)?;
    c.at_least("model.num_heads", m.num_heads, 1)?;
    c.at_least("model.num_kv_heads", m.num_kv_heads, 1)?;
    c.at_least("model.mlp_mult", m.mlp_mult, 1)?;
    if !m.model_dim.is_multiple_of(m.num_heads) {
        return Err(
            c.bad("model.num_heads", format!("is {}, expected a divisor of model_dim {}", m.num_heads, m.model_dim))
        );
    }
    if !m.num_heads.is_multiple_of(m.num_kv_heads) {
        return Err(c.bad(
            "model.num_kv_heads",
            format!("is {}, expected a divisor of num_heads {}", m.num_kv_heads, m.num_heads),
        ));
    }
    let hd = m.model_dim / m.num_heads;
    if !hd.is_multiple_of(2) {
        return Err(c.bad(
            "model.num_heads",
            format!("head_dim = model_dim / num_heads = {hd}, expected even (RoPE rotates pairs of channels)"),
        ));
    }
    if hd > 128 {
        return Err(c.bad(
            "model.num_heads",
            format!("head_dim = model_dim / num_heads = {hd}, expected at most 128 (the attention kernels' limit)"),
        ));
    }
    c.real("model.rope_base", m.rope_base, "a finite value > 1", m.rope_base > 1.0)?;
    c.positive("model.logit_softcap", m.logit_softcap)?;
    c.positive("model.qk_gain_init", m.qk_gain_init as f64)?;
    c.positive("model.tied_embed_init_std", m.tied_embed_init_std as f64)?;
    if m.bigram_buckets == 1 {
        return Err(c.bad("model.bigram_buckets", "is 1, expected 0 (off) or at least 2".into()));
    }
    if m.bigram_buckets > 0 {
        c.at_least("model.bigram_dim", m.bigram_dim, 1)?;
    }
    c.real("model.bigram_scale_init", m.bigram_scale_init as f64, "a finite value", true)?;
    if m.xsa_last_n > m.num_layers {
        return Err(
            c.bad("model.xsa_last_n", format!("is {}, expected at most num_layers {}", m.xsa_last_n, m.num_layers))
        );
    }
    if m.rope_ntk_base_len > 0 && hd <= 2 {
        return Err(c.bad(
            "model.rope_ntk_base_len",
            format!(
                "is {}, but its scaling exponent head_dim / (head_dim - 2) needs head_dim > 2 (it is {hd}); 0 turns it off",
                m.rope_ntk_base_len
            ),
        ));
    }

    Ok(())
}

/// Batch geometry, schedule and optimizer.
fn validate_train(c: &Checker, t: &TrainConfig) -> Result<(), ConfigError> {
    c.at_least("train.seq_len", t.seq_len, 1)?;
    c.at_least("train.batch_seqs", t.batch_seqs, 1)?;
    c.at_least("train.grad_accum", t.grad_accum, 1)?;
    if t.batch_seqs.checked_mul(t.seq_len).and_then(|n| n.checked_mul(t.grad_accum)).is_none() {
        return Err(c.bad(
            "train.grad_accum",
            format!(
                "tokens per step = batch_seqs {} x seq_len {} x grad_accum {} overflows",
                t.batch_seqs, t.seq_len, t.grad_accum
            ),
        ));
    }
    c.at_least("train.steps", t.steps, 1)?;
    c.at_least("train.log_every", t.log_every, 1)?;
    c.non_negative("train.max_wallclock_s", t.max_wallclock_s)?;
    c.non_negative("train.allreduce_bucket_mb", t.allreduce_bucket_mb)?;
    if t.warmdown == Warmdown::Wallclock && t.max_wallclock_s <= 0.0 {
        return Err(c.bad("train.warmdown", "is \"wallclock\", which needs train.max_wallclock_s > 0".into()));
    }

    // The optimizer.
    c.positive("train.embed_lr", t.embed_lr as f64)?;
    c.positive("train.matrix_lr", t.matrix_lr as f64)?;
    c.positive("train.scalar_lr", t.scalar_lr as f64)?;
    c.unit("train.beta1", t.beta1 as f64)?;
    c.unit("train.beta2", t.beta2 as f64)?;
    c.positive("train.adam_eps", t.adam_eps as f64)?;
    c.non_negative("train.weight_decay", t.weight_decay as f64)?;
    c.unit("train.muon_momentum", t.muon_momentum as f64)?;
    c.unit("train.muon_momentum_start", t.muon_momentum_start as f64)?;
    if t.matrix_optimizer == MatrixOptimizer::Muon {
        c.at_least("train.muon_ns_steps", t.muon_ns_steps, 1)?;
    }
    c.non_negative("train.grad_clip_norm", t.grad_clip_norm as f64)?;
    c.unit("train.ema_decay", t.ema_decay as f64)?;

    Ok(())
}

/// The data paths.
fn validate_data(c: &Checker, d: &DataConfig) -> Result<(), ConfigError> {
    for (field, p) in [("data.dir", &d.dir), ("data.tokenizer", &d.tokenizer)] {
        if p.as_os_str().is_empty() {
            return Err(c.bad(field, "is empty, expected a path".into()));
        }
    }
    Ok(())
}

/// The evaluation settings, against the model and the window.
fn validate_eval(c: &Checker, cfg: &Config) -> Result<(), ConfigError> {
    let e = &cfg.eval;
    c.at_least("eval.stride", e.stride, 1)?;
    c.at_least("eval.batch_seqs", e.batch_seqs, 1)?;
    c.positive("eval.ttt_lr", e.ttt_lr as f64)?;
    c.unit("eval.ttt_momentum", e.ttt_momentum as f64)?;
    c.at_least("eval.ttt_epochs", e.ttt_epochs, 1)?;
    c.at_least("eval.ttt_batch_seqs", e.ttt_batch_seqs, 1)?;
    c.non_negative("eval.ttt_grad_clip", e.ttt_grad_clip as f64)?;
    if e.freeze_blocks() > cfg.model.num_layers {
        return Err(c.bad(
            "eval.ttt_freeze_blocks",
            format!("is {}, expected at most model.num_layers = {}", e.freeze_blocks(), cfg.model.num_layers),
        ));
    }
    c.at_least("eval.ttt_chunk_tokens", e.ttt_chunk_tokens, cfg.train.seq_len.max(1))?;
    Ok(())
}

/// Applies `section.key=value`; the value is parsed as TOML (a number, bool, or string) and
/// falls back to a plain string.
fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let err = |message: &str| ConfigError::Set { arg: arg.into(), message: message.into() };
    let (key, raw) = arg.split_once('=').ok_or_else(|| err("expected section.key=value"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.len() != 2 {
        return Err(err("the key must be section.key, e.g. train.steps"));
    }
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", raw.trim()))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let (sections, fields) = known_fields();
    let section = table
        .get_mut(parts[0])
        .and_then(|s| s.as_table_mut())
        .ok_or_else(|| err(&format!("no section [{}] in the config{}", parts[0], did_you_mean(parts[0], &sections))))?;
    // Known fields, not the section's keys: an unset optional field is absent from the table.
    let known = fields.iter().find(|(s, _)| *s == parts[0]).map_or(&[][..], |(_, f)| f);
    if !known.contains(&parts[1]) {
        return Err(err(&format!("no field `{}` in [{}]{}", parts[1], parts[0], did_you_mean(parts[1], known))));
    }
    section.insert(parts[1].to_string(), value);
    Ok(())
}

/// The field names serde knows for the struct `T`, asked through a deserializer that records
/// what the derived `Deserialize` passes to `deserialize_struct` and stops there; so the
/// unknown-field check can never drift from the structs.
fn serde_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor};
    struct Grab<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Grab<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Grab(&mut fields));
    fields
}

/// The sections of a config and the fields of each.
fn known_fields() -> (Vec<&'static str>, [(&'static str, &'static [&'static str]); 4]) {
    let fields = [
        ("model", serde_fields::<ModelConfig>()),
        ("train", serde_fields::<TrainConfig>()),
        ("data", serde_fields::<DataConfig>()),
        ("eval", serde_fields::<EvalConfig>()),
    ];
    (serde_fields::<Config>().to_vec(), fields)
}

/// Rejects unknown sections and fields, suggesting the nearest known name.
fn check_known_fields(table: &toml::Table, file: &str) -> Result<(), ConfigError> {
    let (sections, fields) = known_fields();
    for (name, value) in table {
        let Some((_, known)) = fields.iter().find(|(s, _)| s == name) else {
            return Err(ConfigError::Field {
                file: file.into(),
                field: name.clone(),
                message: format!("unknown section{}", did_you_mean(name, &sections)),
            });
        };
        let Some(section) = value.as_table() else { continue };
        for key in section.keys() {
            if !known.contains(&key.as_str()) {
                return Err(ConfigError::Field {
                    file: file.into(),
                    field: format!("{name}.{key}"),
                    message: format!("unknown field{}", did_you_mean(key, known)),
                });
            }
        }
    }
    Ok(())
}

/// `; did you mean `x`?` for the known name nearest to `name` by edit distance, when it is
/// close enough to be a typo (a third of its characters, at least 2) or one name begins with
/// the other; else the list of known names.
fn did_you_mean(name: &str, known: &[&str]) -> String {
    let close = |k: &str, d: usize| {
        d <= (name.chars().count() / 3).max(2)
            || (k.len().min(name.len()) >= 3 && (name.starts_with(k) || k.starts_with(name)))
    };
    let best = known.iter().map(|k| (edit_distance(name, k), *k)).filter(|&(d, k)| close(k, d)).min();
    match best {
        Some((_, k)) => format!("; did you mean `{k}`?"),
        None => format!("; expected one of {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
    }
}

/// Levenshtein distance between two strings, in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
