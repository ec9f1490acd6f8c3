//! Global gradient-norm clipping, as PyTorch's `clip_grad_norm_` (record spec section 5:
//! max norm 0.3 over all parameters).
//!
//! Per gradient tensor `i`, `norms[i] = sum g^2` ([`grad_sum_sq`]); then
//! `coef = min(1, max_norm / (sqrt(sum_i norms[i]) + 1e-6))`, summed in slot order
//! ([`clip_coef`]); then every gradient is multiplied by `coef` ([`scale_by_coef`]), also when
//! it is 1 (as PyTorch does). On the GPU the coefficient never leaves the device.

use super::Real;

/// Added to the total norm before dividing by it (PyTorch's value).
pub const CLIP_EPS: f64 = 1e-6;

/// `norms[slot] = sum of grad^2` (overwrites that slot only; squares summed in order).
pub fn grad_sum_sq<T: Real>(norms: &mut [T], grad: &[T], slot: usize) {
    let mut acc = T::zero();
    for &g in grad {
        acc += g * g;
    }
    norms[slot] = acc;
}

/// `coef[0] = min(1, max_norm / (sqrt(sum norms) + 1e-6))`, the norms summed in slot order.
pub fn clip_coef<T: Real>(coef: &mut [T], norms: &[T], max_norm: f64) {
    let mut total = T::zero();
    for &n in norms {
        total += n;
    }
    let c = T::from_f64(max_norm as f32 as f64) / (total.sqrt() + T::from_f64(CLIP_EPS as f32 as f64));
    coef[0] = if c < T::one() { c } else { T::one() };
}

/// `x *= coef[0]`.
pub fn scale_by_coef<T: Real>(x: &mut [T], coef: &[T]) {
    let c = coef[0];
    for v in x.iter_mut() {
        *v *= c;
    }
}
