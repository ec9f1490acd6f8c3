//! RMSNorm (`shaders/rmsnorm.wgsl`, `ops::rmsnorm`) and rotary embeddings
//! (`shaders/rope.wgsl`, `ops::rope`).
use crate::ops::{rmsnorm, rope, Real};
use crate::plan::op::{flag, grid_1d, uconst as u, BindingSpec, In, KernelCall, OpDef};

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
        vec![BindingSpec::rw(n), BindingSpec::rw(self.rows), BindingSpec::rd(n)]
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("ROWS", u(self.rows)), ("DIM", u(self.dim)), ("EPS", self.eps)];
        KernelCall::new("rmsnorm", "rmsnorm_fwd", consts, grid_1d(self.rows))
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
        vec![BindingSpec::rw(n), BindingSpec::rd(n), BindingSpec::rd(self.seq_len * self.head_dim)]
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
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        // The table is f32 data (a plan constant) whatever precision the executor runs in.
        let table: Vec<f32> = ins[1].f().iter().map(|v| v.to_f64() as f32).collect();
        rope::rope(&mut outs[0], ins[0].f(), &table, self.heads, self.head_dim, self.seq_len, self.inverse)
    }
    fn examples() -> Vec<Self> {
        [false, true].map(|inverse| Rope { rows: 7, heads: 3, head_dim: 6, seq_len: 4, inverse }).to_vec()
    }
}
