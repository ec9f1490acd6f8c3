//! SGD with momentum, as PyTorch's `torch.optim.SGD(momentum=mu)` with dampening 0, no
//! Nesterov and no weight decay (record spec section 8, test-time training):
//! `buf <- mu buf + g`, `p <- p - lr buf`. PyTorch creates the buffer as `g` on the first
//! step; a zero buffer gives the same value (`mu 0 + g`), so the plan keeps it zeroed.
use super::Real;

/// One step's SGD hyperparameters, as the kernel's uniform holds them (8 f32, the size of
/// every hyperparameter block, [`crate::plan::op::HYPER_LEN`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SgdHyper {
    pub lr: f32,
    pub momentum: f32,
    pub _pad: [f32; 6],
}

impl SgdHyper {
    pub fn new(lr: f32, momentum: f32) -> Self {
        SgdHyper { lr, momentum, _pad: [0.0; 6] }
    }
}

/// Updates `p` and the momentum buffer `buf` in place from the gradient `g`.
pub fn sgd<T: Real>(p: &mut [T], buf: &mut [T], g: &[T], h: &SgdHyper) {
    let (lr, mu) = (T::from_f64(h.lr as f64), T::from_f64(h.momentum as f64));
    for i in 0..p.len() {
        buf[i] = mu * buf[i] + g[i];
        p[i] -= lr * buf[i];
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hyper_is_one_uniform_block() {
        assert_eq!(std::mem::size_of::<super::SgdHyper>(), crate::plan::op::HYPER_LEN * 4);
    }
}
