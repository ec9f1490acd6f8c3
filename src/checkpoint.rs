//! Training checkpoints and weight files, both safetensors.
//!
//! A checkpoint holds every parameter and every piece of optimizer state (Adam moments,
//! Muon momentum, the EMA) under its plan name, and in its metadata the run's config (TOML),
//! the step reached, the training time so far and the data stream's position, so that
//! `wgolf train --resume` continues exactly where the run stopped: there is no other random
//! state (the init is seeded, there is no dropout, the data order is fixed). A weights file
//! (`model.safetensors`, `wgolf export`) holds only the model's parameters under the
//! reference's state-dict names, the EMA values when the run kept an EMA, plus the config.
use crate::config::Config;
use crate::data::StreamPosition;
use crate::exec::{Executor, HostData};
use crate::plan::{Plan, Role, TensorId};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const META_FORMAT: &str = "wgolf_format";
const META_CONFIG: &str = "wgolf_config";
const META_STEP: &str = "wgolf_step";
const META_ELAPSED: &str = "wgolf_elapsed_s";
const META_STREAM: &str = "wgolf_stream";
/// Checkpoints written now: parameters and persistent optimizer state only.
const FORMAT_CHECKPOINT: &str = "checkpoint-2";
/// Checkpoints of wgolf before the plan told scratch from state: they also hold the
/// per-step scratch tensors (Muon stacks, clip norms), which resuming ignores.
const FORMAT_CHECKPOINT_V1: &str = "checkpoint-1";
const FORMAT_WEIGHTS: &str = "weights-1";

/// Where a run directory keeps its checkpoint.
pub fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint.safetensors")
}

/// The tensors a checkpoint must hold to resume: parameters and optimizer state.
pub fn state_tensors(plan: &Plan) -> Vec<TensorId> {
    plan.with_role(|r| matches!(r, Role::Param { .. } | Role::OptState))
}

/// The EMA tensor of each parameter, if the plan keeps one (named `ema.<param>`).
pub fn ema_of(plan: &Plan, param: TensorId) -> Option<TensorId> {
    plan.find(&format!("ema.{}", plan.tensor(param).name))
}

/// A file read back: its tensors by name and its metadata.
pub struct Loaded {
    pub path: PathBuf,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

impl Loaded {
    /// The config stored with the file.
    pub fn config(&self) -> Result<Config> {
        let text = self
            .metadata
            .get(META_CONFIG)
            .ok_or_else(|| anyhow!("{}: no wgolf config in its metadata; pass --config", self.path.display()))?;
        Ok(Config::parse(text, &format!("{} (embedded config)", self.path.display()), &[])?)
    }
    /// The step the checkpoint was taken after.
    pub fn step(&self) -> Result<usize> {
        self.meta_parse(META_STEP)
    }
    /// Training seconds before the checkpoint.
    pub fn elapsed_s(&self) -> Result<f64> {
        self.meta_parse(META_ELAPSED)
    }
    /// The data stream position.
    pub fn stream(&self) -> Result<StreamPosition> {
        let text = self.meta(META_STREAM)?;
        serde_json::from_str(text).with_context(|| format!("{}: metadata {META_STREAM}", self.path.display()))
    }
    /// Whether this is a training checkpoint (rather than a weights file).
    pub fn is_checkpoint(&self) -> bool {
        matches!(self.metadata.get(META_FORMAT).map(String::as_str), Some(FORMAT_CHECKPOINT | FORMAT_CHECKPOINT_V1))
    }
    fn meta(&self, key: &str) -> Result<&str> {
        self.metadata.get(key).map(String::as_str).ok_or_else(|| {
            anyhow!("{}: metadata field {key} is missing (not a wgolf checkpoint?)", self.path.display())
        })
    }
    fn meta_parse<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let v = self.meta(key)?;
        v.parse().map_err(|_| anyhow!("{}: metadata field {key} = {v:?} is not a number", self.path.display()))
    }
    /// The values of `name`, checked against the expected shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        let (s, v) =
            self.tensors.get(name).ok_or_else(|| anyhow!("{}: tensor `{name}` is missing", self.path.display()))?;
        if s != shape {
            bail!("{}: tensor `{name}` has shape {s:?}, expected {shape:?}", self.path.display());
        }
        Ok(v)
    }
}

/// Reads a safetensors file (f32, f16 or bf16 tensors; converted to f32).
pub fn read(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    read_bytes(path, &bytes)
}

/// [`read`] of a file's bytes already in memory (`path` names it in errors): the entry point
/// for fuzzing. The safetensors crate checks the header's length field against the buffer
/// before reading it, and every tensor's offsets and shape against the data, so nothing is
/// allocated beyond what the bytes hold (f16 and bf16 tensors double in f32).
pub fn read_bytes(path: &Path, bytes: &[u8]) -> Result<Loaded> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => bytemuck::pod_collect_to_vec(data),
            safetensors::Dtype::F16 => {
                data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            safetensors::Dtype::BF16 => {
                data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            other => bail!("{}: tensor `{name}` is {other:?}; expected F32, F16 or BF16", path.display()),
        };
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    let metadata = header.metadata().clone().unwrap_or_default();
    Ok(Loaded { path: path.to_path_buf(), tensors, metadata })
}

fn write(path: &Path, named: Vec<(String, Vec<usize>, Vec<f32>)>, metadata: HashMap<String, String>) -> Result<()> {
    let views = named
        .iter()
        .map(|(name, shape, v)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytemuck::cast_slice(v))
                    .map_err(|e| anyhow!("tensor {name}: {e}"))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| anyhow!("serializing {}: {e}", path.display()))?;
    crate::fsutil::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes a training checkpoint of the executor's state, atomically.
pub fn save_checkpoint(
    path: &Path,
    plan: &Plan,
    ex: &mut dyn Executor,
    cfg: &Config,
    step: usize,
    elapsed_s: f64,
    stream: &StreamPosition,
) -> Result<()> {
    let named = state_tensors(plan)
        .into_iter()
        .map(|t| Ok((plan.tensor(t).name.clone(), plan.tensor(t).shape.clone(), ex.read(t)?)))
        .collect::<Result<_>>()?;
    let metadata = HashMap::from([
        (META_FORMAT.to_string(), FORMAT_CHECKPOINT.to_string()),
        (META_CONFIG.to_string(), toml::to_string(cfg)?),
        (META_STEP.to_string(), step.to_string()),
        (META_ELAPSED.to_string(), elapsed_s.to_string()),
        (META_STREAM.to_string(), serde_json::to_string(stream)?),
    ]);
    write(path, named, metadata)
}

/// Writes the executor's state back from a checkpoint (every parameter and optimizer state
/// tensor must be there with its shape; tensors the plan does not keep, such as an older
/// format's scratch, are ignored).
pub fn restore_checkpoint(ck: &Loaded, plan: &Plan, ex: &mut dyn Executor) -> Result<()> {
    if !ck.is_checkpoint() {
        let format = ck.metadata.get(META_FORMAT).map_or("none", String::as_str);
        bail!(
            "{}: metadata {META_FORMAT} is {format:?}; a training checkpoint is {FORMAT_CHECKPOINT:?} \
             (or the older {FORMAT_CHECKPOINT_V1:?})",
            ck.path.display()
        );
    }
    for t in state_tensors(plan) {
        let desc = plan.tensor(t);
        ex.write(t, HostData::F32(ck.get(&desc.name, &desc.shape)?))?;
    }
    Ok(())
}

/// The model's weights as the run would export them: the EMA of each parameter when the
/// plan keeps one, else the parameter, under the reference's names.
pub fn model_weights(plan: &Plan, ex: &mut dyn Executor) -> Result<Vec<(TensorId, Vec<f32>)>> {
    plan.params.iter().map(|s| Ok((s.param, ex.read(ema_of(plan, s.param).unwrap_or(s.param))?))).collect()
}

/// Writes a weights file (reference names and shapes, f32) with the config in its metadata.
pub fn save_weights(path: &Path, plan: &Plan, cfg: &Config, weights: &[(TensorId, Vec<f32>)]) -> Result<()> {
    let named =
        weights.iter().map(|(t, v)| (plan.tensor(*t).name.clone(), plan.tensor(*t).shape.clone(), v.clone())).collect();
    let metadata = HashMap::from([
        (META_FORMAT.to_string(), FORMAT_WEIGHTS.to_string()),
        (META_CONFIG.to_string(), toml::to_string(cfg)?),
    ]);
    write(path, named, metadata)
}

/// The model weights of a file: a checkpoint's EMA values (or parameters when it kept no
/// EMA), or a weights file's tensors, checked against the plan's names and shapes.
pub fn weights_from(file: &Loaded, plan: &Plan) -> Result<Vec<(TensorId, Vec<f32>)>> {
    plan.params
        .iter()
        .map(|s| {
            let desc = plan.tensor(s.param);
            let ema_name = format!("ema.{}", desc.name);
            let name =
                if file.is_checkpoint() && file.tensors.contains_key(&ema_name) { ema_name } else { desc.name.clone() };
            Ok((s.param, file.get(&name, &desc.shape)?.to_vec()))
        })
        .collect()
}

/// A fresh checkpoint (step 0, zero optimizer state, EMA equal to the weights) holding
/// `weights`: what `wgolf import` writes so that reference weights can be evaluated or
/// trained further.
pub fn checkpoint_from_weights(
    path: &Path,
    plan: &Plan,
    cfg: &Config,
    weights: &[(TensorId, Vec<f32>)],
    stream: &StreamPosition,
) -> Result<()> {
    let by_id: HashMap<TensorId, &Vec<f32>> = weights.iter().map(|(t, v)| (*t, v)).collect();
    let mut named = Vec::new();
    for t in state_tensors(plan) {
        let desc = plan.tensor(t);
        let values = match by_id.get(&t) {
            Some(v) => (*v).clone(),
            None => match desc.name.strip_prefix("ema.").and_then(|p| plan.find(p)).and_then(|p| by_id.get(&p)) {
                Some(v) => (*v).clone(),
                None => vec![0.0; desc.numel()],
            },
        };
        named.push((desc.name.clone(), desc.shape.clone(), values));
    }
    let metadata = HashMap::from([
        (META_FORMAT.to_string(), FORMAT_CHECKPOINT.to_string()),
        (META_CONFIG.to_string(), toml::to_string(cfg)?),
        (META_STEP.to_string(), "0".to_string()),
        (META_ELAPSED.to_string(), "0".to_string()),
        (META_STREAM.to_string(), serde_json::to_string(stream)?),
    ]);
    write(path, named, metadata)
}
