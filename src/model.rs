//! The baseline GPT of the challenge, written as plan steps.
//!
//! Forward (record-spec.md section 4, baseline structure):
//! `x0 = rmsnorm(tok_emb[ids])`; for each block, decoders first add
//! `skip_weights[j] * (the matching encoder output)`, then
//! `x = mix0 * x + mix1 * x0`, `x += attn_scale * attn(rmsnorm(x))`,
//! `x += mlp_scale * mlp(rmsnorm(x))`; finally `logits = rmsnorm(x) . tok_emb^T`,
//! softcapped, and a cross-entropy. Attention is QK-RMS-normed, RoPE'd, q scaled by a
//! per-head gain, causal with grouped KV heads; the MLP is `W_down relu(W_up x)^2`.
//!
//! The backward pass is written by hand below the forward, block by block in reverse, each
//! line undoing the forward line with the same name. Every backward step accumulates into
//! gradient tensors, which executors zero at the start of each micro-batch (activation
//! gradients) or step (parameter gradients).
use crate::config::{Config, MatrixOptimizer};
use crate::ops::attention::AttnShape;
use crate::ops::elementwise::Channels;
use crate::ops::matmul::Layout;
use crate::ops::rmsnorm::RMS_EPS;
use crate::ops::rope::rope_table;
use crate::optim;
use crate::plan::defs::*;
use crate::plan::{DType, Init, ParamGroup, ParamSlot, Phase, Plan, PlanBuilder, PlanError, PlanIo, Role, TensorId};

/// The parameters of one block (reference state-dict names).
struct BlockParams {
    c_q: TensorId,
    c_k: TensorId,
    c_v: TensorId,
    proj: TensorId,
    q_gain: TensorId,
    fc: TensorId,
    mlp_proj: TensorId,
    attn_scale: TensorId,
    mlp_scale: TensorId,
    resid_mix: TensorId,
}

/// What one block's forward keeps for its backward.
struct BlockActs {
    /// The skip add before the block (decoders): (input x, skipped tensor, row, output).
    skip: Option<(TensorId, TensorId, usize, TensorId)>,
    x_in: TensorId,
    xm: TensorId,
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
    y: TensorId,
    /// XSA's output (the blocks that have it): what the output projection reads.
    xsa: Option<TensorId>,
    lse: TensorId,
    delta: TensorId,
    o: TensorId,
    xa: TensorId,
    m_in: TensorId,
    m_rstd: TensorId,
    h: TensorId,
    r: TensorId,
    mo: TensorId,
    x_out: TensorId,
}

/// Shapes derived from the config.
#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    d: usize,
    v: usize,
    heads: usize,
    kv: usize,
    hd: usize,
    hidden: usize,
    seq: usize,
    batch: usize,
}

/// Builds the training plan (forward, backward, AdamW) for one micro-batch of the config.
pub fn build_plan(cfg: &Config) -> Result<Plan, PlanError> {
    let m = &cfg.model;
    let dims = Dims {
        n: cfg.micro_tokens(),
        d: m.model_dim,
        v: m.vocab_size,
        heads: m.num_heads,
        kv: m.num_kv_heads,
        hd: cfg.head_dim(),
        hidden: m.model_dim * m.mlp_mult,
        seq: cfg.train.seq_len,
        batch: cfg.train.batch_seqs,
    };
    let Dims { n, d, v, heads, kv, hd, hidden, seq, .. } = dims;
    let n_enc = m.num_layers / 2;
    let n_skip = n_enc.min(m.num_layers - n_enc);
    let mut g = PlanBuilder::new();

    // ---- parameters (reference state-dict names and shapes) ----
    let tok_emb = g.param("tok_emb.weight", &[v, d], ParamGroup::Embed, Init::Normal { std: m.tied_embed_init_std });
    // BigramHash: a hashed (previous, current) token table projected to the model width.
    let bigram = (m.bigram_buckets > 0).then(|| {
        let (buckets, bd) = (m.bigram_buckets, m.bigram_dim);
        // Zero-initialized unless OrthoInit, which makes it orthogonal and then applies the
        // 1/sqrt(2L) output scaling (the reference's muP-style rule for ".proj" modules).
        let proj_init = if m.ortho_init {
            Init::Orthogonal { gain: 1.0 / (2.0 * m.num_layers as f32).sqrt() }
        } else {
            Init::Zeros
        };
        Bigram {
            embed: g.param("bigram.embed.weight", &[buckets, bd], ParamGroup::Embed, Init::Zeros),
            proj: g.param("bigram.proj.weight", &[d, bd], ParamGroup::Matrix, proj_init),
            scale: g.param("bigram.scale", &[], ParamGroup::Scalar, Init::Constant(m.bigram_scale_init)),
        }
    });
    let smear_gate = m.smear_gate.then(|| g.param("smear.gate", &[d], ParamGroup::Scalar, Init::Zeros));
    let skip_weights =
        (n_skip > 0).then(|| g.param("skip_weights", &[n_skip, d], ParamGroup::Scalar, Init::Constant(1.0)));
    let linear = |g: &mut PlanBuilder, name: &str, out: usize, inp: usize, zero: bool| {
        let init = if zero {
            Init::Zeros
        } else if m.ortho_init && out >= 64 && inp >= 64 {
            Init::Orthogonal { gain: 1.0 }
        } else {
            Init::Uniform { bound: 1.0 / (inp as f32).sqrt() }
        };
        g.param(name, &[out, inp], ParamGroup::Matrix, init)
    };
    let blocks: Vec<BlockParams> = (0..m.num_layers)
        .map(|i| {
            let p = |s: &str| format!("blocks.{i}.{s}");
            BlockParams {
                c_q: linear(&mut g, &p("attn.c_q.weight"), d, d, false),
                c_k: linear(&mut g, &p("attn.c_k.weight"), kv * hd, d, false),
                c_v: linear(&mut g, &p("attn.c_v.weight"), kv * hd, d, false),
                proj: linear(&mut g, &p("attn.proj.weight"), d, d, true),
                q_gain: g.param(&p("attn.q_gain"), &[heads], ParamGroup::Scalar, Init::Constant(m.qk_gain_init)),
                fc: linear(&mut g, &p("mlp.fc.weight"), hidden, d, false),
                mlp_proj: linear(&mut g, &p("mlp.proj.weight"), d, hidden, true),
                attn_scale: g.param(&p("attn_scale"), &[d], ParamGroup::Scalar, Init::Constant(1.0)),
                mlp_scale: g.param(&p("mlp_scale"), &[d], ParamGroup::Scalar, Init::Constant(1.0)),
                resid_mix: g.param(&p("resid_mix"), &[2, d], ParamGroup::Scalar, Init::ResidMix),
            }
        })
        .collect();

    // ---- inputs and constants ----
    let ids = g.tensor("ids", &[n], DType::U32, Role::Input);
    let targets = g.tensor("targets", &[n], DType::U32, Role::Input);
    let bigram_ids = bigram.as_ref().map(|_| g.tensor("bigram_ids", &[n], DType::U32, Role::Input));
    let rope = g.constant("rope_table", &[2, seq, hd / 2], rope_table(seq, hd, cfg.effective_rope_base()));
    let fwd = Phase::Forward;
    let bwd = Phase::Backward;
    let per_channel = |row| Channels::per_channel(d, row);
    let attn = AttnShape { batch: dims.batch, seq, heads, kv_heads: kv, head_dim: hd };

    // ================= forward =================
    let emb = g.activation("emb", &[n, d]);
    g.push(fwd, EmbeddingFwd { tokens: n, dim: d, vocab: v }, &[emb, tok_emb, ids])?;
    // x_in = emb + bigram.scale * W_bp E_bg[bucket]
    let mut x_in = emb;
    let mut bigram_acts = None;
    if let (Some(b), Some(bids)) = (&bigram, bigram_ids) {
        let bd = m.bigram_dim;
        let e = g.activation("bigram.e", &[n, bd]);
        g.push(fwd, EmbeddingFwd { tokens: n, dim: bd, vocab: m.bigram_buckets }, &[e, b.embed, bids])?;
        let p = g.activation("bigram.p", &[n, d]);
        linear_fwd(&mut g, p, e, b.proj)?;
        let sum = g.activation("bigram.sum", &[n, d]);
        g.push(fwd, ScaledAddFwd { count: n * d, ch: SCALAR, s_len: 1 }, &[sum, emb, p, b.scale])?;
        bigram_acts = Some((e, p, sum));
        x_in = sum;
    }
    let x0n = g.activation("x0.norm", &[n, d]);
    let x0_rstd = g.activation("x0.rstd", &[n]);
    g.push(fwd, RmsNormFwd { rows: n, dim: d, eps: RMS_EPS }, &[x0n, x0_rstd, x_in])?;
    // SmearGate: x0_t = (1 - sig(gate)) x0n_t + sig(gate) x0n_{t-1}
    let x0 = match smear_gate {
        Some(gate) => {
            let x0 = g.activation("x0", &[n, d]);
            g.push(fwd, SmearFwd { rows: n, dim: d, seq_len: seq }, &[x0, x0n, gate])?;
            x0
        }
        None => x0n,
    };

    let mut x = x0;
    let mut skips: Vec<TensorId> = Vec::new();
    let mut acts: Vec<BlockActs> = Vec::new();
    for (i, p) in blocks.iter().enumerate() {
        let name = |s: &str| format!("blocks.{i}.{s}");
        let act = |g: &mut PlanBuilder, s: &str, shape: &[usize]| g.activation(name(s), shape);
        // U-Net: decoder j adds skip_weights[j] * (encoder output n_enc-1-j).
        let mut skip = None;
        if i >= n_enc && i - n_enc < n_skip {
            let j = i - n_enc;
            let src = skips.pop().expect("one skip per decoder");
            let out = act(&mut g, "skip_out", &[n, d]);
            let sw = skip_weights.expect("skips exist");
            g.push(fwd, ScaledAddFwd { count: n * d, ch: per_channel(j), s_len: n_skip * d }, &[out, x, src, sw])?;
            skip = Some((x, src, j, out));
            x = out;
        }
        let x_in = x;
        let xm = act(&mut g, "xm", &[n, d]);
        g.push(fwd, MixFwd { count: n * d, ch: per_channel(0) }, &[xm, x_in, x0, p.resid_mix])?;
        // attention
        let a_in = act(&mut g, "attn.in", &[n, d]);
        let a_rstd = act(&mut g, "attn.in.rstd", &[n]);
        g.push(fwd, RmsNormFwd { rows: n, dim: d, eps: RMS_EPS }, &[a_in, a_rstd, xm])?;
        let q = act(&mut g, "attn.q", &[n, heads * hd]);
        let k = act(&mut g, "attn.k", &[n, kv * hd]);
        let vv = act(&mut g, "attn.v", &[n, kv * hd]);
        linear_fwd(&mut g, q, a_in, p.c_q)?;
        linear_fwd(&mut g, k, a_in, p.c_k)?;
        linear_fwd(&mut g, vv, a_in, p.c_v)?;
        let qn = act(&mut g, "attn.qn", &[n, heads * hd]);
        let q_rstd = act(&mut g, "attn.qn.rstd", &[n * heads]);
        g.push(fwd, RmsNormFwd { rows: n * heads, dim: hd, eps: RMS_EPS }, &[qn, q_rstd, q])?;
        let kn = act(&mut g, "attn.kn", &[n, kv * hd]);
        let k_rstd = act(&mut g, "attn.kn.rstd", &[n * kv]);
        g.push(fwd, RmsNormFwd { rows: n * kv, dim: hd, eps: RMS_EPS }, &[kn, k_rstd, k])?;
        let qr = act(&mut g, "attn.qr", &[n, heads * hd]);
        g.push(fwd, Rope { rows: n, heads, head_dim: hd, seq_len: seq, inverse: false }, &[qr, qn, rope])?;
        let kr = act(&mut g, "attn.kr", &[n, kv * hd]);
        g.push(fwd, Rope { rows: n, heads: kv, head_dim: hd, seq_len: seq, inverse: false }, &[kr, kn, rope])?;
        let qg = act(&mut g, "attn.qg", &[n, heads * hd]);
        g.push(
            fwd,
            ScaleFwd { count: n * heads * hd, ch: Channels::per_head(heads, hd), s_len: heads },
            &[qg, qr, p.q_gain],
        )?;
        let y = act(&mut g, "attn.y", &[n, heads * hd]);
        let lse = act(&mut g, "attn.lse", &[dims.batch, heads, seq]);
        let delta = act(&mut g, "attn.delta", &[dims.batch, heads, seq]);
        g.push(fwd, AttentionFwd(attn), &[y, lse, qg, kr, vv])?;
        // XSA on the last blocks: remove from each head its component along its own v.
        let xsa = (i + m.xsa_last_n >= m.num_layers).then(|| act(&mut g, "attn.xsa", &[n, heads * hd]));
        if let Some(yx) = xsa {
            g.push(fwd, XsaFwd { rows: n, heads, kv_heads: kv, head_dim: hd }, &[yx, y, vv])?;
        }
        let y_out = xsa.unwrap_or(y);
        let o = act(&mut g, "attn.o", &[n, d]);
        linear_fwd(&mut g, o, y_out, p.proj)?;
        let xa = act(&mut g, "xa", &[n, d]);
        g.push(fwd, ScaledAddFwd { count: n * d, ch: per_channel(0), s_len: d }, &[xa, xm, o, p.attn_scale])?;
        // MLP
        let m_in = act(&mut g, "mlp.in", &[n, d]);
        let m_rstd = act(&mut g, "mlp.in.rstd", &[n]);
        g.push(fwd, RmsNormFwd { rows: n, dim: d, eps: RMS_EPS }, &[m_in, m_rstd, xa])?;
        let h = act(&mut g, "mlp.h", &[n, hidden]);
        linear_fwd(&mut g, h, m_in, p.fc)?;
        let r = act(&mut g, "mlp.r", &[n, hidden]);
        g.push(fwd, Relu2Fwd { count: n * hidden }, &[r, h])?;
        let mo = act(&mut g, "mlp.o", &[n, d]);
        linear_fwd(&mut g, mo, r, p.mlp_proj)?;
        let x_out = act(&mut g, "out", &[n, d]);
        g.push(fwd, ScaledAddFwd { count: n * d, ch: per_channel(0), s_len: d }, &[x_out, xa, mo, p.mlp_scale])?;
        if i < n_enc {
            skips.push(x_out);
        }
        x = x_out;
        acts.push(BlockActs {
            skip,
            x_in,
            xm,
            a_in,
            a_rstd,
            q,
            k,
            v: vv,
            qn,
            q_rstd,
            kn,
            k_rstd,
            qr,
            kr,
            qg,
            y,
            xsa,
            lse,
            delta,
            o,
            xa,
            m_in,
            m_rstd,
            h,
            r,
            mo,
            x_out,
        });
    }
    let hf = g.activation("final.h", &[n, d]);
    let hf_rstd = g.activation("final.rstd", &[n]);
    g.push(fwd, RmsNormFwd { rows: n, dim: d, eps: RMS_EPS }, &[hf, hf_rstd, x])?;
    let logits = g.activation("logits", &[n, v]);
    linear_fwd(&mut g, logits, hf, tok_emb)?;
    let loss_rows = g.activation("loss_rows", &[n]);
    let loss_total = g.tensor("loss", &[1], DType::F32, Role::Loss);
    let step_tokens = cfg.step_tokens() as f64;
    let dlogits = g.grad(logits);
    let ce =
        CrossEntropy { rows: n, vocab: v, softcap: m.logit_softcap, grad_scale: 1.0 / step_tokens, write_grad: true };
    g.push(fwd, ce, &[dlogits, loss_rows, logits, targets])?;
    g.push(fwd, SumRows { count: n, scale: 1.0 / step_tokens }, &[loss_total, loss_rows])?;

    // ================= backward (mirrors the forward, last line first) =================
    // logits = hf . tok_emb^T
    linear_bwd(&mut g, hf, tok_emb, dlogits)?;
    let dhf = g.grad(hf);
    // hf = rmsnorm(x)
    let dx_last = g.grad(x);
    g.push(bwd, RmsNormBwd { rows: n, dim: d }, &[dx_last, dhf, hf, hf_rstd])?;
    // Layer 0 reads x0 both as its stream input and as the mix source: the mix source's
    // gradient gets its own tensor so no step writes one tensor twice; both flow back
    // through the same (linear) rmsnorm backward at the end.
    let dx0_mix = g.tensor("d.x0.mix", &[n, d], DType::F32, Role::ActGrad);
    for (p, a) in blocks.iter().zip(&acts).rev() {
        // x_out = xa + mlp_scale * mo
        let (dx_out, dxa, dmo) = (g.grad(a.x_out), g.grad(a.xa), g.grad(a.mo));
        g.push(bwd, ScaledAddBwd { count: n * d, ch: per_channel(0), s_len: d }, &[dxa, dmo, dx_out, p.mlp_scale])?;
        let d_mlp_scale = g.grad(p.mlp_scale);
        g.push(bwd, ChannelDot { count: n * d, ch: per_channel(0), out_len: d }, &[d_mlp_scale, dx_out, a.mo])?;
        // mo = r . W_proj^T
        linear_bwd(&mut g, a.r, p.mlp_proj, dmo)?;
        let dr = g.grad(a.r);
        // r = relu(h)^2
        let dh = g.grad(a.h);
        g.push(bwd, Relu2Bwd { count: n * hidden }, &[dh, dr, a.h])?;
        // h = m_in . W_fc^T
        linear_bwd(&mut g, a.m_in, p.fc, dh)?;
        let dm_in = g.grad(a.m_in);
        // m_in = rmsnorm(xa)
        g.push(bwd, RmsNormBwd { rows: n, dim: d }, &[dxa, dm_in, a.m_in, a.m_rstd])?;
        // xa = xm + attn_scale * o
        let (dxm, do_) = (g.grad(a.xm), g.grad(a.o));
        g.push(bwd, ScaledAddBwd { count: n * d, ch: per_channel(0), s_len: d }, &[dxm, do_, dxa, p.attn_scale])?;
        let d_attn_scale = g.grad(p.attn_scale);
        g.push(bwd, ChannelDot { count: n * d, ch: per_channel(0), out_len: d }, &[d_attn_scale, dxa, a.o])?;
        // o = y_out . W_o^T (y_out: XSA's output where the block has it, else y)
        let y_out = a.xsa.unwrap_or(a.y);
        linear_bwd(&mut g, y_out, p.proj, do_)?;
        let dy_out = g.grad(y_out);
        // y_out = xsa(y, v)
        let dy = g.grad(a.y);
        if a.xsa.is_some() {
            let dv = g.grad(a.v);
            g.push(bwd, XsaBwd { rows: n, heads, kv_heads: kv, head_dim: hd }, &[dy, dv, dy_out, a.y, a.v])?;
        }
        // y = attention(qg, kr, v)
        let (dqg, dkr, dv) = (g.grad(a.qg), g.grad(a.kr), g.grad(a.v));
        g.push(bwd, AttentionBwdQ(attn), &[dqg, a.delta, dy, a.y, a.qg, a.kr, a.v, a.lse])?;
        g.push(bwd, AttentionBwdKv(attn), &[dkr, dv, dy, a.qg, a.kr, a.v, a.lse, a.delta])?;
        // qg = q_gain[head] * qr
        let dqr = g.grad(a.qr);
        let per_head = Channels::per_head(heads, hd);
        g.push(bwd, ScaleBwd { count: n * heads * hd, ch: per_head, s_len: heads }, &[dqr, dqg, p.q_gain])?;
        let d_q_gain = g.grad(p.q_gain);
        g.push(bwd, ChannelDot { count: n * heads * hd, ch: per_head, out_len: heads }, &[d_q_gain, dqg, a.qr])?;
        // qr = rope(qn), kr = rope(kn)
        let (dqn, dkn) = (g.grad(a.qn), g.grad(a.kn));
        g.push(bwd, Rope { rows: n, heads, head_dim: hd, seq_len: seq, inverse: true }, &[dqn, dqr, rope])?;
        g.push(bwd, Rope { rows: n, heads: kv, head_dim: hd, seq_len: seq, inverse: true }, &[dkn, dkr, rope])?;
        // qn = rmsnorm(q), kn = rmsnorm(k) per head
        let (dq, dk) = (g.grad(a.q), g.grad(a.k));
        g.push(bwd, RmsNormBwd { rows: n * heads, dim: hd }, &[dq, dqn, a.qn, a.q_rstd])?;
        g.push(bwd, RmsNormBwd { rows: n * kv, dim: hd }, &[dk, dkn, a.kn, a.k_rstd])?;
        // q, k, v = a_in . W^T
        for (dt, w) in [(dq, p.c_q), (dk, p.c_k), (dv, p.c_v)] {
            linear_bwd(&mut g, a.a_in, w, dt)?;
        }
        let da_in = g.grad(a.a_in);
        // a_in = rmsnorm(xm)
        g.push(bwd, RmsNormBwd { rows: n, dim: d }, &[dxm, da_in, a.a_in, a.a_rstd])?;
        // xm = mix0 * x_in + mix1 * x0
        let dx_in = g.grad(a.x_in);
        g.push(bwd, MixBwd { count: n * d, ch: per_channel(0) }, &[dx_in, dx0_mix, dxm, p.resid_mix])?;
        let d_mix = g.grad(p.resid_mix);
        g.push(bwd, ChannelDot { count: n * d, ch: per_channel(0), out_len: 2 * d }, &[d_mix, dxm, a.x_in])?;
        g.push(bwd, ChannelDot { count: n * d, ch: per_channel(1), out_len: 2 * d }, &[d_mix, dxm, x0])?;
        // x_in = x_prev + skip_weights[j] * skipped
        if let Some((x_prev, src, j, out)) = a.skip {
            let (dout, dprev) = (g.grad(out), g.grad(x_prev));
            // The first decoder's skip is the stream itself (block n_enc-1's output): its
            // gradient goes through a separate tensor and is added in afterwards.
            let dsrc = if src == x_prev {
                g.tensor(format!("d.skip.{j}"), &[n, d], DType::F32, Role::ActGrad)
            } else {
                g.grad(src)
            };
            let sw = skip_weights.expect("skips exist");
            g.push(
                bwd,
                ScaledAddBwd { count: n * d, ch: per_channel(j), s_len: n_skip * d },
                &[dprev, dsrc, dout, sw],
            )?;
            let dsw = g.grad(sw);
            g.push(bwd, ChannelDot { count: n * d, ch: per_channel(j), out_len: n_skip * d }, &[dsw, dout, src])?;
            if src == x_prev {
                g.push(bwd, AddInto { count: n * d }, &[dprev, dsrc])?;
            }
        }
    }
    // x0 = smear(rmsnorm(x_in)): the stream's gradient and the mix sources' gradient.
    // Both flow back through the (linear) smear and rmsnorm backward passes.
    let (dx0, dx_in) = (g.grad(x0), g.grad(x_in));
    let x0_grads = [dx0, dx0_mix];
    let dx0n = match smear_gate {
        Some(gate) => {
            let (dx0n, dgate) = (g.grad(x0n), g.grad(gate));
            for dy in x0_grads {
                g.push(bwd, SmearBwd { rows: n, dim: d, seq_len: seq }, &[dx0n, dy, gate])?;
                g.push(bwd, SmearGrad { rows: n, dim: d, seq_len: seq }, &[dgate, dy, x0n, gate])?;
            }
            vec![dx0n]
        }
        None => x0_grads.to_vec(),
    };
    for dy in dx0n {
        g.push(bwd, RmsNormBwd { rows: n, dim: d }, &[dx_in, dy, x0n, x0_rstd])?;
    }
    // x_in = emb + bigram.scale * W_bp E_bg[bucket]
    if let (Some(b), Some(bids), Some((e, p, sum))) = (&bigram, bigram_ids, bigram_acts) {
        let bd = m.bigram_dim;
        let (dsum, demb, dp, de) = (g.grad(sum), g.grad(emb), g.grad(p), g.grad(e));
        g.push(bwd, ScaledAddBwd { count: n * d, ch: SCALAR, s_len: 1 }, &[demb, dp, dsum, b.scale])?;
        let dscale = g.grad(b.scale);
        g.push(bwd, ChannelDot { count: n * d, ch: SCALAR, out_len: 1 }, &[dscale, dsum, p])?;
        linear_bwd(&mut g, e, b.proj, dp)?;
        let dtable = g.grad(b.embed);
        g.push(bwd, EmbeddingBwd { tokens: n, dim: bd, vocab: m.bigram_buckets }, &[dtable, de, bids])?;
    }
    let demb = g.grad(emb);
    // emb = tok_emb[ids]
    let d_tok_emb = g.grad(tok_emb);
    g.push(bwd, EmbeddingBwd { tokens: n, dim: d, vocab: v }, &[d_tok_emb, demb, ids])?;

    // ================= optimizer =================
    // The record's per-step order: clip the global gradient norm, step the embeddings'
    // AdamW, the matrices' Muon (or AdamW), the scalars' AdamW, then update the EMA.
    let t = &cfg.train;
    let slots: Vec<ParamSlot> = g.params().to_vec();
    if t.grad_clip_norm > 0.0 {
        let grads: Vec<TensorId> = slots.iter().map(|s| s.grad).collect();
        optim::emit_clip(&mut g, &grads, t.grad_clip_norm)?;
    }
    let muon = t.matrix_optimizer == MatrixOptimizer::Muon;
    for group in [ParamGroup::Embed, ParamGroup::Matrix, ParamGroup::Scalar] {
        let members: Vec<ParamSlot> = slots.iter().filter(|s| s.group == group).copied().collect();
        if members.is_empty() {
            continue;
        }
        let hyper = g.hyper(group);
        if group == ParamGroup::Matrix && muon {
            optim::emit_muon(&mut g, &members, hyper, t.muon_ns_steps)?;
            continue;
        }
        for s in members {
            let count: usize = g.shape(s.param).iter().product();
            g.push(Phase::Optimizer, AdamW { count }, &[s.param, s.m, s.v, s.grad, hyper])?;
        }
    }
    if t.ema_decay > 0.0 {
        let params: Vec<TensorId> = slots.iter().map(|s| s.param).collect();
        optim::emit_ema(&mut g, &params, t.ema_decay)?;
    }
    g.finish(PlanIo { ids, targets, logits, loss_rows, loss_total, bigram_ids })
}

/// A linear layer without bias: `y = x . W^T` for `x [rows, in]`, `W [out, in]`.
fn linear_fwd(g: &mut PlanBuilder, y: TensorId, x: TensorId, w: TensorId) -> Result<(), PlanError> {
    let (out, inp) = (g.shape(w)[0], g.shape(w)[1]);
    let rows = g.shape(x).iter().product::<usize>() / inp;
    g.push(Phase::Forward, Matmul { m: rows, n: out, k: inp, layout: Layout::Nt, accumulate: false }, &[y, x, w])
}

/// Its backward from the output gradient `dy`: `dx += dy . W` and `dW += dy^T . x`.
fn linear_bwd(g: &mut PlanBuilder, x: TensorId, w: TensorId, dy: TensorId) -> Result<(), PlanError> {
    let (out, inp) = (g.shape(w)[0], g.shape(w)[1]);
    let rows = g.shape(x).iter().product::<usize>() / inp;
    let (dx, dw) = (g.grad(x), g.grad(w));
    g.push(Phase::Backward, Matmul { m: rows, n: inp, k: out, layout: Layout::Nn, accumulate: true }, &[dx, dy, w])?;
    g.push(Phase::Backward, Matmul { m: out, n: inp, k: rows, layout: Layout::Tn, accumulate: true }, &[dw, dy, x])
}

/// A one-value parameter scaling every element (bigram.scale).
const SCALAR: Channels = Channels { group: 1, channels: 1, offset: 0 };

/// The BigramHash parameters.
struct Bigram {
    embed: TensorId,
    proj: TensorId,
    scale: TensorId,
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
