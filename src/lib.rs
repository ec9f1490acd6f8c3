//! wgolf: training small language models with WGSL compute shaders through wgpu.
//!
//! Layers, with dependencies pointing one way: [`ops`] (CPU reference math), [`plan`]
//! (tensors and steps), [`model`] (the GPT written as plan steps, backward mirrored),
//! [`exec`] (executors and the CPU interpreter), [`gpu`] (the only module that touches
//! wgpu), [`data`] (shards, loaders, tokenizer, bpb), [`host`] (the executor choice and
//! what the host writes into it), [`eval`] (validation, the exported weights), [`train`]
//! (the loop, which calls eval at the end), [`report`] (curves and report.md from a run's
//! metrics) and [`progress`] (bars and plain progress lines); [`dist`] holds the collectives between the processes
//! of a multi-GPU run (Linux; elsewhere joining a group is an error). See ARCHITECTURE.md.
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dist;
pub mod eval;
pub mod exec;
pub mod fsutil;
pub mod gpu;
pub mod host;
pub mod init;
pub mod kernels;
pub mod model;
pub mod ops;
pub mod optim;
pub mod plan;
pub mod progress;
pub mod quant;
pub mod report;
pub mod tolerance;
pub mod train;
pub mod units;
