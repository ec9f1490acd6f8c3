//! Everything that touches wgpu: the context (adapter choice, features, limits), the kernel
//! registry and the GPU executor.
pub mod context;
pub mod coop;
pub mod executor;
pub mod registry;

pub use context::{AdapterReport, GpuContext, GpuError};
pub use executor::GpuExecutor;
