//! One kernel against its CPU reference on the chosen adapter.
//!
//! Shows the contract every wgolf kernel keeps: an op (`Matmul` here) is one WGSL dispatch
//! and one CPU reference call. The example builds the single-op plan of a ragged matmul,
//! writes the same seeded inputs into a GPU executor and into the CPU reference executor,
//! runs the op on both and compares the outputs within the project's kernel tolerance.
//!
//!     cargo run --release --example kernel_vs_cpu            # the default adapter
//!     WGOLF_ADAPTER=llvmpipe cargo run --release --example kernel_vs_cpu
use std::sync::Arc;
use wgolf::exec::cpu::CpuExecutor;
use wgolf::exec::{Executor, HostData};
use wgolf::gpu::{GpuContext, GpuExecutor};
use wgolf::ops::matmul::Layout;
use wgolf::plan::defs::Matmul;
use wgolf::plan::{Op, Phase, Plan};
use wgolf::tolerance::{first_mismatch, tolerance, Check};

fn main() -> anyhow::Result<()> {
    // c [m, n] = a [m, k] b [n, k]^T: shapes that are not multiples of the matmul tile.
    let (m, n, k) = (70, 45, 33);
    let op = Matmul { m, n, k, layout: Layout::Nt, accumulate: false, a_prescale_exp: 0 };
    // A single-op plan: binding i of the op is tensor i (c, then a, then b).
    let plan = Plan::single_op(op)?;

    let mut rng = wgolf::init::Rng::new(7);
    let mut values = |len: usize| (0..len).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect::<Vec<f32>>();
    let (a, b) = (values(m * k), values(n * k));

    let ctx = Arc::new(GpuContext::new(std::env::var("WGOLF_ADAPTER").ok().as_deref())?);
    // Adapters with cooperative matrices (tensor cores) run an f16-operand kernel instead of
    // the portable f32 one, which is checked to a looser tolerance.
    let replaced = wgolf::gpu::coop::select(&ctx, &Op::from(op)).is_some();
    let tol = tolerance(if replaced { Check::KernelF16 } else { Check::KernelF32 });
    let mut gpu = GpuExecutor::new(ctx, &plan)?;
    let mut cpu = CpuExecutor::new(&plan);
    let mut outputs = Vec::new();
    for ex in [&mut gpu as &mut dyn Executor, &mut cpu] {
        ex.write(1, HostData::F32(&a))?;
        ex.write(2, HostData::F32(&b))?;
        ex.run(Phase::Forward, 0..1)?;
        outputs.push(ex.read(0)?);
    }
    let (got, want) = (&outputs[0], &outputs[1]);
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
    println!(
        "matmul {m}x{n}x{k} (nt) on {}: {} outputs, largest difference from the CPU reference {worst:.2e}",
        gpu.describe(),
        got.len()
    );
    if let Some((i, g, w)) = first_mismatch(got, want, tol) {
        anyhow::bail!("output {i} differs: GPU {g}, CPU {w} (tolerance {tol:?})");
    }
    println!("the GPU kernel agrees with its CPU reference within {tol:?}");
    Ok(())
}
