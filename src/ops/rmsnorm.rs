//! RMSNorm without gain, over the last dimension.
//!
//! Forward: `rstd[r] = 1 / sqrt(mean_c x[r, c]^2 + eps)`, `y[r, c] = x[r, c] * rstd[r]`.
//! Backward: `dx[r, c] += rstd[r] * (dy[r, c] - y[r, c] * mean_c(dy[r, :] * y[r, :]))`.
//! The reference leaves eps at None, so PyTorch uses the machine epsilon of f32 (2^-23).
use super::Real;

/// The eps of the reference's `F.rms_norm` on f32 input: `torch.finfo(float32).eps`.
pub const RMS_EPS: f64 = f32::EPSILON as f64;

/// Normalizes each row of `x` (`rows x dim`) into `y`, saving `rstd` (`rows`).
pub fn rmsnorm_fwd<T: Real>(y: &mut [T], rstd: &mut [T], x: &[T], dim: usize, eps: f64) {
    for (r, rs) in rstd.iter_mut().enumerate() {
        let row = &x[r * dim..(r + 1) * dim];
        let mut ss = T::zero();
        for &v in row {
            ss += v * v;
        }
        let s = T::one() / (ss / T::from_f64(dim as f64) + T::from_f64(eps)).sqrt();
        *rs = s;
        for c in 0..dim {
            y[r * dim + c] = row[c] * s;
        }
    }
}

/// Accumulates the input gradient from the output gradient `dy`, the output `y` and `rstd`.
pub fn rmsnorm_bwd<T: Real>(dx: &mut [T], dy: &[T], y: &[T], rstd: &[T], dim: usize) {
    for (r, &s) in rstd.iter().enumerate() {
        let range = r * dim..(r + 1) * dim;
        let mut dot = T::zero();
        for i in range.clone() {
            dot += dy[i] * y[i];
        }
        let mean = dot / T::from_f64(dim as f64);
        for i in range {
            dx[i] += s * (dy[i] - y[i] * mean);
        }
    }
}
