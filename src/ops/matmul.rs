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
