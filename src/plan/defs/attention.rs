//! Causal grouped-query attention (`shaders/attention.wgsl`, `ops::attention`).
use crate::ops::attention::{self, AttnShape};
use crate::ops::Real;
use crate::plan::op::{grid_1d, BindingSpec, In, KernelCall, OpDef};

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
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let (dk, dv) = outs.split_at_mut(1);
        let f = |i: usize| ins[i].f();
        attention::attention_bwd_kv(&mut dk[0], &mut dv[0], f(0), f(1), f(2), f(3), f(4), f(5), self.0)
    }
    fn examples() -> Vec<Self> {
        vec![AttentionBwdKv(EXAMPLE)]
    }
}
