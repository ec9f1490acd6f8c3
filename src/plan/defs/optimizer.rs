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
    grid_1d, n64, tree_flops, uconst as u, BindingSpec, Cost, Domain, In, KernelCall, OpDef, MAX_GRID_DIM,
};

/// `[p, m, v | g, hyper]`: one AdamW step with decoupled weight decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub count: usize,
}

/// `[buf, stack | grad, hyper]`: Muon momentum `buf <- mu buf + g`, and the Nesterov
/// `g + mu buf` into matrix `index` of a `[count, a, b]` stack (transposed when
/// rows > cols; see `ops::muon`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonMomentum {
    pub rows: usize,
    pub cols: usize,
    pub index: usize,
    pub count: usize,
}

/// `[stack]`: each `[a, b]` matrix of a `[count, a, b]` stack divided by its Frobenius norm
/// plus 1e-7 (one workgroup per matrix).
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

/// `[norms | grad]`: `norms[slot] = sum g^2` (one workgroup; overwrites its slot).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradSumSq {
    pub count: usize,
    pub slot: usize,
    pub slots: usize,
}

/// `[coef | norms]`: `coef = min(1, max_norm / (sqrt(sum norms) + 1e-6))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipCoef {
    pub slots: usize,
    pub max_norm: f64,
}

/// `[x | coef]`: `x *= coef[0]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleByCoef {
    pub count: usize,
}

/// `[ema | param]`: `ema <- decay ema + (1 - decay) param`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ema {
    pub count: usize,
    pub decay: f64,
}

/// `[p, buf | g, hyper]`: one SGD step with momentum (`buf <- mu buf + g; p -= lr buf`).
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
            BindingSpec::hyper(Domain::AdamHyper),
        ]
    }
    fn kernel(&self) -> KernelCall {
        KernelCall::new("adamw", "adamw", vec![("COUNT", u(self.count))], grid_1d(self.count))
    }
    /// Per element: g, p, m, v loaded, p, m, v stored, 19 FLOPs (the hyperparameters are a
    /// uniform, so `1 - beta1` and the like are computed per element).
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(19 * c, 4 * c, 3 * c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let hyper: AdamHyper = ins[1].hyper();
        let (p, rest) = outs.split_at_mut(1);
        let (m, v) = rest.split_at_mut(1);
        adamw::adamw(&mut p[0], &mut m[0], &mut v[0], ins[0].f(), &hyper)
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
            BindingSpec::hyper(Domain::MuonHyper),
        ]
    }
    fn check(&self) -> Result<(), String> {
        check_index(self.index, self.count)
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("ROWS", u(self.rows)), ("COLS", u(self.cols)), ("INDEX", u(self.index))];
        KernelCall::new("muon", "muon_momentum", consts, grid_1d(self.rows * self.cols))
    }
    /// Per element: grad and buf loaded, buf and the stack stored, two multiply-adds.
    fn cost(&self) -> Cost {
        let c = n64(self.rows * self.cols);
        Cost::elems(4 * c, 2 * c, 2 * c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let h: MuonHyper = ins[1].hyper();
        let (buf, stack) = outs.split_at_mut(1);
        muon::muon_momentum(&mut buf[0], &mut stack[0], ins[0].f(), self.rows, self.cols, self.index, h.momentum)
    }
    fn examples() -> Vec<Self> {
        // A tall matrix (stored transposed in its stack) and a wide one.
        vec![
            MuonMomentum { rows: 7, cols: 5, index: 1, count: 3 },
            MuonMomentum { rows: 5, cols: 7, index: 2, count: 3 },
        ]
    }
}

impl OpDef for MuonNormalize {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::rw(self.count * self.a * self.b)]
    }
    fn check(&self) -> Result<(), String> {
        if self.count as u32 > MAX_GRID_DIM {
            return Err(format!("muon_normalize: {} matrices, one workgroup each, exceed {MAX_GRID_DIM}", self.count));
        }
        Ok(())
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("A", u(self.a)), ("B", u(self.b))];
        KernelCall::new("muon", "muon_normalize", consts, [self.count as u32, 1, 1])
    }
    /// Per matrix (one 256-lane workgroup): every element loaded for the sum of squares (a
    /// multiply-add), the tree, the denominator on every lane (sqrt, add), then every element
    /// loaded again, divided and stored.
    fn cost(&self) -> Cost {
        let (count, size) = (n64(self.count), n64(self.a * self.b));
        Cost::elems(count * (3 * size + tree_flops(256) + 2 * 256), count * 2 * size, count * size)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], _ins: &[In<'_, R>]) {
        muon::muon_normalize(&mut outs[0], self.a, self.b)
    }
    fn examples() -> Vec<Self> {
        // Matrices larger than the kernel's 256 lanes.
        vec![MuonNormalize { count: 2, a: 9, b: 37 }]
    }
}

impl OpDef for ScaleCopy {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::rw(self.count), BindingSpec::rd(self.count)]
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("COUNT", u(self.count)), ("ALPHA", self.alpha)];
        KernelCall::new("muon", "scale_copy", consts, grid_1d(self.count))
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
        let consts = vec![
            ("ROWS", u(self.rows)),
            ("COLS", u(self.cols)),
            ("INDEX", u(self.index)),
            ("SHAPE_SCALE", self.shape_scale),
        ];
        KernelCall::new("muon", "muon_apply", consts, grid_1d(self.rows * self.cols))
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
        vec![BindingSpec::rw(self.slots), BindingSpec::rd(self.count)]
    }
    fn check(&self) -> Result<(), String> {
        if self.slot >= self.slots {
            return Err(format!("grad_sum_sq: slot {} of {}", self.slot, self.slots));
        }
        Ok(())
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("COUNT", u(self.count)), ("SLOT", u(self.slot))];
        KernelCall::new("clip", "grad_sum_sq", consts, [1, 1, 1])
    }
    /// One 256-lane workgroup: every element loaded and squared into the lane's sum (a
    /// multiply-add), the tree, one store.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(2 * c + tree_flops(256), c, 1)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        clip::grad_sum_sq(&mut outs[0], ins[0].f(), self.slot)
    }
    fn examples() -> Vec<Self> {
        vec![GradSumSq { count: 300, slot: 1, slots: 3 }]
    }
}

impl OpDef for ClipCoef {
    fn bindings(&self) -> Vec<BindingSpec> {
        // Per-gradient sums of squares.
        vec![BindingSpec::rw(1), BindingSpec::rd(self.slots).within(Domain::NonNegative)]
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("SLOTS", u(self.slots)), ("MAX_NORM", self.max_norm)];
        KernelCall::new("clip", "clip_coef", consts, [1, 1, 1])
    }
    /// One invocation: the slots loaded and added, sqrt, add, div, min; one store.
    fn cost(&self) -> Cost {
        let s = n64(self.slots);
        Cost::elems(s + 4, s, 1)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        clip::clip_coef(&mut outs[0], ins[0].f(), self.max_norm)
    }
    fn examples() -> Vec<Self> {
        vec![ClipCoef { slots: 3, max_norm: 0.3 }]
    }
}

impl OpDef for ScaleByCoef {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::rw(self.count), BindingSpec::rd(1)]
    }
    fn kernel(&self) -> KernelCall {
        KernelCall::new("clip", "scale_by_coef", vec![("COUNT", u(self.count))], grid_1d(self.count))
    }
    /// Per element: x and the coefficient loaded, one product, one store.
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(c, 2 * c, c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        clip::scale_by_coef(&mut outs[0], ins[0].f())
    }
    fn examples() -> Vec<Self> {
        vec![ScaleByCoef { count: 77 }]
    }
}

impl OpDef for Ema {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::rw(self.count), BindingSpec::rd(self.count)]
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("COUNT", u(self.count)), ("DECAY", self.decay)];
        KernelCall::new("ema", "ema", consts, grid_1d(self.count))
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

impl OpDef for Sgd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let n = self.count;
        vec![BindingSpec::rw(n), BindingSpec::rw(n), BindingSpec::rd(n), BindingSpec::hyper(Domain::SgdHyper)]
    }
    fn kernel(&self) -> KernelCall {
        KernelCall::new("sgd", "sgd", vec![("COUNT", u(self.count))], grid_1d(self.count))
    }
    /// Per element: buf, g and p loaded, buf and p stored, two multiply-adds (4 FLOPs).
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(4 * c, 3 * c, 2 * c)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let hyper: SgdHyper = ins[1].hyper();
        let (p, buf) = outs.split_at_mut(1);
        sgd::sgd(&mut p[0], &mut buf[0], ins[0].f(), &hyper)
    }
    fn examples() -> Vec<Self> {
        vec![Sgd { count: 77 }]
    }
}
