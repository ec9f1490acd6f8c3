//! AdamW with decoupled weight decay, bias-corrected, as PyTorch's `AdamW`.
//!
//! `p <- p (1 - lr wd)`, `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
//! `p <- p - lr (m / bc1) / (sqrt(v / bc2) + eps)`, with `bc1 = 1 - b1^t`, `bc2 = 1 - b2^t` at
//! step t (counting from 1). The hyperparameters change every step (scheduled lr, t), so the
//! GPU kernel reads them from a small uniform buffer written before each optimizer pass.
use super::Real;

/// One step's hyperparameters of an AdamW group, as the kernel's uniform holds them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// `1 - beta1^t`.
    pub bias_correction1: f32,
    /// `1 - beta2^t`.
    pub bias_correction2: f32,
    pub _pad: f32,
}

impl AdamHyper {
    /// The hyperparameters of step `t` (from 1) at learning rate `lr`.
    pub fn at_step(lr: f32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32, t: u32) -> Self {
        AdamHyper {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            bias_correction1: 1.0 - beta1.powi(t as i32),
            bias_correction2: 1.0 - beta2.powi(t as i32),
            _pad: 0.0,
        }
    }
}

/// Updates `p`, `m` and `v` in place from the gradient `g`.
pub fn adamw<T: Real>(p: &mut [T], m: &mut [T], v: &mut [T], g: &[T], h: &AdamHyper) {
    let f = |x: f32| T::from_f64(x as f64);
    let (lr, b1, b2) = (f(h.lr), f(h.beta1), f(h.beta2));
    for i in 0..p.len() {
        p[i] *= T::one() - lr * f(h.weight_decay);
        m[i] = b1 * m[i] + (T::one() - b1) * g[i];
        v[i] = b2 * v[i] + (T::one() - b2) * g[i] * g[i];
        let denom = (v[i] / f(h.bias_correction2)).sqrt() + f(h.eps);
        p[i] -= lr * (m[i] / f(h.bias_correction1)) / denom;
    }
}
