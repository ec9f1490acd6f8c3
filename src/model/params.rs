//! Every parameter of the model, declared in one place, with its reference state-dict name,
//! shape, optimizer group and init.
//!
//! The declaration order is the reference's `named_parameters()` order and must not change:
//! the initializer draws every parameter from one seeded RNG in this order, and checkpoints
//! list tensors in it.
use super::Dims;
use crate::config::ModelConfig;
use crate::plan::{Init, ParamGroup, PlanBuilder, TensorId};

/// All parameters.
pub(super) struct Params {
    /// The tied token embedding `[vocab, d]`: the input table and the output head.
    pub tok_emb: TensorId,
    pub bigram: Option<BigramParams>,
    /// SmearGate's per-channel gate logits `[d]`.
    pub smear_gate: Option<TensorId>,
    /// The U-Net skip weights `[n_skip, d]`, one row per decoder with an encoder.
    pub skip_weights: Option<TensorId>,
    pub blocks: Vec<BlockParams>,
}

/// BigramHash: a hashed (previous, current) token table projected to the model width.
pub(super) struct BigramParams {
    /// `[buckets, bigram_dim]`.
    pub embed: TensorId,
    /// `[d, bigram_dim]`.
    pub proj: TensorId,
    /// One value scaling the projected table.
    pub scale: TensorId,
}

/// One block's parameters.
pub(super) struct BlockParams {
    pub attn: AttnParams,
    pub mlp: MlpParams,
    /// `[2, d]`: the stream's and x0's per-channel weights of the residual mix.
    pub resid_mix: TensorId,
}

/// The attention half of a block.
pub(super) struct AttnParams {
    pub c_q: TensorId,
    pub c_k: TensorId,
    pub c_v: TensorId,
    /// The output projection.
    pub proj: TensorId,
    /// The per-head query gain `[heads]`.
    pub q_gain: TensorId,
    /// The per-channel scale of the attention output on the stream (`attn_scale`).
    pub scale: TensorId,
}

/// The MLP half of a block.
pub(super) struct MlpParams {
    pub fc: TensorId,
    pub proj: TensorId,
    /// The per-channel scale of the MLP output on the stream (`mlp_scale`).
    pub scale: TensorId,
}

impl Params {
    pub fn declare(g: &mut PlanBuilder, m: &ModelConfig, dims: &Dims) -> Params {
        let Dims { d, v, heads, kv, hd, hidden, .. } = *dims;
        let tok_emb =
            g.param("tok_emb.weight", &[v, d], ParamGroup::Embed, Init::Normal { std: m.tied_embed_init_std });
        let bigram = (dims.bigram_buckets > 0).then(|| {
            let (buckets, bd) = (dims.bigram_buckets, dims.bigram_dim);
            // Zero-initialized unless OrthoInit, which makes it orthogonal and then applies the
            // 1/sqrt(2L) output scaling (the reference's muP-style rule for ".proj" modules).
            let proj_init = if m.ortho_init {
                Init::Orthogonal { gain: 1.0 / (2.0 * m.num_layers as f32).sqrt() }
            } else {
                Init::Zeros
            };
            BigramParams {
                embed: g.param("bigram.embed.weight", &[buckets, bd], ParamGroup::Embed, Init::Zeros),
                proj: g.param("bigram.proj.weight", &[d, bd], ParamGroup::Matrix, proj_init),
                scale: g.param("bigram.scale", &[], ParamGroup::Scalar, Init::Constant(m.bigram_scale_init)),
            }
        });
        let smear_gate = m.smear_gate.then(|| g.param("smear.gate", &[d], ParamGroup::Scalar, Init::Zeros));
        let skip_weights = (dims.n_skip > 0)
            .then(|| g.param("skip_weights", &[dims.n_skip, d], ParamGroup::Scalar, Init::Constant(1.0)));
        let blocks = (0..dims.layers)
            .map(|i| {
                let name = |s: &str| format!("blocks.{i}.{s}");
                let linear = |g: &mut PlanBuilder, s: &str, out: usize, inp: usize, zero: bool| {
                    g.param(&name(s), &[out, inp], ParamGroup::Matrix, linear_init(m, out, inp, zero))
                };
                let scalar = |g: &mut PlanBuilder, s: &str, shape: &[usize], init: Init| {
                    g.param(&name(s), shape, ParamGroup::Scalar, init)
                };
                // In the reference's order: the attention's modules, the MLP's, then the
                // block's own vectors.
                let c_q = linear(g, "attn.c_q.weight", d, d, false);
                let c_k = linear(g, "attn.c_k.weight", kv * hd, d, false);
                let c_v = linear(g, "attn.c_v.weight", kv * hd, d, false);
                let proj = linear(g, "attn.proj.weight", d, d, true);
                let q_gain = scalar(g, "attn.q_gain", &[heads], Init::Constant(m.qk_gain_init));
                let fc = linear(g, "mlp.fc.weight", hidden, d, false);
                let mlp_proj = linear(g, "mlp.proj.weight", d, hidden, true);
                let attn_scale = scalar(g, "attn_scale", &[d], Init::Constant(1.0));
                let mlp_scale = scalar(g, "mlp_scale", &[d], Init::Constant(1.0));
                let resid_mix = scalar(g, "resid_mix", &[2, d], Init::ResidMix);
                BlockParams {
                    attn: AttnParams { c_q, c_k, c_v, proj, q_gain, scale: attn_scale },
                    mlp: MlpParams { fc, proj: mlp_proj, scale: mlp_scale },
                    resid_mix,
                }
            })
            .collect();
        Params { tok_emb, bigram, smear_gate, skip_weights, blocks }
    }
}

/// A block linear's init: output projections start at zero (`zero`); with OrthoInit the
/// others with both dims >= 64 are orthogonal; the rest get PyTorch's Linear default.
fn linear_init(m: &ModelConfig, out: usize, inp: usize, zero: bool) -> Init {
    if zero {
        Init::Zeros
    } else if m.ortho_init && out >= 64 && inp >= 64 {
        Init::Orthogonal { gain: 1.0 }
    } else {
        Init::Uniform { bound: 1.0 / (inp as f32).sqrt() }
    }
}
