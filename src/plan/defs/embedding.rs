//! Token-table lookups (`shaders/embedding.wgsl`, `ops::embedding`).
use crate::ops::{embedding, Real};
use crate::plan::op::{grid_1d, n64, uconst as u, BindingSpec, Cost, In, KernelCall, OpDef};

/// `[out | table, ids]`: `out[t] = table[ids[t]]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingFwd {
    pub tokens: usize,
    pub dim: usize,
    pub vocab: usize,
}

/// `[dtable | dout, ids]`: `dtable[ids[t]] += dout[t]` (one invocation per channel, so the
/// sum over tokens runs in token order).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingBwd {
    pub tokens: usize,
    pub dim: usize,
    pub vocab: usize,
}

impl OpDef for EmbeddingFwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { tokens, dim, vocab } = *self;
        vec![BindingSpec::rw(tokens * dim), BindingSpec::rd(vocab * dim), BindingSpec::ids(tokens, vocab)]
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("TOKENS", u(self.tokens)), ("DIM", u(self.dim))];
        KernelCall::new("embedding", "embedding_fwd", consts, grid_1d(self.tokens * self.dim))
    }
    /// Per element of out: its token id and the table value loaded, one store; no arithmetic.
    fn cost(&self) -> Cost {
        let n = n64(self.tokens * self.dim);
        Cost::elems(0, 2 * n, n)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        embedding::embedding_fwd(&mut outs[0], ins[0].f(), ins[1].u(), self.dim)
    }
    fn examples() -> Vec<Self> {
        vec![EmbeddingFwd { tokens: 9, dim: 5, vocab: 11 }]
    }
}

impl OpDef for EmbeddingBwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { tokens, dim, vocab } = *self;
        vec![BindingSpec::rw(vocab * dim), BindingSpec::rd(tokens * dim), BindingSpec::ids(tokens, vocab)]
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("TOKENS", u(self.tokens)), ("DIM", u(self.dim))];
        KernelCall::new("embedding", "embedding_bwd", consts, grid_1d(self.dim))
    }
    /// Per (channel, token): the id, the table gradient and dout loaded, one add, one store
    /// (DIM invocations walk every token).
    fn cost(&self) -> Cost {
        let n = n64(self.tokens * self.dim);
        Cost::elems(n, 3 * n, n)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        embedding::embedding_bwd(&mut outs[0], ins[0].f(), ins[1].u(), self.dim)
    }
    fn examples() -> Vec<Self> {
        vec![EmbeddingBwd { tokens: 9, dim: 5, vocab: 11 }]
    }
}
