//! The record recipe's SmearGate (`shaders/smear.wgsl`, `ops::smear`) and XSA
//! (`shaders/xsa.wgsl`, `ops::xsa`).
use crate::ops::xsa::XsaShape;
use crate::ops::{smear, xsa, Real};
use crate::plan::op::{grid_1d, uconst as u, BindingSpec, In, KernelCall, OpDef, MAX_GRID_DIM};

/// SmearGate forward `[out | x, gate]`: `out_t = (1 - sig(gate)) x_t + sig(gate) x_{t-1}`,
/// `x_{t-1} = 0` where `t % seq_len == 0` (see `ops::smear`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmearFwd {
    pub rows: usize,
    pub dim: usize,
    pub seq_len: usize,
}

/// `[dx | dout, gate]` (accumulates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmearBwd {
    pub rows: usize,
    pub dim: usize,
    pub seq_len: usize,
}

/// `[dgate | dout, x, gate]` (accumulates; one workgroup per channel).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmearGrad {
    pub rows: usize,
    pub dim: usize,
    pub seq_len: usize,
}

/// XSA forward `[out | y, v]`: each head of `y` minus its component along its KV group's
/// normalised `v` (see `ops::xsa`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct XsaFwd {
    pub rows: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// `[dy, dv | dout, y, v]` (accumulates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct XsaBwd {
    pub rows: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

fn check_smear(dim: usize, seq_len: usize) -> Result<(), String> {
    if seq_len == 0 || dim == 0 {
        return Err(format!("smear needs seq_len >= 1 and dim >= 1, got {seq_len} and {dim}"));
    }
    if dim > MAX_GRID_DIM as usize {
        return Err(format!("smear_grad runs one workgroup per channel: dim {dim} > {MAX_GRID_DIM}"));
    }
    Ok(())
}

fn smear_call(entry: &'static str, rows: usize, dim: usize, seq_len: usize, grid: [u32; 3]) -> KernelCall {
    KernelCall::new("smear", entry, vec![("ROWS", u(rows)), ("DIM", u(dim)), ("SEQ_LEN", u(seq_len))], grid)
}

/// `[out | x, gate]` of the forward and `[dx | dout, gate]` of the backward.
fn elementwise_bindings(rows: usize, dim: usize) -> Vec<BindingSpec> {
    vec![BindingSpec::rw(rows * dim), BindingSpec::rd(rows * dim), BindingSpec::rd(dim)]
}

/// Rows 7: two whole sequences of 3 and a partial one.
const SMEAR_EXAMPLE: (usize, usize, usize) = (7, 5, 3);

impl OpDef for SmearFwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        elementwise_bindings(self.rows, self.dim)
    }
    fn check(&self) -> Result<(), String> {
        check_smear(self.dim, self.seq_len)
    }
    fn kernel(&self) -> KernelCall {
        smear_call("smear_fwd", self.rows, self.dim, self.seq_len, grid_1d(self.rows * self.dim))
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        smear::smear_fwd(&mut outs[0], ins[0].f(), ins[1].f(), self.dim, self.seq_len)
    }
    fn examples() -> Vec<Self> {
        let (rows, dim, seq_len) = SMEAR_EXAMPLE;
        vec![SmearFwd { rows, dim, seq_len }]
    }
}

impl OpDef for SmearBwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        elementwise_bindings(self.rows, self.dim)
    }
    fn check(&self) -> Result<(), String> {
        check_smear(self.dim, self.seq_len)
    }
    fn kernel(&self) -> KernelCall {
        smear_call("smear_bwd", self.rows, self.dim, self.seq_len, grid_1d(self.rows * self.dim))
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        smear::smear_bwd(&mut outs[0], ins[0].f(), ins[1].f(), self.dim, self.seq_len)
    }
    fn examples() -> Vec<Self> {
        let (rows, dim, seq_len) = SMEAR_EXAMPLE;
        vec![SmearBwd { rows, dim, seq_len }]
    }
}

impl OpDef for SmearGrad {
    fn bindings(&self) -> Vec<BindingSpec> {
        let n = self.rows * self.dim;
        vec![BindingSpec::rw(self.dim), BindingSpec::rd(n), BindingSpec::rd(n), BindingSpec::rd(self.dim)]
    }
    fn check(&self) -> Result<(), String> {
        check_smear(self.dim, self.seq_len)
    }
    fn kernel(&self) -> KernelCall {
        let Self { rows, dim, seq_len } = *self;
        smear_call("smear_grad", rows, dim, seq_len, [dim as u32, 1, 1])
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        smear::smear_grad(&mut outs[0], ins[0].f(), ins[1].f(), ins[2].f(), self.dim, self.seq_len)
    }
    fn examples() -> Vec<Self> {
        let (rows, dim, seq_len) = SMEAR_EXAMPLE;
        vec![SmearGrad { rows, dim, seq_len }]
    }
}

fn check_xsa(heads: usize, kv_heads: usize, head_dim: usize) -> Result<(), String> {
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(format!("xsa: heads {heads} is not a multiple of kv_heads {kv_heads}"));
    }
    if head_dim == 0 || head_dim > 128 {
        return Err(format!("xsa: head_dim {head_dim} is outside the kernel's 1..=128"));
    }
    Ok(())
}

fn xsa_call(entry: &'static str, rows: usize, heads: usize, kv_heads: usize, head_dim: usize, n: usize) -> KernelCall {
    let consts = vec![("ROWS", u(rows)), ("HEADS", u(heads)), ("KV_HEADS", u(kv_heads)), ("HEAD_DIM", u(head_dim))];
    KernelCall::new("xsa", entry, consts, grid_1d(n))
}

impl OpDef for XsaFwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { rows, heads, kv_heads, head_dim } = *self;
        let (ny, nv) = (rows * heads * head_dim, rows * kv_heads * head_dim);
        vec![BindingSpec::rw(ny), BindingSpec::rd(ny), BindingSpec::rd(nv)]
    }
    fn check(&self) -> Result<(), String> {
        check_xsa(self.heads, self.kv_heads, self.head_dim)
    }
    fn kernel(&self) -> KernelCall {
        let Self { rows, heads, kv_heads, head_dim } = *self;
        xsa_call("xsa_fwd", rows, heads, kv_heads, head_dim, rows * heads)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let s = XsaShape { heads: self.heads, kv_heads: self.kv_heads, head_dim: self.head_dim };
        xsa::xsa_fwd(&mut outs[0], ins[0].f(), ins[1].f(), s)
    }
    fn examples() -> Vec<Self> {
        vec![XsaFwd { rows: 5, heads: 4, kv_heads: 2, head_dim: 6 }]
    }
}

impl OpDef for XsaBwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { rows, heads, kv_heads, head_dim } = *self;
        let (ny, nv) = (rows * heads * head_dim, rows * kv_heads * head_dim);
        let (rw, rd) = (BindingSpec::rw, BindingSpec::rd);
        vec![rw(ny), rw(nv), rd(ny), rd(ny), rd(nv)]
    }
    fn check(&self) -> Result<(), String> {
        check_xsa(self.heads, self.kv_heads, self.head_dim)
    }
    fn kernel(&self) -> KernelCall {
        let Self { rows, heads, kv_heads, head_dim } = *self;
        xsa_call("xsa_bwd", rows, heads, kv_heads, head_dim, rows * kv_heads)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let s = XsaShape { heads: self.heads, kv_heads: self.kv_heads, head_dim: self.head_dim };
        let (dy, dv) = outs.split_at_mut(1);
        xsa::xsa_bwd(&mut dy[0], &mut dv[0], ins[0].f(), ins[1].f(), ins[2].f(), s)
    }
    fn examples() -> Vec<Self> {
        vec![XsaBwd { rows: 5, heads: 4, kv_heads: 2, head_dim: 6 }]
    }
}
