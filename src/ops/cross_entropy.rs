//! The tied head's loss: logit softcap and a fused cross-entropy.
//!
//! For each row r with raw logits `l` (`vocab` values) and target `y`:
//! `z = cap * tanh(l / cap)`, `loss[r] = logsumexp(z) - z[y]`, and the gradient with respect
//! to the raw logits `dl = grad_scale * (softmax(z) - onehot(y)) * (1 - tanh(l / cap)^2)`.
//! `grad_scale` is `1 / (tokens per optimizer step)`, so the gradients are those of the mean
//! loss over the whole step, micro-batches included.
//! The sum of the row losses is reduced in a fixed tree (see [`loss_sum`]).
use super::Real;

/// Per-row loss and, with `dlogits`, the gradient of `grad_scale * sum(loss)`.
pub fn cross_entropy<T: Real>(
    dlogits: Option<&mut [T]>,
    loss: &mut [T],
    logits: &[T],
    targets: &[u32],
    vocab: usize,
    softcap: f64,
    grad_scale: f64,
) {
    let cap = T::from_f64(softcap);
    let mut grads = dlogits;
    for (r, (lr, &y)) in loss.iter_mut().zip(targets).enumerate() {
        let row = &logits[r * vocab..(r + 1) * vocab];
        let z: Vec<T> = row.iter().map(|&l| cap * (l / cap).tanh()).collect();
        let m = z.iter().fold(T::from_f64(f64::NEG_INFINITY), |a, &b| a.max(b));
        let mut sum = T::zero();
        for &v in &z {
            sum += (v - m).exp();
        }
        let lse = m + sum.ln();
        *lr = lse - z[y as usize];
        if let Some(g) = grads.as_deref_mut() {
            for (j, &l) in row.iter().enumerate() {
                let th = (l / cap).tanh();
                let p = (z[j] - lse).exp();
                let onehot = if j == y as usize { T::one() } else { T::zero() };
                g[r * vocab + j] = T::from_f64(grad_scale) * (p - onehot) * (T::one() - th * th);
            }
        }
    }
}

/// `total += scale * sum(rows)`, summed as the GPU kernel does: 256 lanes take rows
/// `lane, lane + 256, ...` in order, then a pairwise tree over the lanes.
pub fn loss_sum<T: Real>(total: &mut T, rows: &[T], scale: f64) {
    const LANES: usize = 256;
    let mut lanes = [T::zero(); LANES];
    for (i, &v) in rows.iter().enumerate() {
        lanes[i % LANES] += v;
    }
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            let v = lanes[i + width];
            lanes[i] += v;
        }
        width /= 2;
    }
    *total += lanes[0] * T::from_f64(scale);
}
