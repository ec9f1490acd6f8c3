//! The softcapped cross-entropy and the loss sum (`shaders/cross_entropy.wgsl`,
//! `shaders/reduce.wgsl`; `ops::cross_entropy`).
use crate::ops::{cross_entropy, Real};
use crate::plan::op::{flag, grid_1d, n64, tree_flops, uconst as u, BindingSpec, Cost, In, KernelCall, OpDef};

/// `[dlogits, loss | logits, targets]`: per-row loss of `softcap tanh(logits / softcap)`
/// and, with `write_grad`, the gradient of `grad_scale * sum(loss)` (overwritten). Without
/// `write_grad` the kernel never touches `dlogits`, so it binds a one-element placeholder
/// (forward-only plans allocate no logits-sized gradient).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropy {
    pub rows: usize,
    pub vocab: usize,
    pub softcap: f64,
    pub grad_scale: f64,
    pub write_grad: bool,
}

/// `[total | rows]`: `total += scale * sum(rows)` (one workgroup, fixed order).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SumRows {
    pub count: usize,
    pub scale: f64,
}

impl OpDef for CrossEntropy {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { rows, vocab, write_grad, .. } = *self;
        vec![
            // Without `write_grad` the placeholder is never touched, so it keeps its value.
            BindingSpec::written(if write_grad { rows * vocab } else { 1 }, write_grad),
            BindingSpec::out(rows),
            BindingSpec::rd(rows * vocab),
            BindingSpec::ids(rows, vocab),
        ]
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![
            ("ROWS", u(self.rows)),
            ("VOCAB", u(self.vocab)),
            ("SOFTCAP", self.softcap),
            ("GRAD_SCALE", self.grad_scale),
            ("WRITE_GRAD", flag(self.write_grad)),
        ];
        KernelCall::new("cross_entropy", "cross_entropy", consts, grid_1d(self.rows))
    }
    /// Per row: two passes over the logits for the max (softcap 3 FLOPs + max) and the sum
    /// (softcap, subtract, exp, add): 2V loads, 10V FLOPs; the log-sum-exp, the target id and
    /// its logit (2 loads, 6 FLOPs) and the loss (1 store). With `write_grad` a third pass:
    /// V loads, V stores, 10 FLOPs each (tanh, exp, the softmax minus one-hot, the scale, the
    /// tanh derivative).
    fn cost(&self) -> Cost {
        let (rows, v, grad) = (n64(self.rows), n64(self.vocab), u64::from(self.write_grad));
        Cost::elems(rows * (10 * v + 6 + grad * 10 * v), rows * (2 * v + 2 + grad * v), rows * (1 + grad * v))
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        let (dl, loss) = outs.split_at_mut(1);
        let grads = if self.write_grad { Some(&mut dl[0][..]) } else { None };
        let (logits, targets) = (ins[0].f(), ins[1].u());
        cross_entropy::cross_entropy(grads, &mut loss[0], logits, targets, self.vocab, self.softcap, self.grad_scale)
    }
    fn examples() -> Vec<Self> {
        [true, false]
            .map(|write_grad| CrossEntropy { rows: 3, vocab: 13, softcap: 30.0, grad_scale: 0.25, write_grad })
            .to_vec()
    }
}

impl OpDef for SumRows {
    fn bindings(&self) -> Vec<BindingSpec> {
        vec![BindingSpec::rw(1), BindingSpec::rd(self.count)]
    }
    fn kernel(&self) -> KernelCall {
        KernelCall::new("reduce", "sum_rows", vec![("COUNT", u(self.count)), ("SCALE", self.scale)], [1, 1, 1])
    }
    /// One 256-lane workgroup: every row loaded and added, the tree, then `total +=` scaled
    /// (1 load, 1 store, 2 FLOPs).
    fn cost(&self) -> Cost {
        let c = n64(self.count);
        Cost::elems(c + tree_flops(256) + 2, c + 1, 1)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        cross_entropy::loss_sum(&mut outs[0][0], ins[0].f(), self.scale)
    }
    fn examples() -> Vec<Self> {
        vec![SumRows { count: 300, scale: 0.5 }]
    }
}
