//! Every numerical tolerance the tests use, in one table. A comparison of a tensor passes
//! when, element-wise, `|got - want| <= atol + rtol * |want| + scale_rtol * max|want|`.
//! The last term is a floor relative to the tensor's own scale: values near zero inside a
//! large tensor come from cancellation and carry the error of the large terms, while a fixed
//! atol would be either too loose for small tensors (gradients scaled by 1/tokens) or too
//! tight for those near-zero values.

/// The tolerance of a comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub atol: f32,
    pub rtol: f32,
    /// Relative to the largest magnitude of the reference tensor.
    pub scale_rtol: f32,
}

/// What is being compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// One f32 GPU kernel against its f32 CPU reference (summation order differs).
    KernelF32,
    /// A GPU kernel with f16 operands and f32 accumulation against the f32 CPU reference.
    KernelF16,
    /// The same for gradients carrying the loss's 1/tokens factor: f16's relative error, no
    /// fixed atol (the values are ~1e-6) but a floor relative to the tensor's scale, tight
    /// enough that a row of small gradients flushed to zero fails.
    GradF16,
    /// The whole tiny model, GPU against CPU executor: logits, loss, parameter gradients.
    Model,
    /// Analytic f64 CPU backward against central finite differences of the f64 forward.
    FiniteDiff,
    /// An optimizer update kernel against its CPU reference over several steps.
    Optimizer,
    /// An f64 sum over f32 terms (validation loss sums) split among ranks and added back,
    /// against the same sum in one process: the same terms grouped differently.
    RankSums,
    /// A step's mean loss logged by one process (micro-batch sums added in f32 on the device)
    /// against the same step on several ranks (each rank's f32 loss, averaged in f64): the
    /// same terms, an f32 rounding or two apart.
    RankLoss,
    /// A run's final state (weights, optimizer state, EMA) trained by several ranks against
    /// one process accumulating the same micro-batches: the gradients' additions grouped
    /// differently (kernels that add term by term into an accumulating gradient), so f32
    /// roundings a few steps deep (measured: at most 2e-6 of a tensor's scale after 4 steps of
    /// record-tiny).
    RankState,
}

/// The tolerance of each check.
pub const fn tolerance(check: Check) -> Tolerance {
    match check {
        Check::KernelF32 => Tolerance { atol: 1e-5, rtol: 1e-4, scale_rtol: 0.0 },
        Check::KernelF16 => Tolerance { atol: 1e-2, rtol: 1e-2, scale_rtol: 0.0 },
        Check::GradF16 => Tolerance { atol: 0.0, rtol: 1e-2, scale_rtol: 2e-3 },
        // Gradients are small (grad_scale = 1/tokens): no fixed atol, a floor relative to
        // each tensor's scale instead.
        Check::Model => Tolerance { atol: 0.0, rtol: 2e-3, scale_rtol: 1e-4 },
        Check::FiniteDiff => Tolerance { atol: 1e-7, rtol: 1e-5, scale_rtol: 0.0 },
        Check::Optimizer => Tolerance { atol: 1e-6, rtol: 1e-4, scale_rtol: 0.0 },
        Check::RankSums => Tolerance { atol: 0.0, rtol: 1e-9, scale_rtol: 0.0 },
        Check::RankLoss => Tolerance { atol: 0.0, rtol: 2.5e-7, scale_rtol: 0.0 },
        Check::RankState => Tolerance { atol: 0.0, rtol: 1e-4, scale_rtol: 1e-5 },
    }
}

/// The first index where `got` and `want` differ beyond `tol`, with both values.
pub fn first_mismatch(got: &[f32], want: &[f32], tol: Tolerance) -> Option<(usize, f32, f32)> {
    if got.len() != want.len() {
        return Some((got.len().min(want.len()), f32::NAN, f32::NAN));
    }
    let scale = want.iter().fold(0f32, |m, w| m.max(w.abs()));
    let tol = Tolerance { atol: tol.atol + tol.scale_rtol * scale, ..tol };
    got.iter().zip(want).position(|(&g, &w)| !within(g, w, tol)).map(|i| (i, got[i], want[i]))
}

/// Whether the scalar `got` is within `atol + rtol * |want|` of `want` (`scale_rtol` needs a
/// tensor and is not used); a NaN on either side never is.
pub fn within(got: f32, want: f32, tol: Tolerance) -> bool {
    use std::cmp::Ordering::{Equal, Less};
    got == want || matches!((got - want).abs().partial_cmp(&(tol.atol + tol.rtol * want.abs())), Some(Less | Equal))
}
