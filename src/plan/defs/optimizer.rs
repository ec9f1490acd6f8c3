//! The optimizer's ops: AdamW (`shaders/adamw.wgsl`, `ops::adamw`), Muon's momentum,
//! normalisation, scaled copy and apply (`shaders/muon.wgsl`, `ops::muon`; its
//! Newton-Schulz products are [`BatchedMatmul`](super::BatchedMatmul)s), the global
//! gradient-norm clip (`shaders/clip.wgsl`, `ops::clip`) and the weight EMA
//! (`shaders/ema.wgsl`, `ops::ema`), and test-time training's SGD with momentum
//! (`shaders/sgd.wgsl`, `ops::sgd`). `optim` strings them together.
use crate::ops::adamw::{self, AdamHyper};
use crate::ops::muon::{self, MuonHyper};
use crate::ops::sgd::{self, SgdHyper};
use crate::ops::{clip, ema, Real};
use crate::plan::op::{
    check_grid_dim, fparam, grid_1d, grid_groups, n64, tree_flops, uconst as u, uparam as p, BindingSpec, Cost, Domain,
    In, KernelCall, OpDef,
};

/// `[p, m, v | g, clip, hyper]`: one AdamW step with decoupled weight decay on the gradient
/// `g * clip[0]` (the global-norm clip's coefficient, or a constant 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub count: usize,
}

/// `[buf, stack | grad, clip, hyper]`: Muon momentum `buf <- mu buf + g`, and the Nesterov
/// `g + mu buf` into matrix `index` of a `[count, a, b]` stack (transposed when
/// rows > cols; see `ops::muon`), for `g = grad * clip[0]` as in [`AdamW`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonMomentum {
    pub rows: usize,
    pub cols: usize,
    pub index: usize,
    pub count: usize,
}

/// `[partials | stack]`: per `[a, b]` matrix of a `[count, a, b]` stack, the sums of squares
/// of its chunks of 4096 elements into `partials [count, muon_chunks(a, b)]` (one workgroup
/// per chunk; the first stage of [`MuonNormalize`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonSumSq {
    pub count: usize,
    pub a: usize,
    pub b: usize,
}

/// `[stack | partials]`: each matrix of the stack divided by its Frobenius norm plus 1e-7,
/// the norm from [`MuonSumSq`]'s partials added in order (one workgroup per chunk).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonNormalize {
    pub count: usize,
    pub a: usize,
    pub b: usize,
}

/// `[out | x]`: `out = alpha x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleCopy {
    pub count: usize,
    pub alpha: f64,
}

/// `[param | stack, hyper]`: `W <- W (1 - lr wd) - lr shape_scale O`, O matrix `index`
/// of the stack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonApply {
    pub rows: usize,
    pub cols: usize,
    pub index: usize,
    pub count: usize,
    pub shape_scale: f64,
}

/// The gradients one [`GradSumSq`] dispatch reads (with the partials, 8 storage bindings:
/// every adapter's minimum).
pub const GRADS_PER_SUM: usize = 7;

/// `[partials | g0, .., g6]`: the sums of squares of the 1024-element chunks of the first
/// `used` gradients, in order, into `partials[part_offset ..]` (one workgroup per chunk;
/// see `ops::clip::grad_sum_sq`). The bindings past `used` repeat gradient `used - 1` and
/// are not read; their `counts` are 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradSumSq {
    pub counts: [usize; GRADS_PER_SUM],
    pub used: usize,
    pub part_offset: usize,
    pub parts: usize,
}

impl GradSumSq {
    /// The partial sums of `counts` (1 to [`GRADS_PER_SUM`] gradients' element counts) from
    /// `part_offset` of `parts`.
    pub fn new(counts: &[usize], part_offset: usize, parts: usize) -> Self {
        let mut padded = [0; GRADS_PER_SUM];
        let used = counts.len().min(GRADS_PER_SUM);
        padded[..used].copy_from_slice(&counts[..used]);
        GradSumSq { counts: padded, used: counts.len(), part_offset, parts }
    }
    /// The partials (workgroups) of this dispatch.
    pub fn chunks(&self) -> usize {
        self.counts[..self.used.min(GRADS_PER_SUM)].iter().map(|&c| clip::sum_sq_chunks(c)).sum()
    }
    /// The element count of binding `1 + k`.
    fn bound(&self, k: usize) -> usize {
        self.counts[k.min(self.used.max(1) - 1)]
    }
}

/// `[coef | partials]`: `coef = min(1, max_norm / (sqrt(sum partials) + 1e-6))` (one
/// workgroup, fixed order).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipCoef {
    pub parts: usize,
    pub max_norm: f64,
}

/// `[ema | param]`: `ema <- decay ema + (1 - decay) param`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ema {
    pub count: usize,
    pub decay: f64,
}

/// The weights one [`EmaGroup`] dispatch updates (8 storage bindings: every adapter's
/// minimum).
pub const EMAS_PER_GROUP: usize = 4;

/// `[ema0, .., ema3 | param0, .., param3]`: [`Ema`] for four weights in one dispatch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmaGroup {
    pub counts: [usize; EMAS_PER_GROUP],
    pub decay: f64,
}

/// `[p, buf | g, clip, hyper]`: one SGD step with momentum (`buf <- mu buf + g; p -= lr
/// buf`) on `g * clip[0]` as in [`AdamW`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub count: usize,
}

impl OpDef for AdamW {
    fn bindings(&self) -> Vec<BindingSpec> {
        let n = self.count;
        vec![
            BindingSpec::rw(n),
            BindingSpec::rw(n),
            // The second moment is a running mean of squares.
            BindingSpec::rw(n).within(Domain::NonNegative),
            BindingSpec::rd(n),
            BindingSpec::rd(1),
            BindingSpec::hyper(Domain::AdamHyper),
        ]
    }
    fn kernel(&self) -> KernelCall {
        // The count is a per-dispatch parameter: one pipeline for every parameter tensor.
        KernelCall::new("adamw", "adamw", vec![], grid_1d(self.count)).with_params(vec![("count", p(self.count))])
    }
    /// Per element: g, the clip coefficient, p, m, v loaded, p, m, v stored, 20 FLOPs (the
    /// clip's product; the hyperparameters are a uniform, so `1 - beta1` and the like are
    /// computed per element).
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(20 * c, 5 * c, 3 * c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let hyper: AdamHyper = ins[2].hyper();
        let (p, rest) = outs.split_at_mut(1);
        let (m, v) = rest.split_at_mut(1);
        adamw::adamw(&mut p[0], &mut m[0], &mut v[0], &clip::clipped(ins[0].f(), ins[1].f()), &hyper)
    }
    fn examples() -> Vec<Self> {
        vec![AdamW { count: 77 }]
    }
}

fn check_index(index: usize, count: usize) -> Result<(), String> {
    if index >= count {
        return Err(format!("muon: matrix {index} of a stack of {count}"));
    }
    Ok(())
}

impl OpDef for MuonMomentum {
    fn bindings(&self) -> Vec<BindingSpec> {
        let n = self.rows * self.cols;
        vec![
            BindingSpec::rw(n),
            BindingSpec::rw(self.count * n),
            BindingSpec::rd(n),
            BindingSpec::rd(1),
            BindingSpec::hyper(Domain::MuonHyper),
        ]
    }
    fn check(&self) -> Result<(), String> {
        check_index(self.index, self.count)
    }
    fn kernel(&self) -> KernelCall {
        // The matrix is a per-dispatch parameter: one pipeline for every matrix.
        let params = vec![("rows", p(self.rows)), ("cols", p(self.cols)), ("index", p(self.index))];
        KernelCall::new("muon", "muon_momentum", vec![], grid_1d(self.rows * self.cols)).with_params(params)
    }
    /// Per element: grad, the clip coefficient and buf loaded, buf and the stack stored, the
    /// clip's product and two multiply-adds.
    fn cost(&self) -> Cost {
        let c = n64(self.rows * self.cols);
        Cost::elems(5 * c, 3 * c, 2 * c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let h: MuonHyper = ins[2].hyper();
        let (buf, stack) = outs.split_at_mut(1);
        let g = clip::clipped(ins[0].f(), ins[1].f());
        muon::muon_momentum(&mut buf[0], &mut stack[0], &g, self.rows, self.cols, self.index, h.momentum)
    }
    fn examples() -> Vec<Self> {
        // A tall matrix (stored transposed in its stack) and a wide one.
        vec![
            MuonMomentum { rows: 7, cols: 5, index: 1, count: 3 },
            MuonMomentum { rows: 5, cols: 7, index: 2, count: 3 },
        ]
    }
}

impl OpDef for MuonSumSq {
    fn bindings(&self) -> Vec<BindingSpec> {
        let chunks = muon::muon_chunks(self.a, self.b);
        vec![BindingSpec::out(self.count * chunks), BindingSpec::rd(self.count * self.a * self.b)]
    }
    fn check(&self) -> Result<(), String> {
        check_grid_dim("muon_sum_sq (chunks)", muon::muon_chunks(self.a, self.b))?;
        check_grid_dim("muon_sum_sq (matrices)", self.count)
    }
    fn kernel(&self) -> KernelCall {
        let chunks = muon::muon_chunks(self.a, self.b);
        // The stack's shape is a per-dispatch parameter: one pipeline for every stack.
        let params = vec![("a", p(self.a)), ("b", p(self.b)), ("chunks", p(chunks))];
        KernelCall::new("muon", "muon_sum_sq", vec![], [chunks as u32, self.count as u32, 1]).with_params(params)
    }
    /// Per element: one load, a multiply-add. Per chunk (one 256-lane workgroup): the tree
    /// and one store.
    fn cost(&self) -> Cost {
        let (size, wg) = (n64(self.count * self.a * self.b), n64(self.count * muon::muon_chunks(self.a, self.b)));
        Cost::elems(2 * size + wg * tree_flops(256), size, wg)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        muon::muon_sum_sq(&mut outs[0], ins[0].f(), self.a, self.b)
    }
    fn examples() -> Vec<Self> {
        // Matrices of one partial chunk, and of three (the last partial).
        vec![MuonSumSq { count: 2, a: 9, b: 37 }, MuonSumSq { count: 3, a: 50, b: 190 }]
    }
}

impl OpDef for MuonNormalize {
    fn bindings(&self) -> Vec<BindingSpec> {
        let chunks = muon::muon_chunks(self.a, self.b);
        vec![
            BindingSpec::rw(self.count * self.a * self.b),
            BindingSpec::rd(self.count * chunks).within(Domain::NonNegative),
        ]
    }
    fn check(&self) -> Result<(), String> {
        MuonSumSq { count: self.count, a: self.a, b: self.b }.check()
    }
    fn kernel(&self) -> KernelCall {
        let chunks = muon::muon_chunks(self.a, self.b);
        let params = vec![("a", p(self.a)), ("b", p(self.b)), ("chunks", p(chunks))];
        KernelCall::new("muon", "muon_normalize", vec![], [chunks as u32, self.count as u32, 1]).with_params(params)
    }
    /// Per chunk (one 256-lane workgroup): the matrix's partials loaded and added, the tree,
    /// the denominator on every lane (sqrt, add). Per element: one load, a division, one
    /// store.
    fn cost(&self) -> Cost {
        let chunks = n64(muon::muon_chunks(self.a, self.b));
        let (size, wg) = (n64(self.count * self.a * self.b), n64(self.count) * chunks);
        Cost::elems(wg * (chunks + tree_flops(256) + 2 * 256) + size, wg * chunks + size, size)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        muon::muon_normalize(&mut outs[0], ins[0].f(), self.a, self.b)
    }
    fn examples() -> Vec<Self> {
        // Matrices larger than the 256 lanes; matrices of three chunks.
        vec![MuonNormalize { count: 2, a: 9, b: 37 }, MuonNormalize { count: 3, a: 50, b: 190 }]
    }
}

impl OpDef for ScaleCopy {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::out(self.count), BindingSpec::rd(self.count)]
    }
    fn kernel(&self) -> KernelCall {
        // One pipeline per coefficient, the count a per-dispatch parameter.
        let params = vec![("count", p(self.count))];
        KernelCall::new("muon", "scale_copy", vec![("ALPHA", self.alpha)], grid_1d(self.count)).with_params(params)
    }
    /// Per element: one load, one product, one store.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(c, c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        muon::scale_copy(&mut outs[0], ins[0].f(), self.alpha)
    }
    fn examples() -> Vec<Self> {
        vec![ScaleCopy { count: 77, alpha: -4.775 }]
    }
}

impl OpDef for MuonApply {
    fn bindings(&self) -> Vec<BindingSpec> {
        let n = self.rows * self.cols;
        vec![BindingSpec::rw(n), BindingSpec::rd(self.count * n), BindingSpec::hyper(Domain::MuonHyper)]
    }
    fn check(&self) -> Result<(), String> {
        check_index(self.index, self.count)
    }
    fn kernel(&self) -> KernelCall {
        // As MuonMomentum's: one pipeline for every matrix.
        let params = vec![
            ("rows", p(self.rows)),
            ("cols", p(self.cols)),
            ("index", p(self.index)),
            ("shape_scale", fparam(self.shape_scale)),
        ];
        KernelCall::new("muon", "muon_apply", vec![], grid_1d(self.rows * self.cols)).with_params(params)
    }
    /// Per element: the stack and p loaded, p stored, 6 FLOPs (the decay and `lr shape_scale`
    /// from the uniform, then two products and a subtraction).
    fn cost(&self) -> Cost {
        let c = n64(self.rows * self.cols);
        Cost::elems(6 * c, 2 * c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let h: MuonHyper = ins[1].hyper();
        let Self { rows, cols, index, shape_scale, .. } = *self;
        muon::muon_apply(&mut outs[0], ins[0].f(), rows, cols, index, shape_scale, h.lr, h.weight_decay)
    }
    fn examples() -> Vec<Self> {
        vec![
            MuonApply { rows: 7, cols: 5, index: 1, count: 3, shape_scale: (7.0f64 / 5.0).sqrt() },
            MuonApply { rows: 5, cols: 7, index: 0, count: 3, shape_scale: 1.0 },
        ]
    }
}

impl OpDef for GradSumSq {
    fn bindings(&self) -> Vec<BindingSpec> {
        // Each dispatch writes its own range of the partials: a partial write.
        let mut specs = vec![BindingSpec::rw(self.parts)];
        specs.extend((0..GRADS_PER_SUM).map(|k| BindingSpec::rd(self.bound(k))));
        specs
    }
    fn check(&self) -> Result<(), String> {
        let Self { counts, used, part_offset, parts } = *self;
        if !(1..=GRADS_PER_SUM).contains(&used) {
            return Err(format!("grad_sum_sq: {used} gradients, expected 1 to {GRADS_PER_SUM}"));
        }
        if counts[..used].contains(&0) || counts[used..].iter().any(|&c| c != 0) {
            return Err(format!("grad_sum_sq: counts {counts:?} for {used} gradients"));
        }
        if part_offset + self.chunks() > parts {
            return Err(format!(
                "grad_sum_sq: {} partials from {part_offset} exceed the {parts} of its output",
                self.chunks()
            ));
        }
        Ok(())
    }
    fn kernel(&self) -> KernelCall {
        // Which gradients and where their partials go are per-dispatch parameters: one
        // pipeline for every group of gradients.
        let mut params = vec![("used", p(self.used))];
        let names = ["count0", "count1", "count2", "count3", "count4", "count5", "count6"];
        params.extend(names.iter().zip(self.counts).map(|(&name, c)| (name, p(c))));
        params.push(("part_offset", p(self.part_offset)));
        KernelCall::new("clip", "grad_sum_sq", vec![], grid_groups(self.chunks())).with_params(params)
    }
    /// Per element: one load, squared into the lane's sum (a multiply-add). Per chunk (one
    /// 256-lane workgroup): the tree, one store.
    fn cost(&self) -> Cost {
        let c: u64 = self.counts.iter().map(|&c| n64(c)).sum();
        let chunks = n64(self.chunks());
        Cost::elems(2 * c + chunks * tree_flops(256), c, chunks)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let grads: Vec<&[R]> = ins[..self.used].iter().map(|g| g.f()).collect();
        clip::grad_sum_sq(&mut outs[0], &grads, self.part_offset)
    }
    fn examples() -> Vec<Self> {
        // Two gradients (the rest padding) from an offset: a short one and one of three
        // chunks, the last partial; all seven, each under one chunk.
        vec![GradSumSq::new(&[300, 2100], 1, 6), GradSumSq::new(&[1, 5, 1024, 1025, 3, 77, 9], 0, 9)]
    }
}

impl OpDef for ClipCoef {
    fn bindings(&self) -> Vec<BindingSpec> {
        // Partial sums of squares.
        vec![BindingSpec::out(1), BindingSpec::rd(self.parts).within(Domain::NonNegative)]
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("PARTS", u(self.parts)), ("MAX_NORM", self.max_norm)];
        KernelCall::new("clip", "clip_coef", consts, [1, 1, 1])
    }
    /// One 256-lane workgroup: the partials loaded and added, the tree, then sqrt, add, div,
    /// min; one store.
    fn cost(&self) -> Cost {
        let p = n64(self.parts);
        Cost::elems(p + tree_flops(256) + 4, p, 1)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        clip::clip_coef(&mut outs[0], ins[0].f(), self.max_norm)
    }
    fn examples() -> Vec<Self> {
        vec![ClipCoef { parts: 3, max_norm: 0.3 }, ClipCoef { parts: 700, max_norm: 0.3 }]
    }
}

impl OpDef for Ema {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::rw(self.count), BindingSpec::rd(self.count)]
    }
    fn kernel(&self) -> KernelCall {
        // The decay is the same for every parameter and folds as a constant; the count is a
        // per-dispatch parameter.
        let params = vec![("count", p(self.count))];
        KernelCall::new("ema", "ema", vec![("DECAY", self.decay)], grid_1d(self.count)).with_params(params)
    }
    /// Per element: e and w loaded, two products and an add (`1 - DECAY` is folded), e
    /// stored.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(3 * c, 2 * c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        ema::ema(&mut outs[0], ins[0].f(), self.decay)
    }
    fn examples() -> Vec<Self> {
        vec![Ema { count: 77, decay: 0.997 }]
    }
}

impl OpDef for EmaGroup {
    fn bindings(&self) -> Vec<BindingSpec> {
        let rw = self.counts.iter().map(|&c| BindingSpec::rw(c));
        rw.chain(self.counts.iter().map(|&c| BindingSpec::rd(c))).collect()
    }
    fn check(&self) -> Result<(), String> {
        if self.counts.contains(&0) {
            return Err(format!("ema4: counts {:?}: every weight needs elements", self.counts));
        }
        Ok(())
    }
    fn kernel(&self) -> KernelCall {
        // As Ema's: the decay folds, the counts are per-dispatch parameters.
        let names = ["count0", "count1", "count2", "count3"];
        let params = names.iter().zip(self.counts).map(|(&name, c)| (name, p(c))).collect();
        let total = self.counts.iter().sum();
        KernelCall::new("ema", "ema4", vec![("DECAY", self.decay)], grid_1d(total)).with_params(params)
    }
    /// Per element: as [`Ema`]'s (the compares that find the weight are not counted).
    fn cost(&self) -> Cost {
        let c: u64 = self.counts.iter().map(|&c| n64(c)).sum();
        Cost::elems(3 * c, 2 * c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        for (e, w) in outs.iter_mut().zip(ins) {
            ema::ema(e, w.f(), self.decay)
        }
    }
    fn examples() -> Vec<Self> {
        // Weights of one element, of a partial workgroup, and spanning workgroups.
        vec![EmaGroup { counts: [77, 1, 130, 64], decay: 0.997 }]
    }
}

impl OpDef for Sgd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let n = self.count;
        vec![
            BindingSpec::rw(n),
            BindingSpec::rw(n),
            BindingSpec::rd(n),
            BindingSpec::rd(1),
            BindingSpec::hyper(Domain::SgdHyper),
        ]
    }
    fn kernel(&self) -> KernelCall {
        KernelCall::new("sgd", "sgd", vec![("COUNT", u(self.count))], grid_1d(self.count))
    }
    /// Per element: buf, g, the clip coefficient and p loaded, buf and p stored, the clip's
    /// product and two multiply-adds (5 FLOPs).
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(5 * c, 4 * c, 2 * c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let hyper: SgdHyper = ins[2].hyper();
        let (p, buf) = outs.split_at_mut(1);
        sgd::sgd(&mut p[0], &mut buf[0], &clip::clipped(ins[0].f(), ins[1].f()), &hyper)
    }
    fn examples() -> Vec<Self> {
        vec![Sgd { count: 77 }]
    }
}
