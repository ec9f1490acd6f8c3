//! Model weights on disk: safetensors with the reference's state-dict names and shapes
//! (`tok_emb.weight`, `blocks.{i}.attn.c_q.weight`, ...), f32, written atomically.
use crate::plan::{Plan, TensorId};
use anyhow::{anyhow, Context, Result};
use std::path::Path;

/// Writes the given parameter values (one per plan parameter, in plan order) as safetensors.
pub fn save(
    path: &Path,
    plan: &Plan,
    values: &[(TensorId, Vec<f32>)],
    metadata: Vec<(String, String)>,
) -> Result<()> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = values
        .iter()
        .map(|(id, v)| {
            let desc = plan.tensor(*id);
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                desc.shape.clone(),
                bytemuck::cast_slice(v),
            )
            .map_err(|e| anyhow!("tensor {}: {e}", desc.name))?;
            Ok((desc.name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, Some(metadata.into_iter().collect()))
        .map_err(|e| anyhow!("serializing {}: {e}", path.display()))?;
    crate::fsutil::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Reads the parameters of `plan` from a safetensors file; every parameter must be present
/// with its exact shape as f32. The error names the file, the tensor and what was expected.
pub fn load(path: &Path, plan: &Plan) -> Result<Vec<(TensorId, Vec<f32>)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    plan.params
        .iter()
        .map(|slot| {
            let desc = plan.tensor(slot.param);
            let t = st
                .tensor(&desc.name)
                .map_err(|_| anyhow!("{}: tensor `{}` is missing", path.display(), desc.name))?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape() != desc.shape.as_slice() {
                return Err(anyhow!(
                    "{}: tensor `{}` is {:?} {:?}, expected F32 {:?}",
                    path.display(),
                    desc.name,
                    t.dtype(),
                    t.shape(),
                    desc.shape
                ));
            }
            Ok((slot.param, bytemuck::pod_collect_to_vec(t.data())))
        })
        .collect()
}
