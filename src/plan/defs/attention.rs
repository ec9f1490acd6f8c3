//! Causal grouped-query attention (`shaders/attention.wgsl`, `ops::attention`).
use crate::ops::attention::{self, AttnShape};
use crate::ops::Real;
use crate::plan::op::{grid_1d, n64, BindingSpec, Cost, In, KernelCall, OpDef};

/// `[out, lse | q, k, v]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionFwd(pub AttnShape);

/// `[dq, delta | dout, out, q, k, v, lse]` (accumulates into `dq`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionBwdQ(pub AttnShape);

/// `[dk, dv | dout, q, k, v, lse, delta]` (accumulates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionBwdKv(pub AttnShape);

/// Element counts of `q` (and `out`), of `k` (and `v`), and of `lse` (and `delta`).
fn sizes(s: AttnShape) -> (usize, usize, usize) {
    let rows = s.batch * s.seq;
    (rows * s.heads * s.head_dim, rows * s.kv_heads * s.head_dim, s.batch * s.heads * s.seq)
}

/// The causal (query, key) pairs `batch heads seq (seq + 1) / 2`, the queries
/// `batch heads seq`, and the head dimension, for the costs.
fn counts(s: AttnShape) -> (u64, u64, u64) {
    let (b, h, t) = (n64(s.batch), n64(s.heads), n64(s.seq));
    (b * h * t * (t + 1) / 2, b * h * t, n64(s.head_dim))
}

fn check(s: AttnShape) -> Result<(), String> {
    if s.kv_heads == 0 || !s.heads.is_multiple_of(s.kv_heads) {
        return Err(format!("heads {} is not a multiple of kv_heads {}", s.heads, s.kv_heads));
    }
    if s.head_dim > 128 {
        return Err(format!("head_dim {} is above the kernel's maximum 128", s.head_dim));
    }
    Ok(())
}

fn call(entry: &'static str, s: AttnShape, invocations: usize) -> KernelCall {
    let consts = vec![
        ("BATCH", s.batch as f64),
        ("SEQ", s.seq as f64),
        ("HEADS", s.heads as f64),
        ("KV_HEADS", s.kv_heads as f64),
        ("HEAD_DIM", s.head_dim as f64),
    ];
    KernelCall::new("attention", entry, consts, grid_1d(invocations))
}

/// Two sequences of 5, 4 query heads over 2 KV heads.
const EXAMPLE: AttnShape = AttnShape { batch: 2, seq: 5, heads: 4, kv_heads: 2, head_dim: 6 };

impl OpDef for AttentionFwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let (q, kv, l) = sizes(self.0);
        let (rw, rd) = (BindingSpec::rw, BindingSpec::rd);
        vec![rw(q), rw(l), rd(q), rd(kv), rd(kv)]
    }
    fn check(&self) -> Result<(), String> {
        check(self.0)
    }
    fn kernel(&self) -> KernelCall {
        let s = self.0;
        call("attention_fwd", s, s.batch * s.heads * s.seq)
    }
    /// Per query (its t + 1 keys): three passes over the keys, each recomputing the score
    /// from q and k in global memory (2D loads, D multiply-adds, the scale); per key 2D + 2
    /// FLOPs in the first (score, max), 2D + 4 in the second (score, subtract, exp, add),
    /// 4D + 3 in the third (score, subtract, exp, and the v accumulation, which loads D
    /// more): 8D + 9 FLOPs and 7D loads. Per query a log and an add, and out (D) and lse (1)
    /// stored.
    fn cost(&self) -> Cost {
        let (pairs, queries, d) = counts(self.0);
        Cost::elems(pairs * (8 * d + 9) + 2 * queries, pairs * 7 * d, queries * (d + 1))
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let (o, l) = outs.split_at_mut(1);
        attention::attention_fwd(&mut o[0], &mut l[0], ins[0].f(), ins[1].f(), ins[2].f(), self.0)
    }
    fn examples() -> Vec<Self> {
        vec![AttentionFwd(EXAMPLE)]
    }
}

impl OpDef for AttentionBwdQ {
    fn bindings(&self) -> Vec<BindingSpec> {
        let (q, kv, l) = sizes(self.0);
        let (rw, rd) = (BindingSpec::rw, BindingSpec::rd);
        vec![rw(q), rw(l), rd(q), rd(q), rd(q), rd(kv), rd(kv), rd(l)]
    }
    fn check(&self) -> Result<(), String> {
        check(self.0)
    }
    fn kernel(&self) -> KernelCall {
        let s = self.0;
        call("attention_bwd_q", s, s.batch * s.heads * s.seq)
    }
    /// Per query: delta = dout . out (2D loads, 2D FLOPs, 1 store), lse (1 load), and at the
    /// end dq += scale acc (D loads, D stores, 2D FLOPs). Per key: q . k and dout . v from
    /// global memory (4D loads, 4D FLOPs), p and ds (5 FLOPs), and the accumulation of ds k,
    /// which loads k again (D loads, 2D FLOPs).
    fn cost(&self) -> Cost {
        let (pairs, queries, d) = counts(self.0);
        Cost::elems(queries * 4 * d + pairs * (6 * d + 5), queries * (3 * d + 1) + pairs * 5 * d, queries * (d + 1))
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let (dq, d) = outs.split_at_mut(1);
        let f = |i: usize| ins[i].f();
        attention::attention_bwd_q(&mut dq[0], &mut d[0], f(0), f(1), f(2), f(3), f(4), f(5), self.0)
    }
    fn examples() -> Vec<Self> {
        vec![AttentionBwdQ(EXAMPLE)]
    }
}

impl OpDef for AttentionBwdKv {
    fn bindings(&self) -> Vec<BindingSpec> {
        let (q, kv, l) = sizes(self.0);
        let (rw, rd) = (BindingSpec::rw, BindingSpec::rd);
        vec![rw(kv), rw(kv), rd(q), rd(q), rd(kv), rd(kv), rd(l), rd(l)]
    }
    fn check(&self) -> Result<(), String> {
        check(self.0)
    }
    fn kernel(&self) -> KernelCall {
        let s = self.0;
        call("attention_bwd_kv", s, s.batch * s.kv_heads * s.seq)
    }
    /// One invocation per (b, g, s) walks the group's query heads and every t >= s: the same
    /// causal pairs as the forward. Per pair: q . k and dout . v from global memory (4D
    /// loads, 4D FLOPs), lse and delta (2 loads), p and ds (5 FLOPs), and the dv and dk
    /// accumulations, which load dout and q again (2D loads, 4D FLOPs). Per key: dv += acc_v
    /// (D loads, D stores, D FLOPs) and dk += scale acc_k (D, D, 2D).
    fn cost(&self) -> Cost {
        let s = self.0;
        let (pairs, _, d) = counts(s);
        let keys = n64(s.batch * s.kv_heads * s.seq);
        Cost::elems(pairs * (8 * d + 5) + keys * 3 * d, pairs * (6 * d + 2) + keys * 2 * d, keys * 2 * d)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let (dk, dv) = outs.split_at_mut(1);
        let f = |i: usize| ins[i].f();
        attention::attention_bwd_kv(&mut dk[0], &mut dv[0], f(0), f(1), f(2), f(3), f(4), f(5), self.0)
    }
    fn examples() -> Vec<Self> {
        vec![AttentionBwdKv(EXAMPLE)]
    }
}
