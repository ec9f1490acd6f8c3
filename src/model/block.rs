//! One transformer block: the residual mix with x0, the attention half and the MLP half.
//!
//! ```text
//! xm    = mix0 * x_in + mix1 * x0
//! xa    = xm + attn_scale * attn(rmsnorm(xm))
//! x_out = xa + mlp_scale * mlp(rmsnorm(xa))
//! ```
//!
//! Each half is a forward function returning the tensors its backward reads, and a backward
//! function undoing it line by line, last line first. The gradient of a tensor is always
//! `g.grad(tensor)`, so a backward only needs the forward's tensors.
use super::params::{AttnParams, BlockParams, MlpParams};
use super::{channel_grad, linear_bwd, linear_fwd, Dims};
use crate::ops::elementwise::Channels;
use crate::ops::rmsnorm::RMS_EPS;
use crate::plan::defs::*;
use crate::plan::{Phase, PlanBuilder, PlanError, TensorId};

const FWD: Phase = Phase::Forward;
const BWD: Phase = Phase::Backward;

/// What every block reads besides its parameters and its input.
pub(super) struct BlockEnv {
    pub dims: Dims,
    /// The RoPE table `[2, seq, head_dim / 2]`.
    pub rope: TensorId,
    /// The embedding stage's output, mixed into every block.
    pub x0: TensorId,
}

/// What one block's forward keeps for its backward.
pub(super) struct BlockActs {
    x_in: TensorId,
    xm: TensorId,
    attn: AttnActs,
    mlp: MlpActs,
    /// The block's output (the stream after it).
    pub x_out: TensorId,
}

/// Block `i` on the stream `x_in`; `xsa` when it is one of the last blocks that have XSA.
pub(super) fn forward(
    g: &mut PlanBuilder,
    env: &BlockEnv,
    i: usize,
    p: &BlockParams,
    x_in: TensorId,
    xsa: bool,
) -> Result<BlockActs, PlanError> {
    let Dims { n, d, .. } = env.dims;
    let name = |s: &str| format!("blocks.{i}.{s}");
    // xm = mix0 * x_in + mix1 * x0
    let xm = g.activation(name("xm"), &[n, d]);
    g.push(FWD, MixFwd { count: n * d, ch: env.dims.per_channel(0) }, &[xm, x_in, env.x0, p.resid_mix])?;
    let attn = attn_forward(g, env, &name, &p.attn, xm, xsa)?;
    let mlp = mlp_forward(g, &env.dims, &name, &p.mlp, attn.xa)?;
    Ok(BlockActs { x_in, xm, x_out: mlp.x_out, attn, mlp })
}

/// Its backward, from the gradient of `x_out`. The mix source x0's gradient goes to `dx0_mix`.
pub(super) fn backward(
    g: &mut PlanBuilder,
    env: &BlockEnv,
    p: &BlockParams,
    a: &BlockActs,
    dx0_mix: TensorId,
) -> Result<(), PlanError> {
    let Dims { n, d, .. } = env.dims;
    mlp_backward(g, &env.dims, &p.mlp, &a.mlp)?;
    attn_backward(g, env, &p.attn, &a.attn)?;
    // xm = mix0 * x_in + mix1 * x0
    let (dx_in, dxm) = (g.grad(a.x_in), g.grad(a.xm));
    g.push(BWD, MixBwd { count: n * d, ch: env.dims.per_channel(0) }, &[dx_in, dx0_mix, dxm, p.resid_mix])?;
    let d_mix = g.grad(p.resid_mix);
    channel_grad(g, n * d, env.dims.per_channel(0), 2 * d, [d_mix, dxm, a.x_in])?;
    channel_grad(g, n * d, env.dims.per_channel(1), 2 * d, [d_mix, dxm, env.x0])?;
    Ok(())
}

// ---------------- attention half ----------------

/// The attention half's tensors: `xa = xm + attn_scale * (y_out . W_o^T)`, where `y_out` is
/// attention's output `y`, or XSA's output on the blocks that have it.
struct AttnActs {
    qkv: Qkv,
    y: TensorId,
    lse: TensorId,
    /// Row sums of `dy * y`, written by the query-gradient pass for the key/value pass.
    delta: TensorId,
    xsa: Option<TensorId>,
    o: TensorId,
    xa: TensorId,
}

fn attn_forward(
    g: &mut PlanBuilder,
    env: &BlockEnv,
    name: &dyn Fn(&str) -> String,
    p: &AttnParams,
    xm: TensorId,
    xsa: bool,
) -> Result<AttnActs, PlanError> {
    let Dims { n, d, heads, kv, hd, batch, seq, .. } = env.dims;
    let qkv = qkv_forward(g, env, name, p, xm)?;
    // y = attention(qg, kr, v): causal, grouped KV heads
    let y = g.activation(name("attn.y"), &[n, heads * hd]);
    let lse = g.activation(name("attn.lse"), &[batch, heads, seq]);
    let delta = g.activation(name("attn.delta"), &[batch, heads, seq]);
    g.push(FWD, AttentionFwd(env.dims.attn()), &[y, lse, qkv.qg, qkv.kr, qkv.v])?;
    // XSA on the last blocks: remove from each head its component along its own v.
    let xsa = xsa.then(|| g.activation(name("attn.xsa"), &[n, heads * hd]));
    if let Some(yx) = xsa {
        g.push(FWD, XsaFwd { rows: n, heads, kv_heads: kv, head_dim: hd }, &[yx, y, qkv.v])?;
    }
    let y_out = xsa.unwrap_or(y);
    // o = y_out . W_o^T
    let o = g.activation(name("attn.o"), &[n, d]);
    linear_fwd(g, o, y_out, p.proj)?;
    // xa = xm + attn_scale * o
    let xa = g.activation(name("xa"), &[n, d]);
    g.push(FWD, ScaledAddFwd { count: n * d, ch: env.dims.per_channel(0), s_len: d }, &[xa, xm, o, p.scale])?;
    Ok(AttnActs { qkv, y, lse, delta, xsa, o, xa })
}

fn attn_backward(g: &mut PlanBuilder, env: &BlockEnv, p: &AttnParams, a: &AttnActs) -> Result<(), PlanError> {
    let Dims { n, d, heads, kv, hd, .. } = env.dims;
    let xm = a.qkv.x;
    // xa = xm + attn_scale * o
    let (dxa, dxm, do_) = (g.grad(a.xa), g.grad(xm), g.grad(a.o));
    let ch = env.dims.per_channel(0);
    g.push(BWD, ScaledAddBwd { count: n * d, ch, s_len: d }, &[dxm, do_, dxa, p.scale])?;
    let d_attn_scale = g.grad(p.scale);
    channel_grad(g, n * d, ch, d, [d_attn_scale, dxa, a.o])?;
    // o = y_out . W_o^T
    let y_out = a.xsa.unwrap_or(a.y);
    linear_bwd(g, y_out, p.proj, do_)?;
    let dy_out = g.grad(y_out);
    // y_out = xsa(y, v)
    let dy = g.grad(a.y);
    if a.xsa.is_some() {
        let dv = g.grad(a.qkv.v);
        g.push(BWD, XsaBwd { rows: n, heads, kv_heads: kv, head_dim: hd }, &[dy, dv, dy_out, a.y, a.qkv.v])?;
    }
    // y = attention(qg, kr, v)
    let Qkv { qg, kr, v, .. } = a.qkv;
    let (dqg, dkr, dv) = (g.grad(qg), g.grad(kr), g.grad(v));
    let attn = env.dims.attn();
    g.push(BWD, AttentionBwdQ(attn), &[dqg, a.delta, dy, a.y, qg, kr, v, a.lse])?;
    g.push(BWD, AttentionBwdKv(attn), &[dkr, dv, dy, qg, kr, v, a.lse, a.delta])?;
    qkv_backward(g, env, p, &a.qkv)
}

/// Attention's inputs from the mixed stream `x`: the normed input's q, k, v projections,
/// q and k RMS-normed per head and RoPE'd, q scaled by its per-head gain.
struct Qkv {
    /// The input (the mixed stream `xm`).
    x: TensorId,
    a_in: TensorId,
    a_rstd: TensorId,
    q: TensorId,
    k: TensorId,
    v: TensorId,
    qn: TensorId,
    q_rstd: TensorId,
    kn: TensorId,
    k_rstd: TensorId,
    qr: TensorId,
    kr: TensorId,
    qg: TensorId,
}

fn qkv_forward(
    g: &mut PlanBuilder,
    env: &BlockEnv,
    name: &dyn Fn(&str) -> String,
    p: &AttnParams,
    x: TensorId,
) -> Result<Qkv, PlanError> {
    let Dims { n, d, heads, kv, hd, seq, .. } = env.dims;
    let act = |g: &mut PlanBuilder, s: &str, shape: &[usize]| g.activation(name(s), shape);
    // a_in = rmsnorm(x)
    let a_in = act(g, "attn.in", &[n, d]);
    let a_rstd = act(g, "attn.in.rstd", &[n]);
    g.push(FWD, RmsNormFwd { rows: n, dim: d, eps: RMS_EPS }, &[a_in, a_rstd, x])?;
    // q, k, v = a_in . W^T
    let q = act(g, "attn.q", &[n, heads * hd]);
    let k = act(g, "attn.k", &[n, kv * hd]);
    let v = act(g, "attn.v", &[n, kv * hd]);
    linear_fwd(g, q, a_in, p.c_q)?;
    linear_fwd(g, k, a_in, p.c_k)?;
    linear_fwd(g, v, a_in, p.c_v)?;
    // qn = rmsnorm(q), kn = rmsnorm(k) per head
    let qn = act(g, "attn.qn", &[n, heads * hd]);
    let q_rstd = act(g, "attn.qn.rstd", &[n * heads]);
    g.push(FWD, RmsNormFwd { rows: n * heads, dim: hd, eps: RMS_EPS }, &[qn, q_rstd, q])?;
    let kn = act(g, "attn.kn", &[n, kv * hd]);
    let k_rstd = act(g, "attn.kn.rstd", &[n * kv]);
    g.push(FWD, RmsNormFwd { rows: n * kv, dim: hd, eps: RMS_EPS }, &[kn, k_rstd, k])?;
    // qr = rope(qn), kr = rope(kn)
    let qr = act(g, "attn.qr", &[n, heads * hd]);
    g.push(FWD, Rope { rows: n, heads, head_dim: hd, seq_len: seq, inverse: false }, &[qr, qn, env.rope])?;
    let kr = act(g, "attn.kr", &[n, kv * hd]);
    g.push(FWD, Rope { rows: n, heads: kv, head_dim: hd, seq_len: seq, inverse: false }, &[kr, kn, env.rope])?;
    // qg = q_gain[head] * qr
    let qg = act(g, "attn.qg", &[n, heads * hd]);
    let per_head = Channels::per_head(heads, hd);
    g.push(FWD, ScaleFwd { count: n * heads * hd, ch: per_head, s_len: heads }, &[qg, qr, p.q_gain])?;
    Ok(Qkv { x, a_in, a_rstd, q, k, v, qn, q_rstd, kn, k_rstd, qr, kr, qg })
}

fn qkv_backward(g: &mut PlanBuilder, env: &BlockEnv, p: &AttnParams, a: &Qkv) -> Result<(), PlanError> {
    let Dims { n, d, heads, kv, hd, seq, .. } = env.dims;
    // qg = q_gain[head] * qr
    let (dqg, dqr) = (g.grad(a.qg), g.grad(a.qr));
    let per_head = Channels::per_head(heads, hd);
    g.push(BWD, ScaleBwd { count: n * heads * hd, ch: per_head, s_len: heads }, &[dqr, dqg, p.q_gain])?;
    let d_q_gain = g.grad(p.q_gain);
    channel_grad(g, n * heads * hd, per_head, heads, [d_q_gain, dqg, a.qr])?;
    // qr = rope(qn), kr = rope(kn)
    let (dkr, dqn, dkn) = (g.grad(a.kr), g.grad(a.qn), g.grad(a.kn));
    g.push(BWD, Rope { rows: n, heads, head_dim: hd, seq_len: seq, inverse: true }, &[dqn, dqr, env.rope])?;
    g.push(BWD, Rope { rows: n, heads: kv, head_dim: hd, seq_len: seq, inverse: true }, &[dkn, dkr, env.rope])?;
    // qn = rmsnorm(q), kn = rmsnorm(k) per head
    let (dq, dk, dv) = (g.grad(a.q), g.grad(a.k), g.grad(a.v));
    g.push(BWD, RmsNormBwd { rows: n * heads, dim: hd }, &[dq, dqn, a.qn, a.q_rstd])?;
    g.push(BWD, RmsNormBwd { rows: n * kv, dim: hd }, &[dk, dkn, a.kn, a.k_rstd])?;
    // q, k, v = a_in . W^T
    for (dt, w) in [(dq, p.c_q), (dk, p.c_k), (dv, p.c_v)] {
        linear_bwd(g, a.a_in, w, dt)?;
    }
    // a_in = rmsnorm(x)
    let (dx, da_in) = (g.grad(a.x), g.grad(a.a_in));
    g.push(BWD, RmsNormBwd { rows: n, dim: d }, &[dx, da_in, a.a_in, a.a_rstd])?;
    Ok(())
}

// ---------------- MLP half ----------------

/// The MLP half's tensors: `x_out = x + mlp_scale * (relu(m_in . W_fc^T)^2 . W_proj^T)`,
/// `m_in = rmsnorm(x)`.
struct MlpActs {
    /// The input (the stream after attention, `xa`).
    x: TensorId,
    m_in: TensorId,
    m_rstd: TensorId,
    h: TensorId,
    r: TensorId,
    mo: TensorId,
    x_out: TensorId,
}

fn mlp_forward(
    g: &mut PlanBuilder,
    dims: &Dims,
    name: &dyn Fn(&str) -> String,
    p: &MlpParams,
    x: TensorId,
) -> Result<MlpActs, PlanError> {
    let Dims { n, d, hidden, .. } = *dims;
    let act = |g: &mut PlanBuilder, s: &str, shape: &[usize]| g.activation(name(s), shape);
    // m_in = rmsnorm(x)
    let m_in = act(g, "mlp.in", &[n, d]);
    let m_rstd = act(g, "mlp.in.rstd", &[n]);
    g.push(FWD, RmsNormFwd { rows: n, dim: d, eps: RMS_EPS }, &[m_in, m_rstd, x])?;
    // h = m_in . W_fc^T
    let h = act(g, "mlp.h", &[n, hidden]);
    linear_fwd(g, h, m_in, p.fc)?;
    // r = relu(h)^2
    let r = act(g, "mlp.r", &[n, hidden]);
    g.push(FWD, Relu2Fwd { count: n * hidden }, &[r, h])?;
    // mo = r . W_proj^T
    let mo = act(g, "mlp.o", &[n, d]);
    linear_fwd(g, mo, r, p.proj)?;
    // x_out = x + mlp_scale * mo
    let x_out = act(g, "out", &[n, d]);
    g.push(FWD, ScaledAddFwd { count: n * d, ch: dims.per_channel(0), s_len: d }, &[x_out, x, mo, p.scale])?;
    Ok(MlpActs { x, m_in, m_rstd, h, r, mo, x_out })
}

fn mlp_backward(g: &mut PlanBuilder, dims: &Dims, p: &MlpParams, a: &MlpActs) -> Result<(), PlanError> {
    let Dims { n, d, hidden, .. } = *dims;
    let ch = dims.per_channel(0);
    // x_out = x + mlp_scale * mo
    let (dx_out, dx, dmo) = (g.grad(a.x_out), g.grad(a.x), g.grad(a.mo));
    g.push(BWD, ScaledAddBwd { count: n * d, ch, s_len: d }, &[dx, dmo, dx_out, p.scale])?;
    let d_mlp_scale = g.grad(p.scale);
    channel_grad(g, n * d, ch, d, [d_mlp_scale, dx_out, a.mo])?;
    // mo = r . W_proj^T
    linear_bwd(g, a.r, p.proj, dmo)?;
    let dr = g.grad(a.r);
    // r = relu(h)^2
    let dh = g.grad(a.h);
    g.push(BWD, Relu2Bwd { count: n * hidden }, &[dh, dr, a.h])?;
    // h = m_in . W_fc^T
    linear_bwd(g, a.m_in, p.fc, dh)?;
    let dm_in = g.grad(a.m_in);
    // m_in = rmsnorm(x)
    g.push(BWD, RmsNormBwd { rows: n, dim: d }, &[dx, dm_in, a.m_in, a.m_rstd])?;
    Ok(())
}
