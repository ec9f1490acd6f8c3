//! Token embedding: a gather forward, a deterministic scatter-add backward.
//!
//! Forward: `out[t, c] = table[ids[t], c]` for t < tokens, c < dim.
//! Backward: `dtable[v, c] += sum over t with ids[t] == v of dout[t, c]`, summed in token
//! order so that the result does not depend on scheduling (the GPU kernel gives one
//! invocation to each channel and walks the tokens in order).
use super::Real;

/// `out[t, :] = table[ids[t], :]`.
pub fn embedding_fwd<T: Real>(out: &mut [T], table: &[T], ids: &[u32], dim: usize) {
    for (t, &id) in ids.iter().enumerate() {
        let row = id as usize * dim;
        out[t * dim..(t + 1) * dim].copy_from_slice(&table[row..row + dim]);
    }
}

/// `dtable[ids[t], :] += dout[t, :]`, in token order.
pub fn embedding_bwd<T: Real>(dtable: &mut [T], dout: &[T], ids: &[u32], dim: usize) {
    for (t, &id) in ids.iter().enumerate() {
        let row = id as usize * dim;
        for c in 0..dim {
            dtable[row + c] += dout[t * dim + c];
        }
    }
}
