//! Every numerical tolerance the tests use, in one table. A comparison passes when
//! `|got - want| <= atol + rtol * |want|` element-wise.

/// An absolute and a relative tolerance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub atol: f32,
    pub rtol: f32,
}

/// What is being compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// One f32 GPU kernel against its f32 CPU reference (summation order differs).
    KernelF32,
    /// A GPU kernel with f16 operands and f32 accumulation against the f32 CPU reference.
    KernelF16,
    /// The whole tiny model, GPU against CPU executor: logits, loss, parameter gradients.
    Model,
    /// Analytic f64 CPU backward against central finite differences of the f64 forward.
    FiniteDiff,
    /// An optimizer update kernel against its CPU reference over several steps.
    Optimizer,
}

/// The tolerance of each check.
pub const fn tolerance(check: Check) -> Tolerance {
    match check {
        Check::KernelF32 => Tolerance {
            atol: 1e-5,
            rtol: 1e-4,
        },
        Check::KernelF16 => Tolerance {
            atol: 1e-2,
            rtol: 1e-2,
        },
        Check::Model => Tolerance {
            atol: 1e-6,
            rtol: 2e-3,
        },
        Check::FiniteDiff => Tolerance {
            atol: 1e-7,
            rtol: 1e-5,
        },
        Check::Optimizer => Tolerance {
            atol: 1e-6,
            rtol: 1e-4,
        },
    }
}

/// The first index where `got` and `want` differ beyond `tol`, with both values.
pub fn first_mismatch(got: &[f32], want: &[f32], tol: Tolerance) -> Option<(usize, f32, f32)> {
    if got.len() != want.len() {
        return Some((got.len().min(want.len()), f32::NAN, f32::NAN));
    }
    got.iter()
        .zip(want)
        .position(|(&g, &w)| !within(g, w, tol))
        .map(|i| (i, got[i], want[i]))
}

/// Whether `got` is within tolerance of `want`; a NaN on either side never is.
pub fn within(got: f32, want: f32, tol: Tolerance) -> bool {
    use std::cmp::Ordering::{Equal, Less};
    got == want
        || matches!(
            (got - want)
                .abs()
                .partial_cmp(&(tol.atol + tol.rtol * want.abs())),
            Some(Less | Equal)
        )
}
