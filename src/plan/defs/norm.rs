//! RMSNorm (`shaders/rmsnorm.wgsl`, `ops::rmsnorm`) and rotary embeddings
//! (`shaders/rope.wgsl`, `ops::rope`).
use crate::ops::{rmsnorm, rope, Real};
use crate::plan::op::{flag, grid_1d, n64, uconst as u, BindingSpec, Cost, In, KernelCall, OpDef};

/// `[y, rstd | x]`: each row of `dim` values divided by its root mean square (plus `eps`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsNormFwd {
    pub rows: usize,
    pub dim: usize,
    pub eps: f64,
}

/// `[dx | dy, y, rstd]` (accumulates into `dx`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsNormBwd {
    pub rows: usize,
    pub dim: usize,
}

/// `[out | x, table]`: rotary embedding of `heads` heads per row at position
/// `row % seq_len`; `inverse` is the backward (the transposed rotation, accumulated).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub rows: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub seq_len: usize,
    pub inverse: bool,
}

impl OpDef for RmsNormFwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let n = self.rows * self.dim;
        vec![BindingSpec::out(n), BindingSpec::out(self.rows), BindingSpec::rd(n)]
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("ROWS", u(self.rows)), ("DIM", u(self.dim)), ("EPS", self.eps)];
        KernelCall::new("rmsnorm", "rmsnorm_fwd", consts, grid_1d(self.rows))
    }
    /// Per row (one invocation): x loaded twice (the sum of squares, then the scaling),
    /// 2D + 4 FLOPs for the rstd and D for y; y (D) and rstd (1) stored.
    fn cost(&self) -> Cost {
        let (r, d) = (n64(self.rows), n64(self.dim));
        Cost::elems(r * (3 * d + 4), r * 2 * d, r * (d + 1))
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let (y, rstd) = outs.split_at_mut(1);
        rmsnorm::rmsnorm_fwd(&mut y[0], &mut rstd[0], ins[0].f(), self.dim, self.eps)
    }
    fn examples() -> Vec<Self> {
        vec![RmsNormFwd { rows: 7, dim: 9, eps: rmsnorm::RMS_EPS }]
    }
}

impl OpDef for RmsNormBwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let n = self.rows * self.dim;
        vec![BindingSpec::rw(n), BindingSpec::rd(n), BindingSpec::rd(n), BindingSpec::rd(self.rows)]
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("ROWS", u(self.rows)), ("DIM", u(self.dim))];
        KernelCall::new("rmsnorm", "rmsnorm_bwd", consts, grid_1d(self.rows))
    }
    /// Per row (one invocation): dy . y (2D loads, 2D FLOPs), the mean and rstd (1 FLOP, 1
    /// load), then per element dy, y and dx loaded, 4 FLOPs, dx stored.
    fn cost(&self) -> Cost {
        let (r, d) = (n64(self.rows), n64(self.dim));
        Cost::elems(r * (6 * d + 1), r * (5 * d + 1), r * d)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        rmsnorm::rmsnorm_bwd(&mut outs[0], ins[0].f(), ins[1].f(), ins[2].f(), self.dim)
    }
    fn examples() -> Vec<Self> {
        vec![RmsNormBwd { rows: 7, dim: 9 }]
    }
}

impl OpDef for Rope {
    fn bindings(&self) -> Vec<BindingSpec> {
        let n = self.rows * self.heads * self.head_dim;
        // The forward overwrites `out`; the inverse (the backward) accumulates into it.
        let out = BindingSpec::written(n, !self.inverse);
        vec![out, BindingSpec::rd(n), BindingSpec::rd(self.seq_len * self.head_dim)]
    }
    fn check(&self) -> Result<(), String> {
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("rope needs an even head_dim, got {}", self.head_dim));
        }
        Ok(())
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![
            ("ROWS", u(self.rows)),
            ("HEADS", u(self.heads)),
            ("HEAD_DIM", u(self.head_dim)),
            ("SEQ_LEN", u(self.seq_len)),
            ("INVERSE", flag(self.inverse)),
        ];
        KernelCall::new("rope", "rope", consts, grid_1d(self.rows * self.heads * self.head_dim / 2))
    }
    /// Per pair (x1, x2): cos, sin, x1, x2 loaded, two rotated values stored (4 products, 2
    /// adds); the inverse also loads and adds to both outputs.
    fn cost(&self) -> Cost {
        let pairs = n64(self.rows * self.heads * self.head_dim / 2);
        let inv = u64::from(self.inverse);
        Cost::elems(pairs * (6 + 2 * inv), pairs * (4 + 2 * inv), pairs * 2)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        // The table is f32 data (a plan constant) whatever precision the executor runs in.
        let table: Vec<f32> = ins[1].f().iter().map(|v| v.to_f64() as f32).collect();
        rope::rope(&mut outs[0], ins[0].f(), &table, self.heads, self.head_dim, self.seq_len, self.inverse)
    }
    fn examples() -> Vec<Self> {
        [false, true].map(|inverse| Rope { rows: 7, heads: 3, head_dim: 6, seq_len: 4, inverse }).to_vec()
    }
}
