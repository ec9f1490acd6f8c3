//! Muon: momentum, Newton-Schulz orthogonalisation (NS5) and a shape-scaled, decoupled
//! weight-decayed update of 2-D matrices (record spec section 5).
//!
//! Per matrix `W [rows, cols]` with gradient `G`:
//! 1. `B <- mu B + G` (fp32 buffer, no dampening); Nesterov `U = G + mu B`;
//! 2. `X = U / (||U||_F + 1e-7)`, transposed when `rows > cols` so that `X` is `[a, b]` with
//!    `a <= b`;
//! 3. five times: `A = X X^T`, `X <- a X + (b A + c A A) X`, with
//!    `(a, b, c) = (3.4445, -4.7750, 2.0315)`; transposed back: `O`;
//! 4. `W <- W (1 - lr wd) - lr sqrt(max(1, rows / cols)) O`.
//!
//! The record casts `U` to bf16 before NS5; this port runs it in f32 (more precise, and the
//! difference is far below the quintic iteration's own distance from an exact orthogonal
//! factor, see `tests/optim.rs`).
//!
//! On the GPU the matrices of one `[a, b]` shape are stacked (`[count, a, b]`) and the
//! iterations run as batched matmuls (see `src/optim.rs`). This file holds the CPU references
//! of the stack kernels ([`muon_momentum`], [`muon_sum_sq`] and [`muon_normalize`],
//! [`scale_copy`],
//! [`muon_apply`]) and a whole-update reference written straight from the spec
//! ([`muon_update`], with [`newton_schulz5`]), which the composition is tested against.
use super::Real;

/// The quintic Newton-Schulz coefficients `(a, b, c)`.
pub const NS_COEFFS: (f32, f32, f32) = (3.4445, -4.7750, 2.0315);
/// The number of Newton-Schulz iterations of the record.
pub const NS_STEPS: usize = 5;
/// Added to the Frobenius norm before dividing by it.
pub const NORM_EPS: f32 = 1e-7;

/// One step's Muon hyperparameters, as the kernels' uniform holds them (8 f32, the size of
/// every hyperparameter block, [`crate::plan::op::HYPER_LEN`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MuonHyper {
    /// The scheduled learning rate.
    pub lr: f32,
    /// The momentum `mu` (warmed up, see [`momentum_warmup`]).
    pub momentum: f32,
    /// Decoupled weight decay: `W <- W (1 - lr wd)`.
    pub weight_decay: f32,
    pub _pad: [f32; 5],
}

impl MuonHyper {
    pub fn new(lr: f32, momentum: f32, weight_decay: f32) -> Self {
        MuonHyper { lr, momentum, weight_decay, _pad: [0.0; 5] }
    }
}

/// The record's momentum warmup: `0.92 + 0.07 min(step / 1500, 1)`, from 0.92 to 0.99.
pub fn momentum_warmup(step: usize) -> f32 {
    0.92 + 0.07 * (step as f32 / 1500.0).min(1.0)
}

/// The `[a, b]` shape a `[rows, cols]` matrix has in a stack: transposed when `rows > cols`.
pub fn stack_shape(rows: usize, cols: usize) -> (usize, usize) {
    if rows <= cols {
        (rows, cols)
    } else {
        (cols, rows)
    }
}

/// `sqrt(max(1, rows / cols))`: the update's scale by shape.
pub fn shape_scale(rows: usize, cols: usize) -> f64 {
    (rows as f64 / cols as f64).max(1.0).sqrt()
}

/// The offset in a stack of element `(r, c)` of the `[rows, cols]` matrix stored at `index`.
fn stacked(index: usize, rows: usize, cols: usize, r: usize, c: usize) -> usize {
    let base = index * rows * cols;
    if rows <= cols {
        base + r * cols + c
    } else {
        base + c * rows + r
    }
}

/// `buf <- mu buf + grad`, and `U = grad + mu buf` written into matrix `index` of `stack`
/// (transposed when `rows > cols`); the other matrices of the stack are left as they are.
pub fn muon_momentum<T: Real>(
    buf: &mut [T],
    stack: &mut [T],
    grad: &[T],
    rows: usize,
    cols: usize,
    index: usize,
    momentum: f32,
) {
    let mu = T::from_f64(momentum as f64);
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            let b = mu * buf[i] + grad[i];
            buf[i] = b;
            stack[stacked(index, rows, cols, r, c)] = grad[i] + mu * b;
        }
    }
}

/// Elements of a stacked matrix per partial sum of squares, and per workgroup of the
/// normalization (256 lanes, 16 elements each, in `shaders/muon.wgsl`): each normalization
/// workgroup re-adds its matrix's partials, so the chunk is large enough that those
/// `(size / chunk)^2` extra loads stay a few percent of the matrix's own.
pub const MUON_CHUNK: usize = 4096;

/// The partial sums of squares of one `[a, b]` matrix of a stack.
pub fn muon_chunks(a: usize, b: usize) -> usize {
    (a * b).div_ceil(MUON_CHUNK)
}

/// `partials [count, muon_chunks(a, b)]`: per matrix of the stack, the sum of squares of each
/// [`MUON_CHUNK`] chunk of its elements (the last chunk may be shorter). Overwrites.
pub fn muon_sum_sq<T: Real>(partials: &mut [T], stack: &[T], a: usize, b: usize) {
    let chunks = muon_chunks(a, b);
    for (x, part) in stack.chunks(a * b).zip(partials.chunks_mut(chunks)) {
        for (chunk, p) in x.chunks(MUON_CHUNK).zip(part.iter_mut()) {
            let mut ss = T::zero();
            for &v in chunk {
                ss += v * v;
            }
            *p = ss;
        }
    }
}

/// Each `[a, b]` matrix of the stack divided by its Frobenius norm plus [`NORM_EPS`], the
/// norm's square being the sum, in order, of the matrix's partials from [`muon_sum_sq`].
pub fn muon_normalize<T: Real>(stack: &mut [T], partials: &[T], a: usize, b: usize) {
    let chunks = muon_chunks(a, b);
    for (x, part) in stack.chunks_mut(a * b).zip(partials.chunks(chunks)) {
        let mut ss = T::zero();
        for &p in part {
            ss += p;
        }
        let denom = ss.sqrt() + T::from_f64(NORM_EPS as f64);
        for v in x.iter_mut() {
            *v = *v / denom;
        }
    }
}

/// `out = alpha x`.
pub fn scale_copy<T: Real>(out: &mut [T], x: &[T], alpha: f64) {
    let alpha = T::from_f64(alpha as f32 as f64);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = alpha * v;
    }
}

/// `W <- W (1 - lr wd) - lr shape_scale O`, with `O` matrix `index` of the stack (stored
/// transposed when `rows > cols`).
#[allow(clippy::too_many_arguments)]
pub fn muon_apply<T: Real>(
    param: &mut [T],
    stack: &[T],
    rows: usize,
    cols: usize,
    index: usize,
    shape_scale: f64,
    lr: f32,
    weight_decay: f32,
) {
    let lr = T::from_f64(lr as f64);
    let decay = T::one() - lr * T::from_f64(weight_decay as f64);
    let step = lr * T::from_f64(shape_scale as f32 as f64);
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            param[i] = param[i] * decay - step * stack[stacked(index, rows, cols, r, c)];
        }
    }
}

/// `C[m, n] = A B` for row-major `A[m, k]`, `B[k, n]`.
fn mm<T: Real>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut c = vec![T::zero(); m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::zero();
            for p in 0..k {
                acc += a[i * k + p] * b[p * n + j];
            }
            c[i * n + j] = acc;
        }
    }
    c
}

/// The transpose of a row-major `[rows, cols]` matrix.
fn transpose<T: Real>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = vec![T::zero(); x.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = x[r * cols + c];
        }
    }
    t
}

/// NS5 of a row-major `[rows, cols]` matrix `g`: normalised by its Frobenius norm, worked on
/// transposed when `rows > cols`, `steps` quintic iterations, transposed back.
pub fn newton_schulz5<T: Real>(g: &[T], rows: usize, cols: usize, steps: usize) -> Vec<T> {
    let f = |v: f32| T::from_f64(v as f64);
    let (ca, cb, cc) = (f(NS_COEFFS.0), f(NS_COEFFS.1), f(NS_COEFFS.2));
    let transposed = rows > cols;
    let (a, b) = stack_shape(rows, cols);
    let mut x = if transposed { transpose(g, rows, cols) } else { g.to_vec() };
    let norm = x.iter().fold(T::zero(), |s, &v| s + v * v).sqrt();
    let denom = norm + f(NORM_EPS);
    for v in x.iter_mut() {
        *v = *v / denom;
    }
    for _ in 0..steps {
        let xt = transpose(&x, a, b);
        let gram = mm(&x, &xt, a, b, a); // A = X X^T  [a, a]
        let gram2 = mm(&gram, &gram, a, a, a); // A A
        let poly: Vec<T> = gram.iter().zip(&gram2).map(|(&p, &q)| cb * p + cc * q).collect();
        let px = mm(&poly, &x, a, a, b); // (b A + c A A) X
        for (v, &d) in x.iter_mut().zip(&px) {
            *v = ca * *v + d;
        }
    }
    if transposed {
        transpose(&x, a, b)
    } else {
        x
    }
}

/// One whole Muon step of one matrix, straight from the spec: updates `buf` and `param`.
#[allow(clippy::too_many_arguments)]
pub fn muon_update<T: Real>(
    param: &mut [T],
    buf: &mut [T],
    grad: &[T],
    rows: usize,
    cols: usize,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    ns_steps: usize,
) {
    let f = |v: f64| T::from_f64(v);
    let mu = f(momentum as f64);
    for (b, &g) in buf.iter_mut().zip(grad) {
        *b = mu * *b + g;
    }
    let u: Vec<T> = grad.iter().zip(buf.iter()).map(|(&g, &b)| g + mu * b).collect();
    let o = newton_schulz5(&u, rows, cols, ns_steps);
    let scale = f(shape_scale(rows, cols));
    let lr = f(lr as f64);
    for (p, &o) in param.iter_mut().zip(&o) {
        *p *= T::one() - lr * f(weight_decay as f64);
        *p -= lr * (o * scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_layout_transposes_tall_matrices() {
        assert_eq!(stack_shape(12, 8), (8, 12));
        assert_eq!(stack_shape(8, 20), (8, 20));
        // (r, c) = (1, 0) of a 3 x 2 matrix is (0, 1) of its 2 x 3 transpose.
        assert_eq!(stacked(1, 3, 2, 1, 0), 6 + 1);
        assert_eq!(shape_scale(1536, 512), 3f64.sqrt());
        assert_eq!(shape_scale(512, 128), 2.0);
        assert_eq!(shape_scale(512, 1536), 1.0);
        assert_eq!(momentum_warmup(0), 0.92);
        assert!((momentum_warmup(750) - 0.955).abs() < 1e-6);
        assert_eq!(momentum_warmup(3000), 0.92 + 0.07);
    }

    #[test]
    fn hyper_is_one_uniform_block() {
        assert_eq!(std::mem::size_of::<MuonHyper>(), crate::plan::op::HYPER_LEN * 4);
    }
}
