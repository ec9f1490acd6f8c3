//! Causal grouped-query attention (`shaders/attention.wgsl`, `ops::attention`).
use crate::ops::attention::{self, AttnShape};
use crate::ops::Real;
use crate::plan::op::{grid_1d, n64, BindingSpec, Cost, In, KernelCall, KernelTarget, OpDef};

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

/// The queries `batch heads seq`, the head dimension, and the head dimension padded to whole
/// vec4s (the kernels read and multiply rows as vec4s), for the costs.
fn counts(s: AttnShape) -> (u64, u64, u64) {
    (n64(s.batch * s.heads * s.seq), n64(s.head_dim), n64(4 * s.head_dim.div_ceil(4)))
}

/// The kernels' invocations per workgroup (`WG` in the shader).
const WG: usize = 64;
/// The vec4s of one staged matrix in workgroup memory (`TILE_VEC4` in the shader).
const TILE_VEC4: usize = 512;
/// A tile is walked in steps of this many rows (two chunks of 4).
const STEP: usize = 8;

/// The query heads that share a KV head.
fn group(s: AttnShape) -> usize {
    s.heads / s.kv_heads
}

/// Rows (queries in the forward and bwd_q, keys in bwd_kv) per invocation: 1 on a GPU,
/// where one head row and its accumulator already take about 128 registers at head_dim 64;
/// 4 on a CPU adapter, where llvmpipe runs every workgroup-memory read lane by lane (about
/// 40 instructions per lane and vec4), so each read is made to serve 4 rows. Measured on
/// lavapipe in docs/perf.md (8 rows were no faster than 4).
fn rows(target: KernelTarget) -> usize {
    match target {
        KernelTarget::Gpu => 1,
        KernelTarget::Cpu => 4,
    }
}

/// Queries per forward / bwd_q workgroup: the group's heads fill its 64 invocations, each
/// with `rows` queries.
fn q_block(s: AttnShape, rows: usize) -> usize {
    (WG / group(s)).max(1) * rows
}

/// Rows (keys, or queries in bwd_kv) per tile staged in workgroup memory: a multiple of the
/// step.
fn tile(s: AttnShape) -> usize {
    (TILE_VEC4 / s.head_dim.div_ceil(4).max(1) / STEP * STEP).clamp(STEP, WG)
}

/// Rows one block walks, staged tiles padded to whole steps: for each block of one sequence
/// (of `block` queries, or keys in bwd_kv), keys `0..=last` of each query block (forward,
/// bwd_q) or queries `first..seq` of each key block (bwd_kv).
fn walked_rows(s: AttnShape, block: usize, causal_prefix: bool) -> Vec<u64> {
    let t = tile(s);
    (0..s.seq.div_ceil(block))
        .map(|i| if causal_prefix { ((i + 1) * block).min(s.seq) } else { s.seq - i * block })
        .map(|rows| n64(rows / t * t + (rows % t).next_multiple_of(STEP)))
        .collect()
}

fn check(s: AttnShape) -> Result<(), String> {
    if s.kv_heads == 0 || !s.heads.is_multiple_of(s.kv_heads) {
        return Err(format!("heads {} is not a multiple of kv_heads {}", s.heads, s.kv_heads));
    }
    if group(s) > WG {
        return Err(format!("{} query heads per KV head is above the kernel's maximum {WG}", group(s)));
    }
    if s.head_dim == 0 || s.head_dim > 128 {
        return Err(format!("head_dim {} is outside the kernel's range 1..=128", s.head_dim));
    }
    Ok(())
}

fn call(entry: &'static str, s: AttnShape, rows: usize, workgroups: usize) -> KernelCall {
    let consts = vec![
        ("BATCH", s.batch as f64),
        ("SEQ", s.seq as f64),
        ("HEADS", s.heads as f64),
        ("KV_HEADS", s.kv_heads as f64),
        ("HEAD_DIM", s.head_dim as f64),
        ("ROWS", rows as f64),
        ("Q_BLOCK", q_block(s, rows) as f64),
        ("TILE", tile(s) as f64),
    ];
    KernelCall::new("attention", entry, consts, grid_1d(workgroups * WG))
}

/// Workgroups of the forward and bwd_q: one per (b, KV head, query block).
fn query_workgroups(s: AttnShape, rows: usize) -> usize {
    s.batch * s.kv_heads * s.seq.div_ceil(q_block(s, rows))
}

/// Workgroups of bwd_kv: one per (b, KV head, block of 64 `rows` keys).
fn key_workgroups(s: AttnShape, rows: usize) -> usize {
    s.batch * s.kv_heads * s.seq.div_ceil(WG * rows)
}

/// Two sequences of 5, 4 query heads over 2 KV heads.
const EXAMPLE: AttnShape = AttnShape { batch: 2, seq: 5, heads: 4, kv_heads: 2, head_dim: 6 };

impl OpDef for AttentionFwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let (q, kv, l) = sizes(self.0);
        let (out, rd) = (BindingSpec::out, BindingSpec::rd);
        vec![out(q), out(l), rd(q), rd(kv), rd(kv)]
    }
    fn check(&self) -> Result<(), String> {
        check(self.0)
    }
    fn kernel(&self) -> KernelCall {
        self.kernel_for(KernelTarget::Gpu)
    }
    fn kernel_for(&self, target: KernelTarget) -> KernelCall {
        let r = rows(target);
        let entry = match target {
            KernelTarget::Gpu => "attention_fwd",
            KernelTarget::Cpu => "attention_fwd_subgroup",
        };
        call(entry, self.0, r, query_workgroups(self.0, r))
    }
    /// Counted with P = D rounded up to a multiple of 4 (rows are vec4s; the padding lanes
    /// re-read the row's last element and are zeroed) and R = 1 row per invocation (the GPU
    /// kernel). Each workgroup stages K and V of keys `0..=last` of its block, padded to
    /// whole steps of 8 (2P loads per row), and each query loads its q (P). Every one of the
    /// 64 invocations walks every step (masked past its queries), per row: the scores, two
    /// 4x4 matrix-vector products per vec4 of the row (32 FLOPs each with the sum: 16P); the
    /// softmax (scale 8, max 8, the correction's subtract and exp 2, subtract and exp 16, the
    /// sum 9: 43); the accumulation, per vec4 the rescale (4), two vector-matrix products (56)
    /// and two adds (8): 17P. Per query: lse = m + log l, 1 / l and out = acc / l (D + 3
    /// FLOPs, D + 1 stores).
    fn cost(&self) -> Cost {
        let s = self.0;
        let (queries, d, p) = counts(s);
        let r = rows(KernelTarget::Gpu);
        let per_seq = n64(s.batch * s.kv_heads);
        let walked: u64 = walked_rows(s, q_block(s, r), true).iter().sum();
        let steps = walked / n64(STEP);
        Cost::elems(
            per_seq * n64(WG * r) * steps * (33 * p + 43) + queries * (d + 3),
            per_seq * walked * 2 * p + queries * p,
            queries * (d + 1),
        )
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
        vec![rw(q), BindingSpec::out(l), rd(q), rd(q), rd(q), rd(kv), rd(kv), rd(l)]
    }
    fn check(&self) -> Result<(), String> {
        check(self.0)
    }
    fn kernel(&self) -> KernelCall {
        self.kernel_for(KernelTarget::Gpu)
    }
    fn kernel_for(&self, target: KernelTarget) -> KernelCall {
        let r = rows(target);
        let entry = match target {
            KernelTarget::Gpu => "attention_bwd_q",
            KernelTarget::Cpu => "attention_bwd_q_subgroup",
        };
        call(entry, self.0, r, query_workgroups(self.0, r))
    }
    /// With P and R as in the forward. Each workgroup stages K and V of keys `0..=last` of
    /// its block, padded to whole steps (2P loads per row). Per query: q, dout and out (3P
    /// loads), delta = dout . out (2P + 3 FLOPs, 1 store), lse (1 load), and at the end dq +=
    /// scale acc (D loads, D stores, 2D FLOPs). Every invocation walks every step, per row:
    /// q . k and dout . v, four matrix-vector products per vec4 (32P); p and ds (scale,
    /// subtract, exp, subtract, multiply on 8 keys: 40); the accumulation of ds k, two
    /// vector-matrix products and two adds per vec4 (16P): 48P + 40.
    fn cost(&self) -> Cost {
        let s = self.0;
        let (queries, d, p) = counts(s);
        let r = rows(KernelTarget::Gpu);
        let per_seq = n64(s.batch * s.kv_heads);
        let walked: u64 = walked_rows(s, q_block(s, r), true).iter().sum();
        let steps = walked / n64(STEP);
        Cost::elems(
            per_seq * n64(WG * r) * steps * (48 * p + 40) + queries * (2 * p + 3 + 2 * d),
            per_seq * walked * 2 * p + queries * (3 * p + 1 + d),
            queries * (d + 1),
        )
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
        self.kernel_for(KernelTarget::Gpu)
    }
    fn kernel_for(&self, target: KernelTarget) -> KernelCall {
        let r = rows(target);
        let entry = match target {
            KernelTarget::Gpu => "attention_bwd_kv",
            KernelTarget::Cpu => "attention_bwd_kv_subgroup",
        };
        call(entry, self.0, r, key_workgroups(self.0, r))
    }
    /// With P and R as in the forward. One workgroup per (b, g, block of 64 R keys); each key
    /// loads its k and v (2P). For each head of the group the workgroup stages q and dout of
    /// the queries from the block's first key to the end, padded to whole steps (2P loads
    /// per row), and every invocation walks every step (masked before its keys), per row:
    /// k . q and v . dout, four matrix-vector products per vec4 (32P); the step's lse and
    /// delta (16 loads per invocation), p and ds (40); the dv and dk accumulations, four
    /// vector-matrix products and four adds per vec4 (32P): 64P + 40. Per key: dv += acc_v
    /// (D loads, D stores, D FLOPs) and dk += scale acc_k (D, D, 2D).
    fn cost(&self) -> Cost {
        let s = self.0;
        let (_, d, p) = counts(s);
        let r = rows(KernelTarget::Gpu);
        let keys = n64(s.batch * s.kv_heads * s.seq);
        let per_seq = n64(s.batch * s.heads);
        let walked: u64 = walked_rows(s, WG * r, false).iter().sum();
        let steps = walked / n64(STEP);
        let invocations = n64(WG * r);
        Cost::elems(
            per_seq * invocations * steps * (64 * p + 40) + keys * 3 * d,
            per_seq * (walked * 2 * p + n64(WG) * steps * 16) + keys * (2 * p + 2 * d),
            keys * 2 * d,
        )
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
