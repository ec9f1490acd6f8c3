//! Runs one plan op with its CPU reference. `outs` are the op's read-write bindings in
//! order, `ins` the rest; this is the only place that maps an [`Op`] to its CPU function.
use crate::ops::{adamw, attention, cross_entropy, elementwise as ew, embedding, matmul, rmsnorm, rope};
use crate::ops::{clip, ema, muon};
use crate::plan::Op;

/// A read-only binding's host data.
pub enum In<'a> {
    F32(&'a [f32]),
    U32(&'a [u32]),
}

impl<'a> In<'a> {
    fn f(&self) -> &'a [f32] {
        match self {
            In::F32(v) => v,
            In::U32(_) => panic!("plan checked: f32 binding expected"),
        }
    }
    fn u(&self) -> &'a [u32] {
        match self {
            In::U32(v) => v,
            In::F32(_) => panic!("plan checked: u32 binding expected"),
        }
    }
}

/// Runs `op` on the CPU (f32, as the kernels do).
pub fn run_cpu(op: &Op, outs: &mut [Vec<f32>], ins: &[In<'_>]) {
    match *op {
        Op::EmbeddingFwd { dim, .. } => embedding::embedding_fwd(&mut outs[0], ins[0].f(), ins[1].u(), dim),
        Op::EmbeddingBwd { dim, .. } => embedding::embedding_bwd(&mut outs[0], ins[0].f(), ins[1].u(), dim),
        Op::RmsNormFwd { dim, eps, .. } => {
            let (y, rstd) = outs.split_at_mut(1);
            rmsnorm::rmsnorm_fwd(&mut y[0], &mut rstd[0], ins[0].f(), dim, eps)
        }
        Op::RmsNormBwd { dim, .. } => rmsnorm::rmsnorm_bwd(&mut outs[0], ins[0].f(), ins[1].f(), ins[2].f(), dim),
        Op::Matmul { m, n, k, layout, accumulate } => {
            matmul::matmul(&mut outs[0], ins[0].f(), ins[1].f(), m, n, k, layout, accumulate)
        }
        Op::Rope { heads, head_dim, seq_len, inverse, .. } => {
            rope::rope(&mut outs[0], ins[0].f(), ins[1].f(), heads, head_dim, seq_len, inverse)
        }
        Op::AttentionFwd(s) => {
            let (o, l) = outs.split_at_mut(1);
            attention::attention_fwd(&mut o[0], &mut l[0], ins[0].f(), ins[1].f(), ins[2].f(), s)
        }
        Op::AttentionBwdQ(s) => {
            let (dq, d) = outs.split_at_mut(1);
            let f = |i: usize| ins[i].f();
            attention::attention_bwd_q(&mut dq[0], &mut d[0], f(0), f(1), f(2), f(3), f(4), f(5), s)
        }
        Op::AttentionBwdKv(s) => {
            let (dk, dv) = outs.split_at_mut(1);
            let f = |i: usize| ins[i].f();
            attention::attention_bwd_kv(&mut dk[0], &mut dv[0], f(0), f(1), f(2), f(3), f(4), f(5), s)
        }
        Op::Relu2Fwd { .. } => ew::relu2_fwd(&mut outs[0], ins[0].f()),
        Op::Relu2Bwd { .. } => ew::relu2_bwd(&mut outs[0], ins[0].f(), ins[1].f()),
        Op::ScaleFwd { ch, .. } => ew::scale_fwd(&mut outs[0], ins[0].f(), ins[1].f(), ch),
        Op::ScaleBwd { ch, .. } => ew::scale_bwd(&mut outs[0], ins[0].f(), ins[1].f(), ch),
        Op::ScaledAddFwd { ch, .. } => ew::scaled_add_fwd(&mut outs[0], ins[0].f(), ins[1].f(), ins[2].f(), ch),
        Op::ScaledAddBwd { ch, .. } => {
            let (da, db) = outs.split_at_mut(1);
            ew::scaled_add_bwd(&mut da[0], &mut db[0], ins[0].f(), ins[1].f(), ch)
        }
        Op::MixFwd { ch, .. } => ew::mix_fwd(&mut outs[0], ins[0].f(), ins[1].f(), ins[2].f(), ch),
        Op::MixBwd { ch, .. } => {
            let (da, db) = outs.split_at_mut(1);
            ew::mix_bwd(&mut da[0], &mut db[0], ins[0].f(), ins[1].f(), ch)
        }
        Op::AddInto { .. } => ew::add_into(&mut outs[0], ins[0].f()),
        Op::ChannelDot { ch, .. } => ew::channel_dot(&mut outs[0], ins[0].f(), ins[1].f(), ch),
        Op::SmearFwd { dim, seq_len, .. } => {
            crate::ops::smear::smear_fwd(&mut outs[0], ins[0].f(), ins[1].f(), dim, seq_len)
        }
        Op::SmearBwd { dim, seq_len, .. } => {
            crate::ops::smear::smear_bwd(&mut outs[0], ins[0].f(), ins[1].f(), dim, seq_len)
        }
        Op::SmearGrad { dim, seq_len, .. } => {
            crate::ops::smear::smear_grad(&mut outs[0], ins[0].f(), ins[1].f(), ins[2].f(), dim, seq_len)
        }
        Op::XsaFwd { heads, kv_heads, head_dim, .. } => {
            let s = crate::ops::xsa::XsaShape { heads, kv_heads, head_dim };
            crate::ops::xsa::xsa_fwd(&mut outs[0], ins[0].f(), ins[1].f(), s)
        }
        Op::XsaBwd { heads, kv_heads, head_dim, .. } => {
            let s = crate::ops::xsa::XsaShape { heads, kv_heads, head_dim };
            let (dy, dv) = outs.split_at_mut(1);
            crate::ops::xsa::xsa_bwd(&mut dy[0], &mut dv[0], ins[0].f(), ins[1].f(), ins[2].f(), s)
        }
        Op::CrossEntropy { vocab, softcap, grad_scale, write_grad, .. } => {
            let (dl, loss) = outs.split_at_mut(1);
            let grads = if write_grad { Some(&mut dl[0][..]) } else { None };
            cross_entropy::cross_entropy(grads, &mut loss[0], ins[0].f(), ins[1].u(), vocab, softcap, grad_scale)
        }
        Op::SumRows { scale, .. } => cross_entropy::loss_sum(&mut outs[0][0], ins[0].f(), scale),
        Op::BatchedMatmul { batch, m, n, k, layout, alpha, accumulate } => {
            matmul::matmul_batched(&mut outs[0], ins[0].f(), ins[1].f(), batch, m, n, k, layout, alpha, accumulate)
        }
        Op::MuonMomentum { rows, cols, index, .. } => {
            let h: muon::MuonHyper = bytemuck::pod_read_unaligned(bytemuck::cast_slice(ins[1].f()));
            let (buf, stack) = outs.split_at_mut(1);
            muon::muon_momentum(&mut buf[0], &mut stack[0], ins[0].f(), rows, cols, index, h.momentum)
        }
        Op::MuonNormalize { a, b, .. } => muon::muon_normalize(&mut outs[0], a, b),
        Op::ScaleCopy { alpha, .. } => muon::scale_copy(&mut outs[0], ins[0].f(), alpha),
        Op::MuonApply { rows, cols, index, shape_scale, .. } => {
            let h: muon::MuonHyper = bytemuck::pod_read_unaligned(bytemuck::cast_slice(ins[1].f()));
            let stack = ins[0].f();
            muon::muon_apply(&mut outs[0], stack, rows, cols, index, shape_scale, h.lr, h.weight_decay)
        }
        Op::GradSumSq { slot, .. } => clip::grad_sum_sq(&mut outs[0], ins[0].f(), slot),
        Op::ClipCoef { max_norm, .. } => clip::clip_coef(&mut outs[0], ins[0].f(), max_norm),
        Op::ScaleByCoef { .. } => clip::scale_by_coef(&mut outs[0], ins[0].f()),
        Op::Ema { decay, .. } => ema::ema(&mut outs[0], ins[0].f(), decay),
        Op::AdamW { .. } => {
            let h = ins[1].f();
            let hyper: adamw::AdamHyper = bytemuck::pod_read_unaligned(bytemuck::cast_slice(h));
            let (p, rest) = outs.split_at_mut(1);
            let (m, v) = rest.split_at_mut(1);
            adamw::adamw(&mut p[0], &mut m[0], &mut v[0], ins[0].f(), &hyper)
        }
    }
}
