//! The run configuration, read from TOML. Every field has a comment with its meaning and
//! unit; `--set section.key=value` overrides any of them from the command line.
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A configuration error, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: field `{field}`: {message}")]
    Field {
        file: String,
        field: String,
        message: String,
    },
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file, overrides)
    }

    /// Parses TOML text (`file` names it in errors), applies overrides, and checks it.
    pub fn parse(text: &str, file: &str, overrides: &[String]) -> Result<Config, ConfigError> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.into(),
            message: e.to_string(),
        })?;
        for arg in overrides {
            apply_override(&mut value, arg)?;
        }
        let config: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                file: file.into(),
                message: e.to_string(),
            })?;
        config.check(file)?;
        Ok(config)
    }

    fn check(&self, file: &str) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| {
            Err(ConfigError::Field {
                file: file.into(),
                field: field.into(),
                message,
            })
        };
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
                format!(
                    "{} does not fit the uint16 shard format (max 65536)",
                    m.vocab_size
                ),
            );
        }
        if !m.model_dim.is_multiple_of(m.num_heads) {
            return bad(
                "model.num_heads",
                format!("{} does not divide model_dim {}", m.num_heads, m.model_dim),
            );
        }
        if !m.num_heads.is_multiple_of(m.num_kv_heads) {
            return bad(
                "model.num_kv_heads",
                format!(
                    "{} does not divide num_heads {}",
                    m.num_kv_heads, m.num_heads
                ),
            );
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
        if !(0.0..1.0).contains(&t.beta1) || !(0.0..1.0).contains(&t.beta2) {
            return bad("train.beta1 / train.beta2", "must be in [0, 1)".into());
        }
        Ok(())
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

    /// The learning-rate multiplier at step `step` (0-based): 1, then linear to 0 over the
    /// last `warmdown_steps`. As in the reference, a warmdown longer than the run starts
    /// below 1 (at steps / warmdown_steps).
    pub fn lr_scale(&self, step: usize) -> f32 {
        let (n, w) = (self.train.steps, self.train.warmdown_steps);
        if w == 0 || step + w < n {
            1.0
        } else {
            (n - step) as f32 / w as f32
        }
    }
}

/// Applies `section.key=value`; the value is parsed as TOML (a number, bool, or string) and
/// falls back to a plain string.
fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let err = |message: &str| ConfigError::Set {
        arg: arg.into(),
        message: message.into(),
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected section.key=value"))?;
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
