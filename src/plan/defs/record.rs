//! The record recipe's SmearGate (`shaders/smear.wgsl`, `ops::smear`) and XSA
//! (`shaders/xsa.wgsl`, `ops::xsa`).
use crate::ops::xsa::XsaShape;
use crate::ops::{smear, xsa, Real};
use crate::plan::op::{grid_1d, n64, tree_flops, uconst as u, BindingSpec, Cost, In, KernelCall, OpDef, MAX_GRID_DIM};

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

/// The elements `rows dim`, and those whose row has a predecessor in its sequence (`rows -
/// ceil(rows / seq_len)` rows): smear loads the neighbouring row only for those.
fn smear_counts(rows: usize, dim: usize, seq_len: usize) -> (u64, u64) {
    (n64(rows * dim), n64((rows - rows.div_ceil(seq_len)) * dim))
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
/// The forward overwrites `out`; the backward accumulates into `dx`.
fn elementwise_bindings(rows: usize, dim: usize, overwrites: bool) -> Vec<BindingSpec> {
    vec![BindingSpec::written(rows * dim, overwrites), BindingSpec::rd(rows * dim), BindingSpec::rd(dim)]
}

/// Rows 7: two whole sequences of 3 and a partial one.
const SMEAR_EXAMPLE: (usize, usize, usize) = (7, 5, 3);

impl OpDef for SmearFwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        elementwise_bindings(self.rows, self.dim, true)
    }
    fn check(&self) -> Result<(), String> {
        check_smear(self.dim, self.seq_len)
    }
    fn kernel(&self) -> KernelCall {
        smear_call("smear_fwd", self.rows, self.dim, self.seq_len, grid_1d(self.rows * self.dim))
    }
    /// Per element: the gate and x loaded, and the previous row's x where the row has one;
    /// the sigmoid (exp, add, div) and the blend (4 FLOPs); one store.
    fn cost(&self) -> Cost {
        let (n, linked) = smear_counts(self.rows, self.dim, self.seq_len);
        Cost::elems(7 * n, 2 * n + linked, n)
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
        elementwise_bindings(self.rows, self.dim, false)
    }
    fn check(&self) -> Result<(), String> {
        check_smear(self.dim, self.seq_len)
    }
    fn kernel(&self) -> KernelCall {
        smear_call("smear_bwd", self.rows, self.dim, self.seq_len, grid_1d(self.rows * self.dim))
    }
    /// Per element: the gate, dout and dx loaded, the sigmoid and `(1 - s) dout` (5 FLOPs),
    /// the accumulation (1); where the next row is in the same sequence, its dout loaded and
    /// added in (1 load, 2 FLOPs); one store.
    fn cost(&self) -> Cost {
        let (n, linked) = smear_counts(self.rows, self.dim, self.seq_len);
        Cost::elems(6 * n + 2 * linked, 3 * n + linked, n)
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
    /// Per element: dout and x loaded (and the previous row's x where there is one), a
    /// subtraction and a multiply-add. Per channel (one 64-lane workgroup): the tree, then the
    /// gate and dgate loaded, 7 FLOPs, dgate stored.
    fn cost(&self) -> Cost {
        let (n, linked) = smear_counts(self.rows, self.dim, self.seq_len);
        let d = n64(self.dim);
        Cost::elems(3 * n + d * (tree_flops(64) + 7), 2 * n + linked + 2 * d, d)
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
        vec![BindingSpec::out(ny), BindingSpec::rd(ny), BindingSpec::rd(nv)]
    }
    fn check(&self) -> Result<(), String> {
        check_xsa(self.heads, self.kv_heads, self.head_dim)
    }
    fn kernel(&self) -> KernelCall {
        let Self { rows, heads, kv_heads, head_dim } = *self;
        xsa_call("xsa_fwd", rows, heads, kv_heads, head_dim, rows * heads)
    }
    /// Per (row, head), one invocation: |v|^2 loading v twice per element (2D loads, 2D
    /// FLOPs), sqrt and max, y . vhat (2D loads, 3D FLOPs), then out = y - b vhat loading y
    /// and v again (2D loads, 3D FLOPs, D stores).
    fn cost(&self) -> Cost {
        let (inv, d) = (n64(self.rows * self.heads), n64(self.head_dim));
        Cost::elems(inv * (8 * d + 2), inv * 6 * d, inv * d)
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
    /// Per (row, group), one invocation, with G heads per group: |v|^2 (2D loads, 2D + 2
    /// FLOPs); per head the two dots (3D loads, 5D FLOPs) and the dy accumulation and gv sum
    /// (4D loads, 8D FLOPs, D stores); then, on the path with |v| >= EPS (the common one),
    /// gv . vhat (D loads, 3D FLOPs) and the dv accumulation (2D loads, 5D FLOPs, D stores).
    fn cost(&self) -> Cost {
        let (inv, d) = (n64(self.rows * self.kv_heads), n64(self.head_dim));
        let g = n64(self.heads / self.kv_heads);
        Cost::elems(inv * (10 * d + 2 + 13 * d * g), inv * (5 * d + 7 * d * g), inv * (d + d * g))
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
