//! Matrix products (`shaders/matmul.wgsl`, `shaders/matmul_split_sum.wgsl`, `ops::matmul`);
//! `gpu::coop` swaps in the cooperative-matrix kernel for [`Matmul`] and single-matrix
//! [`MatmulPartial`]s where the adapter has one.
//!
//! Every product runs the one tiled kernel; its tile comes from the shape ([`tile_edge`]).
//! A product whose output has too few tiles to fill a large GPU is split along K
//! ([`split_k`]): [`MatmulPartial`] writes one partial product per split into a scratch and
//! [`MatmulSplitSum`] adds them in split order, so the result is deterministic.
//! [`emit_matmul`] and [`emit_batched_matmul`] push one or the other.
use crate::ops::matmul::{self, Layout};
use crate::ops::Real;
use crate::plan::cost::{is_negligible, LARGE_GPU_SMS};
use crate::plan::op::{
    check_grid_dim, flag, grid_1d, n64, uconst as u, BindingSpec, Cost, In, KernelCall, KernelTarget, OpDef,
    MAX_GRID_DIM,
};
use crate::plan::{Phase, PlanBuilder, PlanError, TensorId};

/// `[c | a, b]`: `c (= or +=) op(a) op(b)`, `c [m, n]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Matmul {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub layout: Layout,
    pub accumulate: bool,
    /// Where a kernel rounds `a` to f16 (the cooperative-matrix kernel), it stages
    /// `2^a_prescale_exp a` and scales the product back by `2^-a_prescale_exp`. A power of
    /// two, so both scalings are exact in f32: the f32 kernel and the CPU reference ignore
    /// it, and the result only changes by what f16 can no longer lose. The backward sets it
    /// for products whose `a` is a gradient carrying the loss's `1/tokens` factor
    /// ([`PlanBuilder::grad_prescale_exp`](crate::plan::PlanBuilder::grad_prescale_exp)),
    /// which f16 would otherwise flush to zero at the record's tokens per step; 0 elsewhere.
    pub a_prescale_exp: i32,
}

/// The largest `|a_prescale_exp|` a plan may ask for (f32's exponent range is about 2^±126;
/// tokens per step are far below 2^40).
pub const MAX_PRESCALE_EXP: i32 = 40;

fn check_prescale(exp: i32) -> Result<(), String> {
    if exp.abs() > MAX_PRESCALE_EXP {
        return Err(format!("matmul: a_prescale_exp {exp} is beyond +-{MAX_PRESCALE_EXP}"));
    }
    Ok(())
}

/// `[c | a, b]`: `batch` products strided by matrix size,
/// `c[z] (= or +=) alpha op(a[z]) op(b[z])` (`matmul.wgsl` with BATCH and ALPHA).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchedMatmul {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub layout: Layout,
    pub alpha: f64,
    pub accumulate: bool,
}

/// `[partials | a, b]`: the first stage of a split-K product (`matmul.wgsl` with SPLITS and
/// K_SPLIT): K is cut into `splits() = ceil(k / k_split)` ranges of `k_split` (the last one
/// ragged) and `partials[z, s] = op(a[z]) op(b[z])` over split `s`'s range, summed in k
/// order; `partials [batch, splits, m, n]`, overwritten (a `Role::Scratch`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatmulPartial {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub k_split: usize,
    pub layout: Layout,
    /// As [`Matmul::a_prescale_exp`] (a split weight gradient's `a` is the gradient).
    pub a_prescale_exp: i32,
}

/// `[c | partials]`: the second stage of a split-K product (`matmul_split_sum.wgsl`):
/// `c[z] (= or +=) alpha (partials[z, 0] + ... + partials[z, splits - 1])`, in split order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatmulSplitSum {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub splits: usize,
    pub alpha: f64,
    pub accumulate: bool,
}

/// Depth of one staged K slice of `matmul.wgsl` (its `BK`).
pub const BK: usize = 16;
// matmul_subgroup walks a slice in groups of 8 steps of k.
const _: () = assert!(BK.is_multiple_of(8));
/// The portable kernel's workgroups per dispatch to aim for: two per SM of a large GPU, so
/// that a dispatch keeps every SM busy while its second wave is scheduled.
pub const TARGET_WORKGROUPS: u64 = 2 * LARGE_GPU_SMS;
/// The shortest K range a split gets (two slices): below it the partials' extra store and
/// load per output outweigh the split's multiply-adds. It is this short, rather than a few
/// hundred, for the Newton-Schulz products of a lone 128 x 512 matrix (`bigram.proj`), whose
/// 128 x 128 outputs fill a large GPU only when K = 128 is cut four ways.
pub const MIN_SPLIT_K: usize = 2 * BK;
/// The longest K range one workgroup sums: a product with more K is split even when it has
/// tiles enough, which bounds each workgroup's serial loop (512 slices; it also keeps every
/// invocation far below llvmpipe's 65,535-iteration limit).
pub const MAX_SPLIT_K: usize = 8192;

/// The invocation grid edge of `matmul.wgsl`'s square workgroup for a product of `batch`
/// `m x n` outputs over `k`: 16 (256 invocations, a 64 x 64 tile), 8 (32 x 32) or 4
/// (16 x 16): the largest whose tiles, times the most splits K allows
/// (`k / MIN_SPLIT_K`), reach [`TARGET_WORKGROUPS`]; else the smallest. Larger tiles load
/// less per FLOP (each staged element serves 4 WG invocations' blocks), so the large ones
/// are kept wherever split-K can make up the count (the weight gradients).
pub fn tile_edge(batch: usize, m: usize, n: usize, k: usize) -> u32 {
    let max_splits = n64((k / MIN_SPLIT_K).max(1));
    [16u32, 8].into_iter().find(|&e| tiles(batch, m, n, e) * max_splits >= TARGET_WORKGROUPS).unwrap_or(4)
}

/// The workgroup edge and register block (`SUB`: each invocation computes 4 SUB x 4 SUB
/// outputs) for an adapter of kind `target`: [`tile_edge`] and 1 on a GPU. A CPU adapter has
/// a few cores, not a hundred SMs, so it takes 8 x 8 blocks (SUB 2) and the largest tile that
/// the output's smaller side fills: each staged value read then serves the most
/// multiply-adds, which is what counts where llvmpipe runs a workgroup-memory read lane by
/// lane (docs/perf.md has the lavapipe figures).
fn tiling_for(target: KernelTarget, batch: usize, m: usize, n: usize, k: usize) -> (u32, u32) {
    match target {
        KernelTarget::Gpu => (tile_edge(batch, m, n, k), 1),
        KernelTarget::Cpu => {
            let side = m.min(n);
            let sub = if side >= 32 { 2 } else { 1 };
            let edge = [16u32, 8].into_iter().find(|&e| (4 * e * sub) as usize <= side).unwrap_or(4);
            (edge, sub)
        }
    }
}

/// A `matmul.wgsl` call tiled for `target` (`SUB` is set only where it is not the shader's
/// default 1, so the GPU calls are as before). On a CPU adapter a tile at least 8
/// invocations wide runs `matmul_subgroup`, which spreads the op(a) reads of a row of 8
/// invocations over their subgroup's lanes (the CPU target implies subgroups of 8).
fn tiled(
    target: KernelTarget,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    z: usize,
    base: impl Fn(u32) -> Vec<(&'static str, f64)>,
) -> KernelCall {
    let (edge, sub) = tiling_for(target, batch, m, n, k);
    let mut consts = base(edge);
    if sub != 1 {
        consts.push(("SUB", f64::from(sub)));
    }
    let entry = match target {
        KernelTarget::Cpu if edge.is_multiple_of(8) => "matmul_subgroup",
        _ => "matmul",
    };
    KernelCall::new("matmul", entry, consts, grid(m, n, z, edge * sub))
}

/// Output tiles of `batch` `m x n` products with workgroup edge `e` (tiles of `4e x 4e`).
fn tiles(batch: usize, m: usize, n: usize, e: u32) -> u64 {
    let t = 4 * e as usize;
    n64(batch * m.div_ceil(t) * n.div_ceil(t))
}

/// The K range of one split for a product of `batch` `m x n` outputs over `k` (`k` itself:
/// no split). The one rule: split when the output's tiles ([`tile_edge`]) are fewer than
/// [`TARGET_WORKGROUPS`] or K is longer than [`MAX_SPLIT_K`]; then cut K into as many
/// ranges as reach the target, each a whole number of BK slices and between
/// [`MIN_SPLIT_K`] and [`MAX_SPLIT_K`] long (the last one ragged). A product of negligible
/// work ([`is_negligible`]: latency to remove by fusion, not a grid to widen) is never split.
/// The record's weight gradients (K = 98,304 tokens) get ranges of 8,192 (256 x 512: 32
/// tiles x 12 splits) to 5,792 (512 x 128: 16 x 17).
pub fn split_k(batch: usize, m: usize, n: usize, k: usize) -> usize {
    if is_negligible(&Cost { flops: 2 * n64(batch * m * n * k), bytes_read: 0, bytes_written: 0 }) {
        return k;
    }
    let tiles = tiles(batch, m, n, tile_edge(batch, m, n, k));
    let want = TARGET_WORKGROUPS.div_ceil(tiles) as usize;
    let range = k.div_ceil(want).next_multiple_of(BK).clamp(MIN_SPLIT_K, MAX_SPLIT_K);
    if range >= k {
        k
    } else {
        range
    }
}

/// The overrides every matmul.wgsl call sets, the tile included (`BATCH`, `ALPHA`, `SPLITS`
/// and `K_SPLIT` keep their defaults unless a batched or split call adds them).
fn matmul_consts(
    m: usize,
    n: usize,
    k: usize,
    layout: Layout,
    accumulate: bool,
    edge: u32,
) -> Vec<(&'static str, f64)> {
    vec![
        ("M", u(m)),
        ("N", u(n)),
        ("K", u(k)),
        ("TRANS_A", flag(layout.trans_a())),
        ("TRANS_B", flag(layout.trans_b())),
        ("ACCUMULATE", flag(accumulate)),
        ("WG_M", f64::from(edge)),
        ("WG_N", f64::from(edge)),
        ("BK", u(BK)),
    ]
}

/// One `4 edge x 4 edge` output tile per workgroup, `z` matrices (batch times splits).
fn grid(m: usize, n: usize, z: usize, edge: u32) -> [u32; 3] {
    let t = 4 * edge as usize;
    [n.div_ceil(t) as u32, m.div_ceil(t) as u32, z as u32]
}

/// `matmul.wgsl` as written, for `batch` products of `m x n` over `k` in splits of
/// `k_split` (`k`: unsplit) with workgroup edge `edge` (tile `T = 4 edge`, `edge^2`
/// invocations). Each workgroup, per BK-deep slice of its split, loads its `T x BK` block of
/// op(a) and `BK x T` block of op(b) once (`2 T BK` loads, ragged edges clamped and loaded
/// all the same), and each invocation does 16 multiply-adds per k of the slice (a ragged
/// last slice runs whole, on zeros). Each output the dispatch writes (`batch m n` outputs
/// per split) is stored once, scaled by ALPHA (1 FLOP), and with `accumulate` also loaded
/// and added (1 load, 1 FLOP). So a tile issues one 4-byte load per `T` FLOPs (1/16 byte per
/// FLOP on 64 x 64 tiles; the unstaged kernel before it issued 1 byte per FLOP), and the
/// layout changes which loads are contiguous, not how many there are. Workgroup memory
/// traffic is not counted (the [`Cost`] convention).
pub fn matmul_cost(batch: usize, m: usize, n: usize, k: usize, k_split: usize, accumulate: bool, edge: u32) -> Cost {
    let t = 4 * edge as usize;
    let tiles = n64(batch * m.div_ceil(t) * n.div_ceil(t));
    let splits = k.div_ceil(k_split);
    let slices: u64 = (0..splits).map(|s| n64((k.min((s + 1) * k_split) - s * k_split).div_ceil(BK))).sum();
    let invocations = n64(edge as usize * edge as usize);
    let (outs, acc) = (n64(batch * splits * m * n), u64::from(accumulate));
    let steps = tiles * slices * n64(BK);
    Cost::elems(steps * invocations * 32 + outs * (1 + acc), steps * n64(2 * t) + outs * acc, outs)
}

impl OpDef for Matmul {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { m, n, k, accumulate, .. } = *self;
        vec![BindingSpec::written(m * n, !accumulate), BindingSpec::rd(m * k), BindingSpec::rd(k * n)]
    }
    fn check(&self) -> Result<(), String> {
        check_prescale(self.a_prescale_exp)?;
        let e = tile_edge(1, self.m, self.n, self.k);
        check_grid_dim("matmul rows", self.m.div_ceil(4 * e as usize))?;
        check_grid_dim("matmul columns", self.n.div_ceil(4 * e as usize))
    }
    /// The portable f32 kernel: `a_prescale_exp` does not apply (f32 keeps the gradients).
    fn kernel(&self) -> KernelCall {
        self.kernel_for(KernelTarget::Gpu)
    }
    fn kernel_for(&self, target: KernelTarget) -> KernelCall {
        let Self { m, n, k, layout, accumulate, .. } = *self;
        tiled(target, 1, m, n, k, 1, |e| matmul_consts(m, n, k, layout, accumulate, e))
    }
    /// The portable kernel's cost (see [`matmul_cost`]), also where `gpu::coop` runs the
    /// cooperative-matrix kernel instead.
    fn cost(&self) -> Cost {
        let Self { m, n, k, accumulate, .. } = *self;
        matmul_cost(1, m, n, k, k, accumulate, tile_edge(1, m, n, k))
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let Self { m, n, k, layout, accumulate, .. } = *self;
        matmul::matmul(&mut outs[0], ins[0].f(), ins[1].f(), m, n, k, layout, accumulate)
    }
    fn examples() -> Vec<Self> {
        // Ragged shapes on each tile edge: 4 (a 16 x 16 tile, several K slices with a ragged
        // last one), 8 and 16 (enough tiles times K for the larger tiles).
        let mut out: Vec<Self> = [(Layout::Nt, false), (Layout::Nn, true), (Layout::Tn, true)]
            .map(|(layout, accumulate)| Matmul { m: 5, n: 7, k: 37, layout, accumulate, a_prescale_exp: 0 })
            .to_vec();
        out.push(Matmul { m: 70, n: 45, k: 1600, layout: Layout::Tn, accumulate: true, a_prescale_exp: 0 });
        out.push(Matmul { m: 130, n: 66, k: 2400, layout: Layout::Nt, accumulate: false, a_prescale_exp: 0 });
        out
    }
}

impl OpDef for BatchedMatmul {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { batch, m, n, k, accumulate, .. } = *self;
        let c = BindingSpec::written(batch * m * n, !accumulate);
        vec![c, BindingSpec::rd(batch * m * k), BindingSpec::rd(batch * k * n)]
    }
    fn check(&self) -> Result<(), String> {
        if self.batch as u32 > MAX_GRID_DIM || self.batch == 0 {
            return Err(format!("batched matmul: batch {} is not in 1..={MAX_GRID_DIM}", self.batch));
        }
        Ok(())
    }
    fn kernel(&self) -> KernelCall {
        self.kernel_for(KernelTarget::Gpu)
    }
    fn kernel_for(&self, target: KernelTarget) -> KernelCall {
        let Self { batch, m, n, k, layout, alpha, accumulate } = *self;
        tiled(target, batch, m, n, k, batch, |e| {
            [matmul_consts(m, n, k, layout, accumulate, e), vec![("BATCH", u(batch)), ("ALPHA", alpha)]].concat()
        })
    }
    /// See [`matmul_cost`].
    fn cost(&self) -> Cost {
        let Self { batch, m, n, k, accumulate, .. } = *self;
        matmul_cost(batch, m, n, k, k, accumulate, tile_edge(batch, m, n, k))
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let Self { batch, m, n, k, layout, alpha, accumulate } = *self;
        matmul::matmul_batched(&mut outs[0], ins[0].f(), ins[1].f(), batch, m, n, k, layout, alpha, accumulate)
    }
    fn examples() -> Vec<Self> {
        // Every layout, batched and scaled (the Newton-Schulz products of `optim`).
        [(Layout::Nt, -0.75, false), (Layout::Nn, 2.0315, true), (Layout::Tn, 1.0, true)]
            .map(|(layout, alpha, accumulate)| BatchedMatmul { batch: 3, m: 5, n: 7, k: 19, layout, alpha, accumulate })
            .to_vec()
    }
}

impl MatmulPartial {
    /// The number of K ranges, `ceil(k / k_split)`.
    pub fn splits(&self) -> usize {
        self.k.div_ceil(self.k_split.max(1))
    }
}

impl OpDef for MatmulPartial {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { batch, m, n, k, .. } = *self;
        vec![
            BindingSpec::out(batch * self.splits() * m * n),
            BindingSpec::rd(batch * m * k),
            BindingSpec::rd(batch * k * n),
        ]
    }
    fn check(&self) -> Result<(), String> {
        check_prescale(self.a_prescale_exp)?;
        if self.k_split == 0 || self.k_split > self.k {
            return Err(format!("split matmul: k_split {} is not in 1..={}", self.k_split, self.k));
        }
        if self.batch == 0 {
            return Err("split matmul: batch 0".into());
        }
        check_grid_dim("split matmul batch x splits", self.batch * self.splits())
    }
    fn kernel(&self) -> KernelCall {
        self.kernel_for(KernelTarget::Gpu)
    }
    fn kernel_for(&self, target: KernelTarget) -> KernelCall {
        let Self { batch, m, n, k, k_split, layout, .. } = *self;
        let splits = self.splits();
        let extra = vec![("BATCH", u(batch)), ("SPLITS", u(splits)), ("K_SPLIT", u(k_split))];
        tiled(target, batch, m, n, k, batch * splits, |e| {
            [matmul_consts(m, n, k, layout, false, e), extra.clone()].concat()
        })
    }
    /// See [`matmul_cost`]: the product's loads and multiply-adds, and one store (and the
    /// scale by ALPHA = 1, as written) per output of each split.
    fn cost(&self) -> Cost {
        let Self { batch, m, n, k, k_split, .. } = *self;
        matmul_cost(batch, m, n, k, k_split, false, tile_edge(batch, m, n, k))
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let Self { batch, m, n, k, k_split, layout, .. } = *self;
        matmul::matmul_partial(&mut outs[0], ins[0].f(), ins[1].f(), batch, m, n, k, k_split, layout)
    }
    fn examples() -> Vec<Self> {
        // Every layout; a ragged last split (K 75 in ranges of 32 and 16: 32 + 32 + 11, and
        // 16 x 4 + 11); ranges that end inside a K slice (20: 20 + 20 + 20 + 15); batched;
        // the 64 x 64 tile (enough tiles times splits for it).
        let mut out: Vec<Self> = [(Layout::Nt, 1, 32), (Layout::Nn, 2, 16), (Layout::Tn, 1, 32), (Layout::Nn, 1, 20)]
            .map(|(layout, batch, k_split)| MatmulPartial {
                batch,
                m: 9,
                n: 13,
                k: 75,
                k_split,
                layout,
                a_prescale_exp: 0,
            })
            .to_vec();
        let (m, n, k, k_split) = (130, 70, 2100, 512);
        out.push(MatmulPartial { batch: 1, m, n, k, k_split, layout: Layout::Tn, a_prescale_exp: 0 });
        out
    }
}

impl OpDef for MatmulSplitSum {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { batch, m, n, splits, accumulate, .. } = *self;
        vec![BindingSpec::written(batch * m * n, !accumulate), BindingSpec::rd(batch * splits * m * n)]
    }
    fn check(&self) -> Result<(), String> {
        if self.splits == 0 {
            return Err("split matmul sum: 0 splits".into());
        }
        Ok(())
    }
    fn kernel(&self) -> KernelCall {
        let Self { batch, m, n, splits, alpha, accumulate } = *self;
        let consts = vec![
            ("MN", u(m * n)),
            ("SPLITS", u(splits)),
            ("ACCUMULATE", flag(accumulate)),
            ("BATCH", u(batch)),
            ("ALPHA", alpha),
        ];
        KernelCall::new("matmul_split_sum", "matmul_split_sum", consts, grid_1d(batch * m * n))
    }
    /// Per output: the `splits` partials loaded and added from zero, the scale (1 FLOP), one
    /// store, and with `accumulate` a load and an add.
    fn cost(&self) -> Cost {
        let Self { batch, m, n, splits, accumulate, .. } = *self;
        let (outs, s, acc) = (n64(batch * m * n), n64(splits), u64::from(accumulate));
        Cost::elems(outs * (s + 1 + acc), outs * (s + acc), outs)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let Self { batch, m, n, splits, alpha, accumulate } = *self;
        matmul::split_sum(&mut outs[0], ins[0].f(), batch, m * n, splits, alpha, accumulate)
    }
    fn examples() -> Vec<Self> {
        [(1, 3, 1.0, true), (2, 5, -0.75, false), (1, 1, 2.0315, true)]
            .map(|(batch, splits, alpha, accumulate)| MatmulSplitSum { batch, m: 9, n: 13, splits, alpha, accumulate })
            .to_vec()
    }
}

/// Pushes `c (= or +=) op(a) op(b)` (`[c, a, b]` as for [`Matmul`]): one [`Matmul`] when
/// [`split_k`] keeps K whole, else a [`MatmulPartial`] into the scratch of its shape (shared
/// by every site of that shape) and a [`MatmulSplitSum`] into c.
pub fn emit_matmul(g: &mut PlanBuilder, phase: Phase, op: Matmul, args: [TensorId; 3]) -> Result<(), PlanError> {
    let Matmul { m, n, k, layout, accumulate, a_prescale_exp } = op;
    if split_k(1, m, n, k) == k {
        return g.push(phase, op, &args);
    }
    let whole = BatchedMatmul { batch: 1, m, n, k, layout, alpha: 1.0, accumulate };
    emit_split(g, phase, whole, a_prescale_exp, args)
}

/// [`emit_matmul`] for a [`BatchedMatmul`] (the Newton-Schulz products).
pub fn emit_batched_matmul(
    g: &mut PlanBuilder,
    phase: Phase,
    op: BatchedMatmul,
    args: [TensorId; 3],
) -> Result<(), PlanError> {
    if split_k(op.batch, op.m, op.n, op.k) == op.k {
        return g.push(phase, op, &args);
    }
    emit_split(g, phase, op, 0, args)
}

fn emit_split(
    g: &mut PlanBuilder,
    phase: Phase,
    op: BatchedMatmul,
    a_prescale_exp: i32,
    [c, a, b]: [TensorId; 3],
) -> Result<(), PlanError> {
    let BatchedMatmul { batch, m, n, k, layout, alpha, accumulate } = op;
    let partial = MatmulPartial { batch, m, n, k, k_split: split_k(batch, m, n, k), layout, a_prescale_exp };
    let splits = partial.splits();
    let scratch = g.shared_scratch(&format!("matmul.partials.{batch}x{splits}x{m}x{n}"), &[batch, splits, m, n])?;
    g.push(phase, partial, &[scratch, a, b])?;
    g.push(phase, MatmulSplitSum { batch, m, n, splits, alpha, accumulate }, &[c, scratch])
}
