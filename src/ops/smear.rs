//! SmearGate: a learned per-channel blend of each token with the previous one.
//!
//! Rows of `dim` values (tokens) are grouped into sequences of `seq_len` rows: row `t` starts
//! a sequence when `t % seq_len == 0` (the last sequence may be shorter). With the gate
//! `γ ∈ R^dim` and `σ = sigmoid(γ)` per channel,
//!
//! `out_t = (1 − σ) ⊙ x_t + σ ⊙ x_{t−1}`, where `x_{t−1} = 0` when row t starts a sequence.
//!
//! The backward of x and the gradient of γ:
//! - `dx_t += (1 − σ) ⊙ dout_t + σ ⊙ dout_{t+1}` (the second term only when row t+1 exists
//!   and is in the same sequence),
//! - `dγ_c += σ_c (1 − σ_c) Σ_t dout_{t,c} (x_{t−1,c} − x_{t,c})` (same convention for
//!   `x_{t−1}`), a per-channel reduction summed over t in row order.
//!
//! The forward overwrites `out`; both backwards accumulate (`+=`).
use super::Real;

/// `1 / (1 + exp(−g))`, written as the kernels compute it.
pub fn sigmoid<T: Real>(g: T) -> T {
    T::one() / (T::one() + (-g).exp())
}

/// Whether row `t` has a predecessor in its sequence.
fn has_prev(t: usize, seq_len: usize) -> bool {
    !t.is_multiple_of(seq_len)
}

/// `out_t = (1 − σ(γ)) ⊙ x_t + σ(γ) ⊙ x_{t−1}` with `x_{−1} = 0` at every sequence start
/// (overwrites `out`). `x`, `out`: `[rows, dim]`; `gate`: `[dim]`.
pub fn smear_fwd<T: Real>(out: &mut [T], x: &[T], gate: &[T], dim: usize, seq_len: usize) {
    let sig: Vec<T> = gate.iter().map(|&g| sigmoid(g)).collect();
    for (t, orow) in out.chunks_mut(dim).enumerate() {
        let xrow = &x[t * dim..(t + 1) * dim];
        let prev = has_prev(t, seq_len).then(|| &x[(t - 1) * dim..t * dim]);
        for c in 0..dim {
            let p = prev.map_or(T::zero(), |p| p[c]);
            orow[c] = (T::one() - sig[c]) * xrow[c] + sig[c] * p;
        }
    }
}

/// `dx_t += (1 − σ(γ)) ⊙ dout_t + σ(γ) ⊙ dout_{t+1}`, the second term only when row t+1
/// exists and is in the same sequence as row t. `dx`, `dout`: `[rows, dim]`.
pub fn smear_bwd<T: Real>(dx: &mut [T], dout: &[T], gate: &[T], dim: usize, seq_len: usize) {
    let rows = dout.len() / dim;
    let sig: Vec<T> = gate.iter().map(|&g| sigmoid(g)).collect();
    for (t, drow) in dx.chunks_mut(dim).enumerate() {
        let grow = &dout[t * dim..(t + 1) * dim];
        let next = (t + 1 < rows && has_prev(t + 1, seq_len)).then(|| &dout[(t + 1) * dim..(t + 2) * dim]);
        for c in 0..dim {
            let mut v = (T::one() - sig[c]) * grow[c];
            if let Some(n) = next {
                v += sig[c] * n[c];
            }
            drow[c] += v;
        }
    }
}

/// The gate's gradient: `dγ_c += σ_c (1 − σ_c) Σ_t dout_{t,c} (x_{t−1,c} − x_{t,c})`, with
/// `x_{t−1} = 0` at sequence starts; the sum runs over t in order, then is scaled.
/// `dgate`: `[dim]`; `dout`, `x`: `[rows, dim]`.
pub fn smear_grad<T: Real>(dgate: &mut [T], dout: &[T], x: &[T], gate: &[T], dim: usize, seq_len: usize) {
    let rows = dout.len() / dim;
    let mut acc = vec![T::zero(); dim];
    for t in 0..rows {
        let grow = &dout[t * dim..(t + 1) * dim];
        let xrow = &x[t * dim..(t + 1) * dim];
        let prev = has_prev(t, seq_len).then(|| &x[(t - 1) * dim..t * dim]);
        for c in 0..dim {
            let p = prev.map_or(T::zero(), |p| p[c]);
            acc[c] += grow[c] * (p - xrow[c]);
        }
    }
    for c in 0..dim {
        let s = sigmoid(gate[c]);
        dgate[c] += s * (T::one() - s) * acc[c];
    }
}
