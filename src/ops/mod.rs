//! CPU reference implementations of every op, one file per family. Each is the contract
//! its WGSL kernel is tested against; none of this touches wgpu. Functions are generic over
//! [`Real`] so the finite-difference checks can run them in f64.
pub mod adamw;
pub mod attention;
pub mod clip;
pub mod cross_entropy;
pub mod elementwise;
pub mod ema;
pub mod embedding;
pub mod matmul;
pub mod muon;
pub mod real;
pub mod rmsnorm;
pub mod rope;
pub mod sgd;
pub mod smear;
pub mod xsa;

pub use real::Real;
