//! The run configuration, read from TOML. Every field has a comment with its meaning and
//! unit; `--set section.key=value` overrides any of them from the command line. The
//! schedules these fields describe (learning-rate scale, Muon momentum, the wall-clock stop
//! rule) are methods of [`Config`] written in `train::schedule`.
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

/// A whole run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub data: DataConfig,
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
        config.check(file)?;
        Ok(config)
    }

    fn check(&self, file: &str) -> Result<(), ConfigError> {
        let bad =
            |field: &str, message: String| Err(ConfigError::Field { file: file.into(), field: field.into(), message });
        let m = &self.model;
        let t = &self.train;
        for (field, v) in [
            ("model.vocab_size", m.vocab_size),
            ("model.num_layers", m.num_layers),
            ("model.model_dim", m.model_dim),
            ("model.num_heads", m.num_heads),
            ("model.num_kv_heads", m.num_kv_heads),
            ("model.mlp_mult", m.mlp_mult),
            ("train.seq_len", t.seq_len),
            ("train.batch_seqs", t.batch_seqs),
            ("train.grad_accum", t.grad_accum),
            ("train.log_every", t.log_every),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if m.vocab_size > 65536 {
            return bad(
                "model.vocab_size",
                format!("{} does not fit the uint16 shard format (max 65536)", m.vocab_size),
            );
        }
        if !m.model_dim.is_multiple_of(m.num_heads) {
            return bad("model.num_heads", format!("{} does not divide model_dim {}", m.num_heads, m.model_dim));
        }
        if !m.num_heads.is_multiple_of(m.num_kv_heads) {
            return bad("model.num_kv_heads", format!("{} does not divide num_heads {}", m.num_kv_heads, m.num_heads));
        }
        let hd = m.model_dim / m.num_heads;
        if !hd.is_multiple_of(2) || hd > 128 {
            return bad(
                "model.num_heads",
                format!("head_dim = model_dim / num_heads = {hd} must be even and at most 128"),
            );
        }
        if m.rope_base <= 1.0 || m.logit_softcap <= 0.0 {
            return bad(
                "model.rope_base / model.logit_softcap",
                "rope_base must exceed 1 and logit_softcap be positive".into(),
            );
        }
        if m.bigram_buckets == 1 || (m.bigram_buckets > 0 && m.bigram_dim == 0) {
            return bad(
                "model.bigram_buckets",
                "needs at least 2 buckets and bigram_dim >= 1 (0 turns BigramHash off)".into(),
            );
        }
        if m.xsa_last_n > m.num_layers {
            return bad("model.xsa_last_n", format!("{} exceeds num_layers {}", m.xsa_last_n, m.num_layers));
        }
        if t.warmdown == Warmdown::Wallclock && t.max_wallclock_s <= 0.0 {
            return bad("train.warmdown", "\"wallclock\" needs train.max_wallclock_s > 0".into());
        }
        if !(0.0..1.0).contains(&t.ema_decay) {
            return bad("train.ema_decay", format!("{} must be in [0, 1)", t.ema_decay));
        }
        if t.matrix_optimizer == MatrixOptimizer::Muon && t.muon_ns_steps == 0 {
            return bad("train.muon_ns_steps", "must be at least 1".into());
        }
        if !(0.0..1.0).contains(&t.beta1) || !(0.0..1.0).contains(&t.beta2) {
            return bad("train.beta1 / train.beta2", "must be in [0, 1)".into());
        }
        Ok(())
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
    let section = table
        .get_mut(parts[0])
        .and_then(|s| s.as_table_mut())
        .ok_or_else(|| err(&format!("no section [{}] in the config", parts[0])))?;
    if !section.contains_key(parts[1]) {
        return Err(err(&format!("no field `{}` in [{}]", parts[1], parts[0])));
    }
    section.insert(parts[1].to_string(), value);
    Ok(())
}
