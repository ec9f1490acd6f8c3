//! Matrix products (`shaders/matmul.wgsl`, `ops::matmul`); `gpu::coop` swaps in the
//! cooperative-matrix kernel for [`Matmul`] where the adapter has one.
use crate::ops::matmul::{self, Layout};
use crate::ops::Real;
use crate::plan::op::{flag, uconst as u, BindingSpec, In, KernelCall, OpDef, MAX_GRID_DIM};

/// `[c | a, b]`: `c (= or +=) op(a) op(b)`, `c [m, n]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Matmul {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub layout: Layout,
    pub accumulate: bool,
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

impl OpDef for Matmul {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { m, n, k, .. } = *self;
        vec![BindingSpec::rw(m * n), BindingSpec::rd(m * k), BindingSpec::rd(k * n)]
    }
    fn kernel(&self) -> KernelCall {
        let Self { m, n, k, layout, accumulate } = *self;
        KernelCall::new("matmul", "matmul", matmul_consts(m, n, k, layout, accumulate), grid(m, n, 1))
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let Self { m, n, k, layout, accumulate } = *self;
        matmul::matmul(&mut outs[0], ins[0].f(), ins[1].f(), m, n, k, layout, accumulate)
    }
    fn examples() -> Vec<Self> {
        [(Layout::Nt, false), (Layout::Nn, true), (Layout::Tn, true)]
            .map(|(layout, accumulate)| Matmul { m: 5, n: 7, k: 3, layout, accumulate })
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
