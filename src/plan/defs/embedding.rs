//! Token-table lookups (`shaders/embedding.wgsl`, `ops::embedding`).
use crate::ops::{embedding, Real};
use crate::plan::op::{check_grid_dim, grid_1d, n64, uconst as u, BindingSpec, Cost, In, KernelCall, OpDef, WG_1D};

/// `[out | table, ids]`: `out[t] = table[ids[t]]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingFwd {
    pub tokens: usize,
    pub dim: usize,
    pub vocab: usize,
}

/// `[dtable | dout, index]`: `dtable[ids[t]] += dout[t]`, from the host's
/// [`id_index`](embedding::id_index) of the ids: one workgroup per (table row, 64 columns),
/// each lane summing its column over the row's positions in token order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingBwd {
    pub tokens: usize,
    pub dim: usize,
    pub vocab: usize,
}

impl OpDef for EmbeddingFwd {
    fn bindings(&self) -> Vec<BindingSpec> {
        let Self { tokens, dim, vocab } = *self;
        vec![BindingSpec::out(tokens * dim), BindingSpec::rd(vocab * dim), BindingSpec::ids(tokens, vocab)]
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
        vec![BindingSpec::rw(vocab * dim), BindingSpec::rd(tokens * dim), BindingSpec::id_index(tokens, vocab)]
    }
    fn check(&self) -> Result<(), String> {
        check_grid_dim("embedding_bwd (one row of workgroups per table row)", self.vocab)
    }
    fn kernel(&self) -> KernelCall {
        let consts = vec![("TOKENS", u(self.tokens)), ("DIM", u(self.dim)), ("VOCAB", u(self.vocab))];
        let col_blocks = self.dim.div_ceil(WG_1D as usize) as u32;
        KernelCall::new("embedding", "embedding_bwd", consts, [col_blocks, self.vocab as u32, 1])
    }
    /// Per (row, column): the row's two offsets, then dtable loaded, one add, one store. Per
    /// (token, column): the token's position and dout loaded, one add (every token is in
    /// exactly one row's run).
    fn cost(&self) -> Cost {
        let (n, rows) = (n64(self.tokens * self.dim), n64(self.vocab * self.dim));
        Cost::elems(n + rows, 2 * n + 3 * rows, rows)
    }
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
        embedding::embedding_bwd_indexed(&mut outs[0], ins[0].f(), ins[1].u(), self.vocab, self.dim)
    }
    fn examples() -> Vec<Self> {
        // Columns past one 64-wide block; more tokens than rows, so ids repeat.
        vec![EmbeddingBwd { tokens: 9, dim: 5, vocab: 11 }, EmbeddingBwd { tokens: 200, dim: 70, vocab: 7 }]
    }
}
