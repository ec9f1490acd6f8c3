//! Matrix products in the three layouts training needs (row-major storage everywhere).
//!
//! - `Nt`: `C[M,N] = A[M,K] . B[N,K]^T`: a linear layer's forward (`y = x W^T`) and the
//!   input gradient of a tied head;
//! - `Nn`: `C[M,N] = A[M,K] . B[K,N]`: a linear layer's input gradient (`dx = dy W`);
//! - `Tn`: `C[M,N] = A[K,M]^T . B[K,N]`: a linear layer's weight gradient (`dW = dy^T x`).
//!
//! With `accumulate` the product is added to C, otherwise it overwrites C.
use super::Real;
use serde::{Deserialize, Serialize};

/// Which operand is stored transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Layout {
    /// `A[M,K] . B[N,K]^T`.
    Nt,
    /// `A[M,K] . B[K,N]`.
    Nn,
    /// `A[K,M]^T . B[K,N]`.
    Tn,
}

impl Layout {
    /// Whether A is stored as `[K, M]`.
    pub fn trans_a(self) -> bool {
        self == Layout::Tn
    }
    /// Whether B is stored as `[N, K]`.
    pub fn trans_b(self) -> bool {
        self == Layout::Nt
    }
    /// The short name used in kernel labels.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nt => "nt",
            Layout::Nn => "nn",
            Layout::Tn => "tn",
        }
    }
}

/// `C = op(A) . op(B)` (or `C +=` with `accumulate`), summing over k in order.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(c: &mut [T], a: &[T], b: &[T], m: usize, n: usize, k: usize, layout: Layout, accumulate: bool) {
    let (ta, tb) = (layout.trans_a(), layout.trans_b());
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::zero();
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                acc += av * bv;
            }
            let dst = &mut c[i * n + j];
            *dst = if accumulate { *dst + acc } else { acc };
        }
    }
}

/// `batch` independent products, each operand strided by its matrix size:
/// `C[z] = alpha op(A[z]) op(B[z])` (or `C[z] += ...` with `accumulate`), summing over k in
/// order and scaling the sum once.
#[allow(clippy::too_many_arguments)]
pub fn matmul_batched<T: Real>(
    c: &mut [T],
    a: &[T],
    b: &[T],
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    layout: Layout,
    alpha: f64,
    accumulate: bool,
) {
    let alpha = T::from_f64(alpha as f32 as f64);
    let mut prod = vec![T::zero(); m * n];
    for z in 0..batch {
        let (az, bz) = (&a[z * m * k..(z + 1) * m * k], &b[z * k * n..(z + 1) * k * n]);
        matmul(&mut prod, az, bz, m, n, k, layout, false);
        for (dst, &p) in c[z * m * n..(z + 1) * m * n].iter_mut().zip(&prod) {
            *dst = if accumulate { *dst + alpha * p } else { alpha * p };
        }
    }
}

/// The partial products of a split-K product: `k` is cut into ranges of `k_split` (the last
/// one ragged), `splits = ceil(k / k_split)` of them, and for each of the `batch` matrices
/// `z` and each split `s`, `P[z, s] = op(A[z]) op(B[z])` summed over `k` in
/// `[s k_split, min(k, (s + 1) k_split))` in order (`p` is `[batch, splits, m, n]`,
/// overwritten). This is the sum `matmul.wgsl` computes per split; [`split_sum`] adds them.
#[allow(clippy::too_many_arguments)]
pub fn matmul_partial<T: Real>(
    p: &mut [T],
    a: &[T],
    b: &[T],
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    k_split: usize,
    layout: Layout,
) {
    let (ta, tb) = (layout.trans_a(), layout.trans_b());
    let splits = k.div_ceil(k_split);
    for z in 0..batch {
        let (az, bz) = (&a[z * m * k..(z + 1) * m * k], &b[z * k * n..(z + 1) * k * n]);
        for s in 0..splits {
            let ks = s * k_split..k.min((s + 1) * k_split);
            let out = &mut p[(z * splits + s) * m * n..(z * splits + s + 1) * m * n];
            for i in 0..m {
                for j in 0..n {
                    let mut acc = T::zero();
                    for q in ks.clone() {
                        let av = if ta { az[q * m + i] } else { az[i * k + q] };
                        let bv = if tb { bz[j * k + q] } else { bz[q * n + j] };
                        acc += av * bv;
                    }
                    out[i * n + j] = acc;
                }
            }
        }
    }
}

/// The combine of a split-K product: `C[z] (= or +=) alpha (P[z, 0] + ... + P[z, splits-1])`,
/// `p` `[batch, splits, mn]`, `c` `[batch, mn]`, each sum from zero in split order.
pub fn split_sum<T: Real>(c: &mut [T], p: &[T], batch: usize, mn: usize, splits: usize, alpha: f64, accumulate: bool) {
    let alpha = T::from_f64(alpha as f32 as f64);
    for z in 0..batch {
        for i in 0..mn {
            let mut sum = T::zero();
            for s in 0..splits {
                sum += p[(z * splits + s) * mn + i];
            }
            let dst = &mut c[z * mn + i];
            *dst = if accumulate { *dst + alpha * sum } else { alpha * sum };
        }
    }
}
