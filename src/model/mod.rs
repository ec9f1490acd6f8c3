//! The GPT of the challenge, up to the record's additions, written as plan steps.
//!
//! The baseline structure (record-spec.md section 4) and the record's options, each off unless
//! the config turns it on: BigramHash, SmearGate, XSA on the last blocks, OrthoInit.
//!
//! `x0 = smear(rmsnorm(tok_emb[ids] + bigram.scale * W_bp E_bg[bucket]))`; for each block,
//! decoders first add `skip_weights[j] * (the matching encoder output)`, then
//! `x = mix0 * x + mix1 * x0`, `x += attn_scale * attn(rmsnorm(x))`,
//! `x += mlp_scale * mlp(rmsnorm(x))`; finally `logits = rmsnorm(x) . tok_emb^T`, softcapped,
//! and a cross-entropy. Attention is QK-RMS-normed, RoPE'd, q scaled by a per-head gain, causal
//! with grouped KV heads, optionally followed by XSA; the MLP is `W_down relu(W_up x)^2`.
//!
//! The files follow the model's parts, each a forward and the backward that mirrors it:
//! `params` declares every parameter; `input` is the embedding stage (token embedding,
//! BigramHash, the x0 norm and SmearGate); `block` one transformer block (its attention half
//! and its MLP half); `head` the final norm, tied logits and loss. This file strings them
//! together with the U-Net skips and wires the optimizers.
//!
//! The backward pass is written by hand, part by part in reverse, each line undoing the
//! forward line with the same name. Every backward step accumulates into gradient tensors,
//! which executors zero at the start of each micro-batch (activation gradients) or step
//! (parameter gradients).
//!
//! Tensor and step order is part of the contract: parameters are initialized from one seeded
//! RNG in declaration order, and gradient tensors are created (`PlanBuilder::grad`) and
//! accumulated in the order the backward reaches them, so reordering lines here changes
//! initial weights, tensor ids and float rounding.
mod block;
mod head;
mod input;
mod params;

pub use input::bigram_buckets;

use crate::config::{Config, MatrixOptimizer, TrainConfig};
use crate::ops::attention::AttnShape;
use crate::ops::elementwise::Channels;
use crate::ops::matmul::Layout;
use crate::ops::rope::rope_table;
use crate::optim;
use crate::plan::cost::LARGE_GPU_SMS;
use crate::plan::defs::*;
use crate::plan::{DType, ParamGroup, ParamSlot, Phase, Plan, PlanBuilder, PlanError, PlanIo, Role, TensorId};
use block::{BlockActs, BlockEnv};
use params::Params;

/// Shapes derived from the config.
#[derive(Clone, Copy)]
struct Dims {
    /// Tokens per micro-batch (`batch * seq`).
    n: usize,
    d: usize,
    v: usize,
    heads: usize,
    kv: usize,
    hd: usize,
    hidden: usize,
    seq: usize,
    batch: usize,
    layers: usize,
    /// U-Net encoders (the first half of the blocks, rounded down).
    n_enc: usize,
    /// U-Net skips: one per decoder that has a matching encoder.
    n_skip: usize,
    bigram_buckets: usize,
    bigram_dim: usize,
}

impl Dims {
    fn new(cfg: &Config) -> Dims {
        Dims::with_batch(cfg, cfg.train.batch_seqs)
    }

    /// The shapes for `batch` sequences of `train.seq_len` (an evaluation plan's batch).
    fn with_batch(cfg: &Config, batch: usize) -> Dims {
        let m = &cfg.model;
        let n_enc = m.num_layers / 2;
        Dims {
            n: batch * cfg.train.seq_len,
            d: m.model_dim,
            v: m.vocab_size,
            heads: m.num_heads,
            kv: m.num_kv_heads,
            hd: cfg.head_dim(),
            hidden: m.model_dim * m.mlp_mult,
            seq: cfg.train.seq_len,
            batch,
            layers: m.num_layers,
            n_enc,
            n_skip: n_enc.min(m.num_layers - n_enc),
            bigram_buckets: m.bigram_buckets,
            bigram_dim: m.bigram_dim,
        }
    }

    fn attn(&self) -> AttnShape {
        AttnShape { batch: self.batch, seq: self.seq, heads: self.heads, kv_heads: self.kv, head_dim: self.hd }
    }

    /// Row `row` of a `[rows, d]` per-channel parameter.
    fn per_channel(&self, row: usize) -> Channels {
        Channels::per_channel(self.d, row)
    }
}

/// Builds the training plan (forward, backward, optimizer) for one micro-batch of the config.
pub fn build_plan(cfg: &Config) -> Result<Plan, PlanError> {
    build_rank_plan(cfg, 1)
}

/// [`build_plan`] for one rank of `world` data-parallel processes: the same plan on every
/// rank, whose Muon work is split into `world` shards when `train.distributed_muon` is on
/// (see [`Plan::muon_shards`](crate::plan::Plan::muon_shards)).
pub fn build_rank_plan(cfg: &Config, world: usize) -> Result<Plan, PlanError> {
    let shards = if cfg.train.distributed_muon { world.max(1) } else { 1 };
    build_with(cfg, PlanBuilder::new(), |g| emit_optimizer(g, &cfg.train, shards))
}

/// The test-time training plan (record-spec.md section 8): the training plan's forward and
/// backward over one batch of `eval.ttt_batch_seqs` sequences (the loss their mean CE), the
/// first `eval.freeze_blocks()` blocks frozen (see [`PlanBuilder::sgd`]: no gradients for
/// them, while the activation gradient still flows through them to the embedding), then the
/// global-norm clip at `eval.ttt_grad_clip` over the trainable gradients and one SGD step
/// per trainable parameter (hyperparameters in `hyper.Scalar`, an
/// [`SgdHyper`](crate::ops::sgd::SgdHyper)). No Adam, Muon or EMA.
pub fn build_ttt_plan(cfg: &Config) -> Result<Plan, PlanError> {
    let mut ttt = cfg.clone();
    ttt.train.batch_seqs = cfg.eval.ttt_batch_seqs;
    ttt.train.grad_accum = 1;
    let frozen = (0..cfg.eval.freeze_blocks()).map(|i| format!("blocks.{i}.")).collect();
    build_with(&ttt, PlanBuilder::sgd(frozen), |g| {
        let slots: Vec<ParamSlot> = g.params().to_vec();
        let grads: Vec<TensorId> = slots.iter().map(|s| s.grad).collect();
        let clip = optim::emit_clip(g, &grads, cfg.eval.ttt_grad_clip)?;
        let hyper = g.hyper(ParamGroup::Scalar);
        for s in slots {
            let count: usize = g.shape(s.param).iter().product();
            g.push(Phase::Optimizer, Sgd { count }, &[s.param, s.m, s.grad, clip, hyper])?;
        }
        Ok(())
    })
}

/// The model's forward and backward into `g`, then `optimizer`'s steps.
fn build_with(
    cfg: &Config,
    mut g: PlanBuilder,
    optimizer: impl FnOnce(&mut PlanBuilder) -> Result<(), PlanError>,
) -> Result<Plan, PlanError> {
    let m = &cfg.model;
    let dims = Dims::new(cfg);
    let Dims { n, d, seq, hd, .. } = dims;
    let p = Params::declare(&mut g, m, &dims);
    // The loss is the step's mean: its gradient carries 1/tokens into the whole backward.
    g.set_grad_scale(1.0 / cfg.step_tokens() as f64);

    // ---- inputs and constants ----
    let ids = g.tensor("ids", &[n], DType::U32, Role::Input);
    let targets = g.tensor("targets", &[n], DType::U32, Role::Input);
    let bigram_ids = p.bigram.as_ref().map(|_| g.tensor("bigram_ids", &[n], DType::U32, Role::Input));
    // The embedding backward's indices of the positions of each id (built by the host).
    let ids_index = g.tensor("ids_index", &[dims.v + 1 + n], DType::U32, Role::Input);
    let bigram_index =
        p.bigram.as_ref().map(|_| g.tensor("bigram_index", &[dims.bigram_buckets + 1 + n], DType::U32, Role::Input));
    let rope = g.constant("rope_table", &[2, seq, hd / 2], rope_table(seq, hd, cfg.effective_rope_base()));

    // ================= forward =================
    let Stream { inp, env, skips, acts, x } = forward_stream(&mut g, cfg, &dims, &p, ids, bigram_ids, rope)?;
    let head = head::forward(&mut g, &dims, p.tok_emb, x, targets, m.logit_softcap, cfg.step_tokens() as f64)?;

    // ================= backward (mirrors the forward, last line first) =================
    head::backward(&mut g, &dims, p.tok_emb, &head)?;
    // Layer 0 reads x0 both as its stream input and as the mix source: the mix source's
    // gradient gets its own tensor so no step writes one tensor twice; both flow back
    // through the same (linear) rmsnorm backward at the end.
    let dx0_mix = g.tensor("d.x0.mix", &[n, d], DType::F32, Role::ActGrad);
    for ((bp, a), skip) in p.blocks.iter().zip(&acts).zip(&skips).rev() {
        block::backward(&mut g, &env, bp, a, dx0_mix)?;
        if let Some(s) = skip {
            skip_backward(&mut g, &dims, p.skip_weights.expect("skips exist"), s)?;
        }
    }
    input::backward(&mut g, &dims, &p, &inp, dx0_mix, [ids_index, bigram_index.unwrap_or(ids_index)])?;

    optimizer(&mut g)?;
    let io = PlanIo {
        ids,
        targets,
        logits: head.logits,
        loss_rows: head.loss_rows,
        loss_total: head.loss_total,
        bigram_ids,
        ids_index: Some(ids_index),
        bigram_index,
        scored: None,
    };
    g.finish(io)
}

/// Builds the forward-only evaluation plan: `batch` windows of `train.seq_len` tokens, the
/// output head and the cross-entropy computed only at `scored_rows` positions of the batch
/// (the host writes their row indices into `io().scored` and their targets into
/// `io().targets`; `io().loss_rows` is their NLL). No gradients, no optimizer state; the
/// parameters keep the training plan's names and shapes, so weights move between the plans
/// by name.
pub fn build_eval_plan(cfg: &Config, batch: usize, scored_rows: usize) -> Result<Plan, PlanError> {
    let m = &cfg.model;
    let dims = Dims::with_batch(cfg, batch);
    let Dims { n, seq, hd, .. } = dims;
    if scored_rows == 0 || scored_rows > n {
        return Err(PlanError::Other(format!(
            "evaluation plan: {scored_rows} scored rows for a batch of {n} positions (expected 1..={n})"
        )));
    }
    let mut g = PlanBuilder::forward_only();
    let p = Params::declare(&mut g, m, &dims);
    let ids = g.tensor("ids", &[n], DType::U32, Role::Input);
    let targets = g.tensor("targets", &[scored_rows], DType::U32, Role::Input);
    let bigram_ids = p.bigram.as_ref().map(|_| g.tensor("bigram_ids", &[n], DType::U32, Role::Input));
    let scored = g.tensor("scored_rows", &[scored_rows], DType::U32, Role::Input);
    let rope = g.constant("rope_table", &[2, seq, hd / 2], rope_table(seq, hd, cfg.effective_rope_base()));
    let s = forward_stream(&mut g, cfg, &dims, &p, ids, bigram_ids, rope)?;
    let head = head::eval_forward(&mut g, &dims, p.tok_emb, s.x, scored, targets, m.logit_softcap)?;
    let io = PlanIo {
        ids,
        targets,
        logits: head.logits,
        loss_rows: head.loss_rows,
        loss_total: head.loss_total,
        bigram_ids,
        ids_index: None,
        bigram_index: None,
        scored: Some(scored),
    };
    g.finish(io)
}

/// The forward pass from the inputs to the final stream `x`, with what the backward reads.
struct Stream {
    inp: input::InputActs,
    env: BlockEnv,
    skips: Vec<Option<Skip>>,
    acts: Vec<BlockActs>,
    x: TensorId,
}

/// The embedding stage, then the blocks with the U-Net skips.
fn forward_stream(
    g: &mut PlanBuilder,
    cfg: &Config,
    dims: &Dims,
    p: &Params,
    ids: TensorId,
    bigram_ids: Option<TensorId>,
    rope: TensorId,
) -> Result<Stream, PlanError> {
    let m = &cfg.model;
    let inp = input::forward(g, dims, p, ids, bigram_ids)?;
    let env = BlockEnv { dims: *dims, rope, x0: inp.x0 };
    let mut x = inp.x0;
    let mut encoder_outs: Vec<TensorId> = Vec::new();
    let mut skips: Vec<Option<Skip>> = Vec::new();
    let mut acts: Vec<BlockActs> = Vec::new();
    for (i, bp) in p.blocks.iter().enumerate() {
        // U-Net: decoder j adds skip_weights[j] * (encoder output n_enc-1-j).
        let skip = if i >= dims.n_enc && i - dims.n_enc < dims.n_skip {
            let src = encoder_outs.pop().expect("one skip per decoder");
            let sw = p.skip_weights.expect("skips exist");
            Some(skip_forward(g, dims, i, sw, x, src)?)
        } else {
            None
        };
        x = skip.as_ref().map_or(x, |s| s.out);
        let xsa = i + m.xsa_last_n >= m.num_layers;
        let a = block::forward(g, &env, i, bp, x, xsa)?;
        x = a.x_out;
        if i < dims.n_enc {
            encoder_outs.push(x);
        }
        skips.push(skip);
        acts.push(a);
    }
    Ok(Stream { inp, env, skips, acts, x })
}

/// A U-Net skip add before a decoder block: `out = x + skip_weights[j] * src`.
struct Skip {
    x: TensorId,
    src: TensorId,
    /// The row of `skip_weights`.
    j: usize,
    out: TensorId,
}

/// The skip add before block `i`, from the encoder output `src`.
fn skip_forward(
    g: &mut PlanBuilder,
    dims: &Dims,
    i: usize,
    sw: TensorId,
    x: TensorId,
    src: TensorId,
) -> Result<Skip, PlanError> {
    let Dims { n, d, n_enc, n_skip, .. } = *dims;
    let j = i - n_enc;
    let out = g.activation(format!("blocks.{i}.skip_out"), &[n, d]);
    g.push(
        Phase::Forward,
        ScaledAddFwd { count: n * d, ch: dims.per_channel(j), s_len: n_skip * d },
        &[out, x, src, sw],
    )?;
    Ok(Skip { x, src, j, out })
}

/// Its backward: `dx += dout`, `dsrc += skip_weights[j] * dout`, `dskip_weights[j] += dout . src`.
fn skip_backward(g: &mut PlanBuilder, dims: &Dims, sw: TensorId, s: &Skip) -> Result<(), PlanError> {
    let Dims { n, d, n_skip, .. } = *dims;
    let &Skip { x, src, j, out } = s;
    let ch = dims.per_channel(j);
    let (dout, dx) = (g.grad(out), g.grad(x));
    // The first decoder's skip is the stream itself (block n_enc-1's output): its gradient
    // goes through a separate tensor and is added in afterwards.
    let dsrc = if src == x { g.tensor(format!("d.skip.{j}"), &[n, d], DType::F32, Role::ActGrad) } else { g.grad(src) };
    g.push(Phase::Backward, ScaledAddBwd { count: n * d, ch, s_len: n_skip * d }, &[dx, dsrc, dout, sw])?;
    let dsw = g.grad(sw);
    channel_grad(g, n * d, ch, n_skip * d, [dsw, dout, src])?;
    if src == x {
        g.push(Phase::Backward, AddInto { count: n * d }, &[dx, dsrc])?;
    }
    Ok(())
}

/// The optimizer phase, in the record's per-step order: clip the global gradient norm, step
/// the embeddings' AdamW, the matrices' Muon (or AdamW), the scalars' AdamW, then update the
/// EMA. The emitters beyond AdamW live in `optim`.
fn emit_optimizer(g: &mut PlanBuilder, t: &TrainConfig, muon_shards: usize) -> Result<(), PlanError> {
    let slots: Vec<ParamSlot> = g.params().to_vec();
    let grads: Vec<TensorId> = slots.iter().map(|s| s.grad).collect();
    let clip = optim::emit_clip(g, &grads, t.grad_clip_norm)?;
    let muon = t.matrix_optimizer == MatrixOptimizer::Muon;
    for group in [ParamGroup::Embed, ParamGroup::Matrix, ParamGroup::Scalar] {
        let members: Vec<ParamSlot> = slots.iter().filter(|s| s.group == group).copied().collect();
        if members.is_empty() {
            continue;
        }
        let hyper = g.hyper(group);
        if group == ParamGroup::Matrix && muon {
            optim::emit_muon(g, &members, hyper, clip, t.muon_ns_steps, muon_shards)?;
            continue;
        }
        for s in members {
            let count: usize = g.shape(s.param).iter().product();
            g.push(Phase::Optimizer, AdamW { count }, &[s.param, s.m, s.v, s.grad, clip, hyper])?;
        }
    }
    if t.ema_decay > 0.0 {
        let params: Vec<TensorId> = slots.iter().map(|s| s.param).collect();
        optim::emit_ema(g, &params, t.ema_decay)?;
    }
    Ok(())
}

/// A linear layer without bias: `y = x . W^T` for `x [rows, in]`, `W [out, in]`.
/// A per-channel parameter's gradient `out[ch(i)] += a[i] b[i]` over `count` elements (`out`
/// of `out_len` values). With at least a large GPU's SMs' worth of channels (the per-channel
/// scales, `resid_mix`, the skip weights) one workgroup per channel fills the GPU in one
/// [`ChannelDot`]; fewer channels (the per-head `q_gain`, the one `bigram.scale`) run in two
/// deterministic stages: partial sums over blocks of each channel's elements
/// ([`ChannelDotPartial`], many workgroups), then their sum in block order into `out`
/// ([`ChannelSum`]), the partials being a scratch shared by the sites of one shape. Nothing
/// is pushed for a frozen parameter's gradient.
fn channel_grad(
    g: &mut PlanBuilder,
    count: usize,
    ch: Channels,
    out_len: usize,
    [out, a, b]: [TensorId; 3],
) -> Result<(), PlanError> {
    if !g.keeps(out) {
        return Ok(());
    }
    if ch.channels as u64 >= LARGE_GPU_SMS {
        return g.push(Phase::Backward, ChannelDot { count, ch, out_len }, &[out, a, b]);
    }
    let partial = ChannelDotPartial::new(count, ch);
    let blocks = partial.blocks();
    let partials = g.shared_scratch(&format!("reduce.partials.{blocks}x{}", ch.channels), &[blocks, ch.channels])?;
    g.push(Phase::Backward, partial, &[partials, a, b])?;
    let sum = ChannelSum { channels: ch.channels, blocks, offset: ch.offset, out_len };
    g.push(Phase::Backward, sum, &[out, partials])
}

fn linear_fwd(g: &mut PlanBuilder, y: TensorId, x: TensorId, w: TensorId) -> Result<(), PlanError> {
    let (out, inp) = (g.shape(w)[0], g.shape(w)[1]);
    let rows = g.shape(x).iter().product::<usize>() / inp;
    let op = Matmul { m: rows, n: out, k: inp, layout: Layout::Nt, accumulate: false, a_prescale_exp: 0 };
    g.push(Phase::Forward, op, &[y, x, w])
}

/// Its backward from the output gradient `dy`: `dx += dy . W` and `dW += dy^T . x`. `dy` is
/// the product's `a` in both, prescaled where it is staged in f16 (see
/// [`PlanBuilder::grad_prescale_exp`]).
fn linear_bwd(g: &mut PlanBuilder, x: TensorId, w: TensorId, dy: TensorId) -> Result<(), PlanError> {
    let (out, inp) = (g.shape(w)[0], g.shape(w)[1]);
    let rows = g.shape(x).iter().product::<usize>() / inp;
    let (dx, dw) = (g.grad(x), g.grad(w));
    let a_prescale_exp = g.grad_prescale_exp();
    let input_grad = Matmul { m: rows, n: inp, k: out, layout: Layout::Nn, accumulate: true, a_prescale_exp };
    g.push(Phase::Backward, input_grad, &[dx, dy, w])?;
    // The weight gradient sums over every token: split along K (`emit_matmul`).
    let weight_grad = Matmul { m: out, n: inp, k: rows, layout: Layout::Tn, accumulate: true, a_prescale_exp };
    emit_matmul(g, Phase::Backward, weight_grad, [dw, dy, x])
}
