//! Matrix products (`shaders/matmul.wgsl`, `ops::matmul`); `gpu::coop` swaps in the
//! cooperative-matrix kernel for [`Matmul`] where the adapter has one.
use crate::ops::matmul::{self, Layout};
use crate::ops::Real;
use crate::plan::op::{flag, n64, uconst as u, BindingSpec, Cost, In, KernelCall, OpDef, MAX_GRID_DIM};

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

/// The overrides every matmul.wgsl call sets (`BATCH` and `ALPHA` keep their defaults unless
/// a batched call adds them).
fn matmul_consts(m: usize, n: usize, k: usize, layout: Layout, accumulate: bool) -> Vec<(&'static str, f64)> {
    vec![
        ("M", u(m)),
        ("N", u(n)),
        ("K", u(k)),
        ("TRANS_A", flag(layout.trans_a())),
        ("TRANS_B", flag(layout.trans_b())),
        ("ACCUMULATE", flag(accumulate)),
    ]
}

/// One 32 x 32 output tile per workgroup.
fn grid(m: usize, n: usize, batch: usize) -> [u32; 3] {
    [n.div_ceil(32) as u32, m.div_ceil(32) as u32, batch as u32]
}

/// `matmul.wgsl` as written: no workgroup memory, so each of the `ceil(M/4) ceil(N/4)`
/// invocations per matrix loads its 4 rows of op(a) and 4 columns of op(b) straight from
/// global memory, 8 loads per k (edge blocks clamp into range and load as many), and does 16
/// multiply-adds per k. Each of the M N outputs is stored once, scaled by ALPHA (1 FLOP),
/// and with `accumulate` also loaded and added (1 load, 1 FLOP). The layout changes which
/// loads are contiguous, not how many there are. Issued loads come to 2 M N K bytes, one byte
/// per FLOP: caches, not the kernel, are what keeps it off the memory bus.
pub fn matmul_cost(batch: usize, m: usize, n: usize, k: usize, accumulate: bool) -> Cost {
    let blocks = n64(batch * m.div_ceil(4) * n.div_ceil(4));
    let (k, outs, acc) = (n64(k), n64(batch * m * n), u64::from(accumulate));
    Cost::elems(blocks * k * 32 + outs * (1 + acc), blocks * k * 8 + outs * acc, outs)
}

impl OpDef for Matmul {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { m, n, k, .. } = *self;
        vec![BindingSpec::rw(m * n), BindingSpec::rd(m * k), BindingSpec::rd(k * n)]
    }
    fn check(&self) -> Result<(), String> {
        if self.a_prescale_exp.abs() > MAX_PRESCALE_EXP {
            return Err(format!("matmul: a_prescale_exp {} is beyond +-{MAX_PRESCALE_EXP}", self.a_prescale_exp));
        }
        Ok(())
    }
    /// The portable f32 kernel: `a_prescale_exp` does not apply (f32 keeps the gradients).
    fn kernel(&self) -> KernelCall {
        let Self { m, n, k, layout, accumulate, .. } = *self;
        KernelCall::new("matmul", "matmul", matmul_consts(m, n, k, layout, accumulate), grid(m, n, 1))
    }
    /// The portable kernel's cost (see [`matmul_cost`]), also where `gpu::coop` runs the
    /// cooperative-matrix kernel instead.
    fn cost(&self) -> Cost {
        matmul_cost(1, self.m, self.n, self.k, self.accumulate)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let Self { m, n, k, layout, accumulate, .. } = *self;
        matmul::matmul(&mut outs[0], ins[0].f(), ins[1].f(), m, n, k, layout, accumulate)
    }
    fn examples() -> Vec<Self> {
        [(Layout::Nt, false), (Layout::Nn, true), (Layout::Tn, true)]
            .map(|(layout, accumulate)| Matmul { m: 5, n: 7, k: 3, layout, accumulate, a_prescale_exp: 0 })
            .to_vec()
    }
}

impl OpDef for BatchedMatmul {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { batch, m, n, k, .. } = *self;
        vec![BindingSpec::rw(batch * m * n), BindingSpec::rd(batch * m * k), BindingSpec::rd(batch * k * n)]
    }
    fn check(&self) -> Result<(), String> {
        if self.batch as u32 > MAX_GRID_DIM || self.batch == 0 {
            return Err(format!("batched matmul: batch {} is not in 1..={MAX_GRID_DIM}", self.batch));
        }
        Ok(())
    }
    fn kernel(&self) -> KernelCall {
        let Self { batch, m, n, k, layout, alpha, accumulate } = *self;
        let consts = [matmul_consts(m, n, k, layout, accumulate), vec![("BATCH", u(batch)), ("ALPHA", alpha)]].concat();
        KernelCall::new("matmul", "matmul", consts, grid(m, n, batch))
    }
    /// See [`matmul_cost`].
    fn cost(&self) -> Cost {
        matmul_cost(self.batch, self.m, self.n, self.k, self.accumulate)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let Self { batch, m, n, k, layout, alpha, accumulate } = *self;
        matmul::matmul_batched(&mut outs[0], ins[0].f(), ins[1].f(), batch, m, n, k, layout, alpha, accumulate)
    }
    fn examples() -> Vec<Self> {
        // Every layout, batched and scaled (the Newton-Schulz products of `optim`).
        [(Layout::Nt, -0.75, false), (Layout::Nn, 2.0315, true), (Layout::Tn, 1.0, true)]
            .map(|(layout, alpha, accumulate)| BatchedMatmul { batch: 3, m: 5, n: 7, k: 3, layout, alpha, accumulate })
            .to_vec()
    }
}
