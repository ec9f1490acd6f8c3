//! The input stage: `x0 = smear(rmsnorm(tok_emb[ids] + bigram.scale * W_bp E_bg[bucket]))`,
//! with BigramHash and SmearGate each present only when the config has them.
use super::params::{BigramParams, Params};
use super::{channel_grad, linear_bwd, linear_fwd, Dims};
use crate::ops::elementwise::Channels;
use crate::ops::rmsnorm::RMS_EPS;
use crate::plan::defs::*;
use crate::plan::{Phase, PlanBuilder, PlanError, TensorId};

const FWD: Phase = Phase::Forward;
const BWD: Phase = Phase::Backward;

/// A one-value parameter scaling every element (bigram.scale).
const SCALAR: Channels = Channels { group: 1, channels: 1, offset: 0 };

/// What the input stage's forward keeps for its backward.
pub(super) struct InputActs {
    emb: TensorId,
    bigram: Option<BigramActs>,
    /// `emb`, or `emb` plus the bigram term: what the x0 norm reads.
    x_in: TensorId,
    x0n: TensorId,
    x0_rstd: TensorId,
    /// The stage's output: the smeared `x0n`, or `x0n` itself without SmearGate.
    pub x0: TensorId,
}

pub(super) fn forward(
    g: &mut PlanBuilder,
    dims: &Dims,
    p: &Params,
    ids: TensorId,
    bigram_ids: Option<TensorId>,
) -> Result<InputActs, PlanError> {
    let Dims { n, d, v, seq, .. } = *dims;
    // emb = tok_emb[ids]
    let emb = g.activation("emb", &[n, d]);
    g.push(FWD, EmbeddingFwd { tokens: n, dim: d, vocab: v }, &[emb, p.tok_emb, ids])?;
    // x_in = emb + bigram.scale * W_bp E_bg[bucket]
    let bigram = match (&p.bigram, bigram_ids) {
        (Some(b), Some(bids)) => Some(bigram_forward(g, dims, b, bids, emb)?),
        _ => None,
    };
    let x_in = bigram.as_ref().map_or(emb, |b| b.sum);
    // x0n = rmsnorm(x_in)
    let x0n = g.activation("x0.norm", &[n, d]);
    let x0_rstd = g.activation("x0.rstd", &[n]);
    g.push(FWD, RmsNormFwd { rows: n, dim: d, eps: RMS_EPS }, &[x0n, x0_rstd, x_in])?;
    // SmearGate: x0_t = (1 - sig(gate)) x0n_t + sig(gate) x0n_{t-1}
    let x0 = match p.smear_gate {
        Some(gate) => {
            let x0 = g.activation("x0", &[n, d]);
            g.push(FWD, SmearFwd { rows: n, dim: d, seq_len: seq }, &[x0, x0n, gate])?;
            x0
        }
        None => x0n,
    };
    Ok(InputActs { emb, bigram, x_in, x0n, x0_rstd, x0 })
}

/// Its backward, from x0's two gradients: the stream's (`g.grad(x0)`, block 0's input) and
/// the mix sources' (`dx0_mix`, summed over the blocks). Both flow back through the (linear)
/// smear and rmsnorm backward passes, one after the other. `index` holds the host's
/// per-batch indices of the positions of each token id and of each bigram bucket (the
/// second is unused without BigramHash), which the table gradients read.
pub(super) fn backward(
    g: &mut PlanBuilder,
    dims: &Dims,
    p: &Params,
    a: &InputActs,
    dx0_mix: TensorId,
    [ids_index, bigram_index]: [TensorId; 2],
) -> Result<(), PlanError> {
    let Dims { n, d, v, seq, .. } = *dims;
    let (dx0, dx_in) = (g.grad(a.x0), g.grad(a.x_in));
    let x0_grads = [dx0, dx0_mix];
    // SmearGate: x0_t = (1 - sig(gate)) x0n_t + sig(gate) x0n_{t-1}
    let dx0n = match p.smear_gate {
        Some(gate) => {
            let (dx0n, dgate) = (g.grad(a.x0n), g.grad(gate));
            for dy in x0_grads {
                g.push(BWD, SmearBwd { rows: n, dim: d, seq_len: seq }, &[dx0n, dy, gate])?;
                g.push(BWD, SmearGrad { rows: n, dim: d, seq_len: seq }, &[dgate, dy, a.x0n, gate])?;
            }
            vec![dx0n]
        }
        None => x0_grads.to_vec(),
    };
    // x0n = rmsnorm(x_in)
    for dy in dx0n {
        g.push(BWD, RmsNormBwd { rows: n, dim: d }, &[dx_in, dy, a.x0n, a.x0_rstd])?;
    }
    // x_in = emb + bigram.scale * W_bp E_bg[bucket]
    if let (Some(b), Some(ba)) = (&p.bigram, &a.bigram) {
        bigram_backward(g, dims, b, ba, a.emb, bigram_index)?;
    }
    // emb = tok_emb[ids]
    let demb = g.grad(a.emb);
    let d_tok_emb = g.grad(p.tok_emb);
    g.push(BWD, EmbeddingBwd { tokens: n, dim: d, vocab: v }, &[d_tok_emb, demb, ids_index])?;
    Ok(())
}

/// BigramHash's tensors: `sum = emb + scale * p`, `p = e . W_bp^T`, `e = E_bg[bucket]`.
struct BigramActs {
    e: TensorId,
    p: TensorId,
    sum: TensorId,
}

fn bigram_forward(
    g: &mut PlanBuilder,
    dims: &Dims,
    b: &BigramParams,
    bids: TensorId,
    emb: TensorId,
) -> Result<BigramActs, PlanError> {
    let Dims { n, d, bigram_buckets, bigram_dim: bd, .. } = *dims;
    // e = E_bg[bucket]
    let e = g.activation("bigram.e", &[n, bd]);
    g.push(FWD, EmbeddingFwd { tokens: n, dim: bd, vocab: bigram_buckets }, &[e, b.embed, bids])?;
    // p = e . W_bp^T
    let p = g.activation("bigram.p", &[n, d]);
    linear_fwd(g, p, e, b.proj)?;
    // sum = emb + scale * p
    let sum = g.activation("bigram.sum", &[n, d]);
    g.push(FWD, ScaledAddFwd { count: n * d, ch: SCALAR, s_len: 1 }, &[sum, emb, p, b.scale])?;
    Ok(BigramActs { e, p, sum })
}

fn bigram_backward(
    g: &mut PlanBuilder,
    dims: &Dims,
    b: &BigramParams,
    a: &BigramActs,
    emb: TensorId,
    bigram_index: TensorId,
) -> Result<(), PlanError> {
    let Dims { n, d, bigram_buckets, bigram_dim: bd, .. } = *dims;
    // sum = emb + scale * p
    let (dsum, demb, dp, de) = (g.grad(a.sum), g.grad(emb), g.grad(a.p), g.grad(a.e));
    g.push(BWD, ScaledAddBwd { count: n * d, ch: SCALAR, s_len: 1 }, &[demb, dp, dsum, b.scale])?;
    let dscale = g.grad(b.scale);
    channel_grad(g, n * d, SCALAR, 1, [dscale, dsum, a.p])?;
    // p = e . W_bp^T
    linear_bwd(g, a.e, b.proj, dp)?;
    // e = E_bg[bucket]
    let dtable = g.grad(b.embed);
    g.push(BWD, EmbeddingBwd { tokens: n, dim: bd, vocab: bigram_buckets }, &[dtable, de, bigram_index])?;
    Ok(())
}

/// The BigramHash bucket of every position of `ids` (rows of `seq_len` tokens): the last
/// bucket at each row's first position, else `((36313 id_t) xor (27191 id_{t-1})) mod
/// (buckets - 1)`, computed as the reference does in int32 (ids below 65536 keep every
/// product below 2^31 for sp1024; u32 arithmetic gives the same non-negative values).
pub fn bigram_buckets(ids: &[u32], seq_len: usize, buckets: usize) -> Vec<u32> {
    let modulus = (buckets - 1) as u32;
    ids.iter()
        .enumerate()
        .map(|(i, &id)| {
            if i % seq_len == 0 {
                modulus
            } else {
                (36313u32.wrapping_mul(id) ^ 27191u32.wrapping_mul(ids[i - 1])) % modulus
            }
        })
        .collect()
}
