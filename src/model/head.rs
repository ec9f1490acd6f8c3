//! The output head: `logits = rmsnorm(x) . tok_emb^T` (the tied embedding), softcapped, and
//! the cross-entropy against the targets, whose kernel also writes the logits' gradient.
use super::{linear_bwd, linear_fwd, Dims};
use crate::ops::rmsnorm::RMS_EPS;
use crate::plan::defs::*;
use crate::plan::{DType, Phase, PlanBuilder, PlanError, Role, TensorId};

/// What the head's forward keeps for its backward (and the host's loss tensors).
pub(super) struct Head {
    /// The stream after the last block.
    x: TensorId,
    hf: TensorId,
    hf_rstd: TensorId,
    pub logits: TensorId,
    /// The logits' gradient, written by the forward's cross-entropy.
    dlogits: TensorId,
    /// Per-position losses.
    pub loss_rows: TensorId,
    /// The step's mean loss.
    pub loss_total: TensorId,
}

/// The head on the final stream `x`. `step_tokens` (tokens per optimizer step) scales the
/// loss and its gradient, so micro-batches accumulate to the step's mean.
pub(super) fn forward(
    g: &mut PlanBuilder,
    dims: &Dims,
    tok_emb: TensorId,
    x: TensorId,
    targets: TensorId,
    softcap: f64,
    step_tokens: f64,
) -> Result<Head, PlanError> {
    let Dims { n, d, v, .. } = *dims;
    let fwd = Phase::Forward;
    // hf = rmsnorm(x)
    let hf = g.activation("final.h", &[n, d]);
    let hf_rstd = g.activation("final.rstd", &[n]);
    g.push(fwd, RmsNormFwd { rows: n, dim: d, eps: RMS_EPS }, &[hf, hf_rstd, x])?;
    // logits = hf . tok_emb^T
    let logits = g.activation("logits", &[n, v]);
    linear_fwd(g, logits, hf, tok_emb)?;
    // loss = mean cross_entropy(softcap(logits), targets)
    let loss_rows = g.activation("loss_rows", &[n]);
    let loss_total = g.tensor("loss", &[1], DType::F32, Role::Loss);
    let dlogits = g.grad(logits);
    let ce = CrossEntropy { rows: n, vocab: v, softcap, grad_scale: 1.0 / step_tokens, write_grad: true };
    g.push(fwd, ce, &[dlogits, loss_rows, logits, targets])?;
    g.push(fwd, SumRows { count: n, scale: 1.0 / step_tokens }, &[loss_total, loss_rows])?;
    Ok(Head { x, hf, hf_rstd, logits, dlogits, loss_rows, loss_total })
}

/// Its backward, from the logits' gradient to the final stream's.
pub(super) fn backward(g: &mut PlanBuilder, dims: &Dims, tok_emb: TensorId, h: &Head) -> Result<(), PlanError> {
    let Dims { n, d, .. } = *dims;
    // logits = hf . tok_emb^T
    linear_bwd(g, h.hf, tok_emb, h.dlogits)?;
    let dhf = g.grad(h.hf);
    // hf = rmsnorm(x)
    let dx = g.grad(h.x);
    g.push(Phase::Backward, RmsNormBwd { rows: n, dim: d }, &[dx, dhf, h.hf, h.hf_rstd])?;
    Ok(())
}

/// An evaluation plan's head: only the rows `scored` (`[s]` row indices into the batch,
/// written by the host) of the final stream go through the final norm, the logits and the
/// cross-entropy, so the logits are `[s, vocab]` rather than `[batch * seq, vocab]`. The
/// gather is the embedding lookup with the stream as its table. The cross-entropy writes no
/// gradient; `loss_total` is the plain sum of the `s` rows (padding rows included).
pub(super) fn eval_forward(
    g: &mut PlanBuilder,
    dims: &Dims,
    tok_emb: TensorId,
    x: TensorId,
    scored: TensorId,
    targets: TensorId,
    softcap: f64,
) -> Result<EvalHead, PlanError> {
    let Dims { n, d, v, .. } = *dims;
    let s = g.shape(scored)[0];
    let fwd = Phase::Forward;
    // xs = x[scored]
    let xs = g.activation("final.x_scored", &[s, d]);
    g.push(fwd, EmbeddingFwd { tokens: s, dim: d, vocab: n }, &[xs, x, scored])?;
    // hf = rmsnorm(xs)
    let hf = g.activation("final.h", &[s, d]);
    let hf_rstd = g.activation("final.rstd", &[s]);
    g.push(fwd, RmsNormFwd { rows: s, dim: d, eps: RMS_EPS }, &[hf, hf_rstd, xs])?;
    // logits = hf . tok_emb^T
    let logits = g.activation("logits", &[s, v]);
    linear_fwd(g, logits, hf, tok_emb)?;
    // loss_rows = cross_entropy(softcap(logits), targets)
    let loss_rows = g.activation("loss_rows", &[s]);
    let loss_total = g.tensor("loss", &[1], DType::F32, Role::Loss);
    let unused = g.activation("ce.no_grad", &[1]);
    let ce = CrossEntropy { rows: s, vocab: v, softcap, grad_scale: 0.0, write_grad: false };
    g.push(fwd, ce, &[unused, loss_rows, logits, targets])?;
    g.push(fwd, SumRows { count: s, scale: 1.0 }, &[loss_total, loss_rows])?;
    Ok(EvalHead { logits, loss_rows, loss_total })
}

/// The evaluation head's host-visible tensors.
pub(super) struct EvalHead {
    pub logits: TensorId,
    pub loss_rows: TensorId,
    pub loss_total: TensorId,
}
