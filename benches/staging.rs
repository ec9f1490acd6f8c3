//! The gradients' way out of the GPU and back, as a data-parallel step takes it
//! (`train/step.rs` `average_gradients`): every parameter gradient of a config's plan read
//! back (`Executor::read_many`: copies into one mapped staging buffer, one wait, host copies;
//! `--one-by-one`: `Executor::read` per tensor, a submission and a wait each), then
//! written back (`Executor::write`, one queue write each) and the writes waited on. Only the
//! gradient tensors are allocated (an executor of the plan's `Role::Grad` tensors alone), so
//! the record's 26,829,913 values fit an adapter that could not hold its activations.
//!
//! `cargo bench --bench staging -- [--config configs/record.toml] [--reps R] [--adapter A] [--one-by-one]`
//!
//! Prints the median and fastest of R repetitions (after one warm-up) of the read-back, the
//! write-back and both, in ms and GB/s, with the adapter's name.
use std::time::Instant;
use wgolf::exec::{Executor, HostData};
use wgolf::plan::{DType, PlanBuilder, Role};

fn main() -> anyhow::Result<()> {
    let (mut config, mut reps, mut adapter, mut one_by_one) = ("configs/record.toml".to_string(), 5usize, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--config" => config = value()?,
            "--reps" => reps = value()?.parse()?,
            "--adapter" => adapter = Some(value()?),
            "--one-by-one" => one_by_one = true,
            "--bench" => {}
            other => anyhow::bail!("unknown argument `{other}` (see the doc comment of benches/staging.rs)"),
        }
    }
    anyhow::ensure!(reps > 0, "--reps must be positive");
    let cfg = wgolf::config::Config::load(std::path::Path::new(&config), &[])?;
    let full = wgolf::model::build_plan(&cfg)?;
    let mut g = PlanBuilder::new();
    for slot in &full.params {
        let t = full.tensor(slot.grad);
        g.tensor(t.name.clone(), &t.shape, DType::F32, Role::Grad);
    }
    let plan = g.finish_without_io()?;
    let ids: Vec<usize> = (0..plan.tensors.len()).collect();
    let values: usize = plan.tensors.iter().map(|t| t.numel()).sum();
    let ctx = std::sync::Arc::new(wgolf::gpu::GpuContext::new(adapter.as_deref())?);
    let name = ctx.adapter_name().to_string();
    let mut ex = wgolf::gpu::GpuExecutor::new(ctx, &plan)?;
    let host: Vec<Vec<f32>> = plan.tensors.iter().map(|t| vec![0.5f32; t.numel()]).collect();
    let (mut down, mut up) = (Vec::new(), Vec::new());
    for rep in 0..reps + 1 {
        let start = Instant::now();
        let read = if one_by_one {
            ids.iter().map(|&t| ex.read(t)).collect::<Result<Vec<_>, _>>()?
        } else {
            ex.read_many(&ids)?
        };
        let mid = Instant::now();
        for (&t, v) in ids.iter().zip(&host) {
            ex.write(t, HostData::F32(v))?;
        }
        ex.sync()?;
        let end = Instant::now();
        std::hint::black_box(read);
        if rep > 0 {
            down.push((mid - start).as_secs_f64() * 1e3);
            up.push((end - mid).as_secs_f64() * 1e3);
        }
    }
    let both: Vec<f64> = down.iter().zip(&up).map(|(a, b)| a + b).collect();
    let mb = values as f64 * 4.0 / 1e6;
    let how = if one_by_one { "read one by one" } else { "read in one submission" };
    println!(
        "{config}: {} gradients, {values} f32 ({mb:.1} MB), {how}, on {name}, median (min) of {reps}\n",
        ids.len()
    );
    println!("| direction | median ms | min ms | GB/s (median) |");
    println!("|---|---:|---:|---:|");
    for (label, mut times) in [("GPU to host (read)", down), ("host to GPU (write)", up), ("both", both)] {
        times.sort_by(f64::total_cmp);
        let (median, min) = (times[times.len() / 2], times[0]);
        println!("| {label} | {median:.1} | {min:.1} | {:.2} |", mb / 1e3 / (median * 1e-3));
    }
    Ok(())
}
