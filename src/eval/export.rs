//! The run's artifact: the model weights under the reference's state-dict names and shapes
//! (the EMA when kept), out of an executor or a checkpoint, and reference weights back into
//! a checkpoint.
use crate::checkpoint::{self, Loaded};
use crate::config::Config;
use crate::data::TrainStream;
use crate::exec::Executor;
use crate::plan::Plan;
use anyhow::Result;
use std::collections::HashSet;
use std::path::Path;

/// Writes the weights the executor holds (the EMA values when the plan keeps them) to `path`.
pub fn save_export(path: &Path, plan: &Plan, cfg: &Config, ex: &mut dyn Executor) -> Result<()> {
    checkpoint::save_weights(path, plan, cfg, &checkpoint::model_weights(plan, ex)?)
}

/// Writes a checkpoint's (or weights file's) model weights to `out`; returns the plan of its
/// config.
pub fn export_file(file: &Loaded, out: &Path) -> Result<Plan> {
    let cfg = file.config()?;
    let plan = crate::model::build_plan(&cfg)?;
    let weights = checkpoint::weights_from(file, &plan)?;
    checkpoint::save_weights(out, &plan, &cfg, &weights)?;
    Ok(plan)
}

/// Turns a reference weights file into a fresh checkpoint of `cfg` (read from `cfg_file`,
/// named in errors) at `out`: every tensor must be a parameter of the model, with its shape.
/// Returns the plan.
pub fn import_weights(weights: &Path, cfg: &Config, cfg_file: &Path, out: &Path) -> Result<Plan> {
    let plan = crate::model::build_plan(cfg)?;
    let file = checkpoint::read(weights)?;
    let values = checkpoint::weights_from(&file, &plan)?;
    let known: HashSet<&str> = plan.params.iter().map(|s| plan.tensor(s.param).name.as_str()).collect();
    let extra: Vec<&String> = file.tensors.keys().filter(|k| !known.contains(k.as_str())).collect();
    if !extra.is_empty() {
        anyhow::bail!("{}: tensors the model of {} does not have: {extra:?}", weights.display(), cfg_file.display());
    }
    let stream = TrainStream::open(&cfg.data.dir, cfg.model.vocab_size)?.position();
    checkpoint::checkpoint_from_weights(out, &plan, cfg, &values, &stream)?;
    Ok(plan)
}
