//! Flash attention (`shaders/attention.wgsl`) against the kernel it replaced (one invocation
//! per query reading every key from global memory, kept here only: `benches/attention_naive.wgsl`),
//! forward, backward for q, and backward for k and v, on the chosen adapter. The flash
//! kernels are the ones the executor runs there (tuned for the adapter's kind,
//! `GpuContext::kernel_target`); `WGOLF_BENCH_TARGET=gpu` or `cpu` times the other variant.
//!
//! `cargo bench --bench attention -- [BATCH SEQ HEADS KV_HEADS HEAD_DIM]` (default 1 1024 8 4 64,
//! the comparison shape; the record's is 48 2048 8 4 64). `WGOLF_BENCH_RUNS` (default 3)
//! timed runs after one warm-up; the median wall time of a submission waited on is reported,
//! both kernels built the same way (checked shader modules). The forward's outputs of both
//! kernels are compared with the CPU reference, so a fast wrong kernel shows: flash must agree;
//! the naive kernel loops over every key three times per query, and past 65,535 loop
//! iterations per invocation lavapipe silently ends its loops (T = 1024 at head_dim 64 is past
//! that), so there its disagreement is printed and its time is a lower bound (work skipped).
use std::time::Instant;
use wgolf::gpu::GpuContext;
use wgolf::ops::attention::{attention_fwd, AttnShape};
use wgolf::plan::defs::{AttentionBwdKv, AttentionBwdQ, AttentionFwd};
use wgolf::plan::op::grid_1d;
use wgolf::plan::{KernelCall, KernelTarget, Op};

const NAIVE: &str = include_str!("attention_naive.wgsl");

/// The buffers both kernel sets read and write: q, k, v, dout (inputs), out, lse, dq, delta,
/// dk, dv (outputs).
struct Buffers {
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    dout: wgpu::Buffer,
    out: wgpu::Buffer,
    lse: wgpu::Buffer,
    dq: wgpu::Buffer,
    delta: wgpu::Buffer,
    dk: wgpu::Buffer,
    dv: wgpu::Buffer,
}

fn buffer(device: &wgpu::Device, len: usize, seed: usize) -> wgpu::Buffer {
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (len.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: true,
    });
    {
        let mut view = buffer.slice(..).get_mapped_range_mut().expect("mapped at creation");
        let (words, _) = view.slice(..).into_chunks::<4>();
        words.write_iter((0..len).map(|i| ((((i + seed) * 7919 % 61) as f32 - 30.0) / 64.0).to_ne_bytes()));
    }
    buffer.unmap();
    buffer
}

fn read(ctx: &GpuContext, src: &wgpu::Buffer) -> Vec<f32> {
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: src.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(src, 0, &staging, 0, src.size());
    ctx.queue.submit([encoder.finish()]);
    staging.slice(..).map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    ctx.device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    let view = staging.slice(..).get_mapped_range().expect("mapped");
    view.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// One kernel: its pipeline, bound to `buffers` in the op's binding order, and its grid.
struct Kernel {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    grid: [u32; 3],
}

fn kernel(ctx: &GpuContext, source: &str, call: &KernelCall, grid: [u32; 3], buffers: &[&wgpu::Buffer]) -> Kernel {
    let device = &ctx.device;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(call.entry),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(call.entry),
        layout: None,
        module: &module,
        entry_point: Some(call.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &call.constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
        .collect();
    let layout = pipeline.get_bind_group_layout(0);
    let bind_group =
        device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries });
    Kernel { pipeline, bind_group, grid }
}

/// The median wall time (ms) of `runs` submissions of `k`, each waited on, after one warm-up.
fn time(ctx: &GpuContext, k: &Kernel, runs: usize) -> f64 {
    let once = || {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&k.pipeline);
            pass.set_bind_group(0, &k.bind_group, &[]);
            pass.dispatch_workgroups(k.grid[0], k.grid[1], k.grid[2]);
        }
        let start = Instant::now();
        ctx.queue.submit([encoder.finish()]);
        ctx.device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
        start.elapsed().as_secs_f64() * 1e3
    };
    once();
    let mut times: Vec<f64> = (0..runs).map(|_| once()).collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let dims: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let [batch, seq, heads, kv_heads, head_dim] = match dims.as_slice() {
        [] => [1, 1024, 8, 4, 64],
        &[a, b, c, d, e] => [a, b, c, d, e],
        _ => anyhow::bail!("give BATCH SEQ HEADS KV_HEADS HEAD_DIM, or nothing for 1 1024 8 4 64"),
    };
    let s = AttnShape { batch, seq, heads, kv_heads, head_dim };
    let runs = std::env::var("WGOLF_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3usize).max(1);
    let ctx = GpuContext::new(std::env::var("WGOLF_ADAPTER").ok().as_deref())?;
    let target = match std::env::var("WGOLF_BENCH_TARGET").as_deref() {
        Ok("gpu") => KernelTarget::Gpu,
        Ok("cpu") => KernelTarget::Cpu,
        Ok(other) => anyhow::bail!("WGOLF_BENCH_TARGET={other}: expected gpu or cpu"),
        Err(_) => ctx.kernel_target(),
    };
    let d = &ctx.device;
    let (nq, nkv, nl) = (batch * seq * heads * head_dim, batch * seq * kv_heads * head_dim, batch * heads * seq);
    let b = Buffers {
        q: buffer(d, nq, 1),
        k: buffer(d, nkv, 2),
        v: buffer(d, nkv, 3),
        dout: buffer(d, nq, 4),
        out: buffer(d, nq, 0),
        lse: buffer(d, nl, 0),
        dq: buffer(d, nq, 0),
        delta: buffer(d, nl, 0),
        dk: buffer(d, nkv, 0),
        dv: buffer(d, nkv, 0),
    };
    let fwd_bind = [&b.out, &b.lse, &b.q, &b.k, &b.v];
    let bwd_q_bind = [&b.dq, &b.delta, &b.dout, &b.out, &b.q, &b.k, &b.v, &b.lse];
    let bwd_kv_bind = [&b.dk, &b.dv, &b.dout, &b.q, &b.k, &b.v, &b.lse, &b.delta];
    let ops = [
        ("forward", Op::AttentionFwd(AttentionFwd(s)), &fwd_bind[..], nl),
        ("backward q", Op::AttentionBwdQ(AttentionBwdQ(s)), &bwd_q_bind[..], nl),
        ("backward k, v", Op::AttentionBwdKv(AttentionBwdKv(s)), &bwd_kv_bind[..], batch * kv_heads * seq),
    ];
    println!(
        "attention B={batch} T={seq} heads={heads} kv_heads={kv_heads} head_dim={head_dim} on {}, kernels for {:?}\n",
        ctx.report.one_line(),
        target
    );
    println!("| pass | naive ms | flash ms | speed-up |\n|---|---:|---:|---:|");
    let (mut naive_total, mut flash_total) = (0.0, 0.0);
    // The CPU reference forward from the same inputs.
    let (mut want_out, mut want_lse) = (vec![0f32; nq], vec![0f32; nl]);
    attention_fwd(&mut want_out, &mut want_lse, &read(&ctx, &b.q), &read(&ctx, &b.k), &read(&ctx, &b.v), s);
    let max_diff = |got: &[f32]| got.iter().zip(&want_out).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    for (name, op, bind, invocations) in ops {
        // The kernel the executor runs on this adapter (tuned for its kind), or the other.
        let flash_call = op.kernel_for(target);
        let flash_src = wgolf::kernels::module("attention", flash_call.entry).map_err(anyhow::Error::msg)?.source;
        // The old kernel: one invocation per query (per key for k, v), the first five constants.
        let naive_call =
            KernelCall::new("attention", op.kernel().entry, flash_call.constants[..5].to_vec(), grid_1d(invocations));
        let naive = kernel(&ctx, NAIVE, &naive_call, naive_call.workgroups, bind);
        let naive_ms = time(&ctx, &naive, runs);
        if name == "forward" {
            let diff = max_diff(&read(&ctx, &b.out));
            eprintln!("naive forward: max |gpu - cpu| = {diff:e}");
            if diff > 1e-4 {
                eprintln!("  (the naive kernel did not finish on this adapter: its times are lower bounds)");
            }
        }
        let flash = kernel(&ctx, &flash_src, &flash_call, flash_call.workgroups, bind);
        let flash_ms = time(&ctx, &flash, runs);
        if name == "forward" {
            let diff = max_diff(&read(&ctx, &b.out));
            eprintln!("flash forward: max |gpu - cpu| = {diff:e}");
            anyhow::ensure!(diff < 1e-4, "the flash forward disagrees with the CPU reference by {diff}");
        }
        naive_total += naive_ms;
        flash_total += flash_ms;
        println!("| {name} | {naive_ms:.1} | {flash_ms:.1} | {:.1}x |", naive_ms / flash_ms);
    }
    println!("| all three | {naive_total:.1} | {flash_total:.1} | {:.1}x |", naive_total / flash_total);
    Ok(())
}
