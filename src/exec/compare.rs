//! The debug switch: run two executors side by side, step by step, and name the first step
//! whose output differs beyond tolerance.
use super::{ExecError, Executor, HostData};
use crate::plan::{Access, Phase, Plan};
use crate::tolerance::{first_mismatch, Tolerance};

/// Where two executors first disagree.
#[derive(Debug, Clone)]
pub struct Divergence {
    /// `Forward#12 matmul[...] -> blocks.0.attn.q`.
    pub step: String,
    pub tensor: String,
    pub index: usize,
    pub got: f32,
    pub want: f32,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "first divergence at step {}: {}[{}] = {} but the reference has {}",
            self.step, self.tensor, self.index, self.got, self.want
        )
    }
}

/// Runs `phases` of `plan` on `subject` and `reference` one step at a time, comparing each
/// step's outputs; both must hold the same state at the start. Returns the first divergence
/// (or the first error of either executor).
///
/// After each step the reference's outputs are copied into the subject, so every step is
/// judged on identical inputs: rounding differences do not compound through the plan (they
/// would, for example, through Adam's first update, which is close to `sign(g)` and so
/// amplifies any difference in a gradient near `eps`).
pub fn compare_steps(
    plan: &Plan,
    phases: &[Phase],
    subject: &mut dyn Executor,
    reference: &mut dyn Executor,
    tol: Tolerance,
) -> Result<Option<Divergence>, ExecError> {
    for &phase in phases {
        for (i, step) in plan.steps(phase).iter().enumerate() {
            subject.run(phase, i..i + 1)?;
            reference.run(phase, i..i + 1)?;
            for (spec, &t) in step.op.bindings().iter().zip(&step.args) {
                if spec.access != Access::ReadWrite {
                    continue;
                }
                let (got, want) = (subject.read(t)?, reference.read(t)?);
                if let Some((index, got, want)) = first_mismatch(&got, &want, tol) {
                    return Ok(Some(Divergence {
                        step: plan.step_name(phase, i),
                        tensor: plan.tensor(t).name.clone(),
                        index,
                        got,
                        want,
                    }));
                }
                subject.write(t, HostData::F32(&want))?;
            }
        }
    }
    Ok(None)
}
