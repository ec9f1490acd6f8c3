//! Global gradient-norm clipping, as PyTorch's `clip_grad_norm_` (record spec section 5:
//! max norm 0.3 over all parameters).
//!
//! Two stages, so that the sum of squares over every gradient runs on many workgroups and
//! stays deterministic: every gradient is cut into chunks of [`SUM_SQ_CHUNK`] elements and
//! each chunk's sum of squares is one partial ([`grad_sum_sq`], the gradients' chunks in
//! order); then `coef = min(1, max_norm / (sqrt(sum of the partials) + 1e-6))`, the partials
//! summed in a fixed order ([`clip_coef`]); then every gradient is multiplied by `coef`
//! ([`clipped`]), also when it is 1 (as PyTorch does), by the optimizer step that reads it
//! (AdamW, Muon's momentum, SGD) rather than by a pass of its own. On the GPU the
//! coefficient never leaves the device.

use super::Real;

/// Added to the total norm before dividing by it (PyTorch's value).
pub const CLIP_EPS: f64 = 1e-6;

/// Elements of a gradient per partial sum of squares (one 256-lane workgroup of
/// `shaders/clip.wgsl`'s `grad_sum_sq`, four elements per lane). Small enough that a dispatch
/// moving more than a MiB launches more than a large GPU's 132 workgroups.
pub const SUM_SQ_CHUNK: usize = 1024;

/// The partial sums of squares of a gradient of `count` elements.
pub fn sum_sq_chunks(count: usize) -> usize {
    count.div_ceil(SUM_SQ_CHUNK)
}

/// `partials[offset + ..]`: one sum of squares per [`SUM_SQ_CHUNK`] chunk of each of
/// `grads`, the gradients' chunks in order (the last chunk of each may be shorter). Overwrites
/// those partials only.
pub fn grad_sum_sq<T: Real>(partials: &mut [T], grads: &[&[T]], offset: usize) {
    let mut slot = offset;
    for grad in grads {
        for chunk in grad.chunks(SUM_SQ_CHUNK) {
            let mut acc = T::zero();
            for &g in chunk {
                acc += g * g;
            }
            partials[slot] = acc;
            slot += 1;
        }
    }
}

/// `coef[0] = min(1, max_norm / (sqrt(sum partials) + 1e-6))`, the partials summed in order.
pub fn clip_coef<T: Real>(coef: &mut [T], partials: &[T], max_norm: f64) {
    let mut total = T::zero();
    for &n in partials {
        total += n;
    }
    let c = T::from_f64(max_norm as f32 as f64) / (total.sqrt() + T::from_f64(CLIP_EPS as f32 as f64));
    coef[0] = if c < T::one() { c } else { T::one() };
}

/// The gradient an optimizer step uses: `g * coef[0]`, element by element (the clip's
/// coefficient, 1 without clipping).
pub fn clipped<T: Real>(g: &[T], coef: &[T]) -> Vec<T> {
    let c = coef[0];
    g.iter().map(|&v| v * c).collect()
}
