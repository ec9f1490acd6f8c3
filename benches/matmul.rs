//! Matmul throughput of every kernel variant the adapter has, at the shapes training uses.
//!
//! `cargo bench --bench matmul -- [--quick] [--coop-all] [--filter TEXT]`
//!
//! Kernels: the portable f32 tiled kernel (`shaders/matmul.wgsl`) always, as one dispatch and,
//! where the plan splits the product along K (`plan::split_k`, the weight gradients), also
//! as the plan runs it: `MatmulPartial` then `MatmulSplitSum` (their medians added); the
//! cooperative-matrix kernel (`shaders/matmul_coop.wgsl`, f16 operands, f32 accumulation) in
//! the configuration `coop::select` picks, when the adapter has one (`--coop-all`: every
//! configuration that fits the device, to tune the choice).
//!
//! Shapes: the record model's, at `tokens` rows per micro-batch (98,304; model width 512, KV
//! width 256, MLP 1536, vocabulary 1024): for each linear layer its forward (`nt`: y = x W^T),
//! input gradient (`nn`: dx += dy W) and weight gradient (`tn`: dW += dy^T x), the tied head
//! included; Newton-Schulz's products on 512 x 512 and 512 x 1536 matrices; and a square
//! `square`^3 product (4096).
//!
//! Timing: GPU timestamps around each run's compute pass when the device has
//! `TIMESTAMP_QUERY`, else the wall time of a submission waited on; warm-up runs first; the
//! median of the timed runs is reported. Release builds use unchecked shader modules, as
//! training does.
//!
//! Scale: `--quick` (or `WGOLF_BENCH_QUICK=1`) uses 1,024 tokens, a 256^3 square, 1 warm-up
//! and 3 timed runs (about a minute on lavapipe); `WGOLF_BENCH_TOKENS`, `WGOLF_BENCH_SQUARE`,
//! `WGOLF_BENCH_WARMUP` and `WGOLF_BENCH_RUNS` override each. Shapes whose buffers exceed the
//! adapter's binding limits are skipped with a note.
//!
//! Output: a markdown table (kernel, layout, M, N, K, median ms, TFLOP/s, GFLOP/s, use),
//! also written to the file `WGOLF_BENCH_OUT` names. `benches/torch_matmul.py` prints the same
//! table for cuBLAS.
use std::fmt::Write as _;
use std::time::Instant;
use wgolf::gpu::coop::{self, CoopParams, DeviceBounds};
use wgolf::gpu::registry::KernelRegistry;
use wgolf::gpu::GpuContext;
use wgolf::ops::matmul::Layout;
use wgolf::plan::defs::*;
use wgolf::plan::{KernelCall, Op};

struct Args {
    quick: bool,
    coop_all: bool,
    filter: Option<String>,
    tokens: usize,
    square: usize,
    warmup: usize,
    runs: usize,
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn parse_args() -> Args {
    let mut quick = std::env::var("WGOLF_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut coop_all = false;
    let mut filter = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--coop-all" => coop_all = true,
            "--filter" => filter = it.next(),
            // `cargo bench` passes --bench; anything else is not ours either.
            _ => {}
        }
    }
    Args {
        quick,
        coop_all,
        filter,
        tokens: env_usize("WGOLF_BENCH_TOKENS").unwrap_or(if quick { 1024 } else { 98_304 }),
        square: env_usize("WGOLF_BENCH_SQUARE").unwrap_or(if quick { 256 } else { 4096 }),
        warmup: env_usize("WGOLF_BENCH_WARMUP").unwrap_or(if quick { 1 } else { 3 }),
        runs: env_usize("WGOLF_BENCH_RUNS").unwrap_or(if quick { 3 } else { 20 }).max(1),
    }
}

/// One benchmarked product: what it is in training, and the op.
struct Shape {
    name: String,
    op: Op,
}

fn matmul(m: usize, n: usize, k: usize, layout: Layout, accumulate: bool) -> Op {
    Op::Matmul(Matmul { m, n, k, layout, accumulate, a_prescale_exp: 0 })
}

/// The record model's products at `tokens` rows, Newton-Schulz's, and a square one.
fn shapes(tokens: usize, square: usize) -> Vec<Shape> {
    let mut out = Vec::new();
    // (layer, in features, out features)
    let linears = [
        ("attn q, proj", 512, 512),
        ("attn k, v", 512, 256),
        ("mlp fc", 512, 1536),
        ("mlp proj", 1536, 512),
        ("tied head", 512, 1024),
    ];
    for (layer, fan_in, fan_out) in linears {
        out.push(Shape { name: format!("{layer} fwd"), op: matmul(tokens, fan_out, fan_in, Layout::Nt, false) });
        out.push(Shape { name: format!("{layer} dx"), op: matmul(tokens, fan_in, fan_out, Layout::Nn, true) });
        out.push(Shape { name: format!("{layer} dW"), op: matmul(fan_out, fan_in, tokens, Layout::Tn, true) });
    }
    // Newton-Schulz on X [rows, cols]: A = X X^T, then A A and (b A + c A A) X.
    for (rows, cols) in [(512, 512), (512, 1536)] {
        out.push(Shape { name: format!("NS {rows}x{cols} X X^T"), op: matmul(rows, rows, cols, Layout::Nt, false) });
        if rows != cols {
            out.push(Shape { name: format!("NS {rows}x{cols} A A"), op: matmul(rows, rows, rows, Layout::Nn, false) });
        }
        out.push(Shape {
            name: if rows == cols { format!("NS {rows}x{cols} A A, B X") } else { format!("NS {rows}x{cols} B X") },
            op: matmul(rows, cols, rows, Layout::Nn, false),
        });
    }
    for layout in [Layout::Nn, Layout::Nt, Layout::Tn] {
        out.push(Shape { name: format!("square {square}"), op: matmul(square, square, square, layout, false) });
    }
    out
}

/// Why `op` cannot run on this device, if it cannot (a binding over the limits).
fn too_big(ctx: &GpuContext, op: &Op) -> Option<String> {
    let limits = ctx.device.limits();
    let biggest = op.bindings().iter().map(|b| b.len as u64 * 4).max().unwrap_or(0);
    let limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    (biggest > limit).then(|| format!("a {} MiB binding exceeds the adapter's {} MiB", biggest >> 20, limit >> 20))
}

/// A buffer of `len` f32 filled with small values (exact in f16, so no kernel sees infinities).
fn filled(device: &wgpu::Device, len: usize, seed: usize) -> wgpu::Buffer {
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (len.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE,
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

/// Times `runs` dispatches of `call` (after `warmup`), in ms each.
fn time_call(
    ctx: &GpuContext,
    registry: &mut KernelRegistry,
    call: &KernelCall,
    op: &Op,
    buffers: &[wgpu::Buffer],
    warmup: usize,
    runs: usize,
) -> Result<Vec<f64>, String> {
    let device = &ctx.device;
    let kernel = registry.get(ctx, call, &op.bindings()).map_err(|e| e.to_string())?;
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
        .collect();
    let bind_group =
        device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &kernel.layout, entries: &entries });
    let [x, y, z] = call.workgroups;
    let timestamps = device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    let query_set = timestamps.then(|| {
        device.create_query_set(&wgpu::QuerySetDescriptor {
            label: None,
            ty: wgpu::QueryType::Timestamp,
            count: 2 * runs as u32,
        })
    });
    let wait = || device.poll(wgpu::PollType::wait_indefinitely()).map(|_| ()).map_err(|e| e.to_string());
    // One run: a pass with one dispatch, timestamped when `slot` is given.
    let encode = |encoder: &mut wgpu::CommandEncoder, slot: Option<u32>| {
        let timestamp_writes = match (&query_set, slot) {
            (Some(q), Some(i)) => Some(wgpu::ComputePassTimestampWrites {
                query_set: q,
                beginning_of_pass_write_index: Some(2 * i),
                end_of_pass_write_index: Some(2 * i + 1),
            }),
            _ => None,
        };
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(x, y, z);
    };
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    for _ in 0..warmup {
        let mut encoder = device.create_command_encoder(&Default::default());
        encode(&mut encoder, None);
        ctx.queue.submit([encoder.finish()]);
        wait()?;
    }
    let times = if let Some(q) = &query_set {
        let bytes = 2 * runs as u64 * 8;
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        for i in 0..runs as u32 {
            encode(&mut encoder, Some(i));
        }
        encoder.resolve_query_set(q, 0..2 * runs as u32, &resolve, 0);
        encoder.copy_buffer_to_buffer(&resolve, 0, &readback, 0, bytes);
        ctx.queue.submit([encoder.finish()]);
        readback.slice(..).map_async(wgpu::MapMode::Read, |r| r.expect("mapping the timestamps"));
        wait()?;
        let ticks: Vec<u64> =
            bytemuck::cast_slice(&readback.slice(..).get_mapped_range().map_err(|e| e.to_string())?).to_vec();
        let period = ctx.queue.get_timestamp_period() as f64;
        ticks.chunks(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period / 1e6).collect()
    } else {
        (0..runs)
            .map(|_| {
                let mut encoder = device.create_command_encoder(&Default::default());
                encode(&mut encoder, None);
                let started = Instant::now();
                ctx.queue.submit([encoder.finish()]);
                wait().map(|_| started.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<_, _>>()?
    };
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(e.to_string());
    }
    Ok(times)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The kernels to time for `op`: (name, call).
fn kernels(ctx: &GpuContext, op: &Op, coop_all: bool) -> Vec<(String, KernelCall)> {
    let mut out = vec![("f32 tiled".to_string(), op.kernel())];
    let name = |p: &CoopParams| format!("coop{} {}x{} bk{}", p.tile, p.sg_m, p.sg_n, p.bk);
    if let Ok((tile, sg_size)) = coop::device_support(ctx) {
        let Op::Matmul(Matmul { m, n, layout, .. }) = *op else {
            return out;
        };
        let bounds = DeviceBounds::from(&ctx.device.limits());
        let chosen = coop::choose(tile, sg_size, &bounds, op);
        let params: Vec<CoopParams> = if coop_all {
            CoopParams::candidates(tile, sg_size).into_iter().filter(|p| p.fits(&bounds, layout, m, n)).collect()
        } else {
            chosen.into_iter().collect()
        };
        for p in params {
            let mark = if coop_all && Some(p) == chosen { " (chosen)" } else { "" };
            if let Some(call) = coop::kernel(op, &p) {
                out.push((format!("{}{mark}", name(&p)), call));
            }
        }
    }
    out
}

fn main() {
    let args = parse_args();
    let ctx = match GpuContext::new(None) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("matmul bench: no GPU context: {e}");
            std::process::exit(1);
        }
    };
    let timer = if ctx.device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        "GPU timestamps around each run's compute pass"
    } else {
        "wall time of each submission, waited on (no TIMESTAMP_QUERY)"
    };
    let coop_line = match coop::device_support(&ctx) {
        Ok((tile, sg)) => format!("{tile}x{tile}x{tile} f16 -> f32, subgroups of {sg}"),
        Err(why) => format!("none ({why})"),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Adapter: {} ({:?}, {:?})",
        ctx.adapter_name(),
        ctx.report.info.backend,
        ctx.report.info.device_type
    );
    let _ = writeln!(out, "Cooperative matrices: {coop_line}");
    let _ = writeln!(
        out,
        "Tokens {}, square {}, {} warm-up and {} timed runs (median), {timer}; {} shader modules{}.",
        args.tokens,
        args.square,
        args.warmup,
        args.runs,
        if wgolf::gpu::registry::checked_shaders() { "checked" } else { "unchecked" },
        if args.quick { "; quick mode" } else { "" },
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "| kernel | layout | M | N | K | median ms | TFLOP/s | GFLOP/s | use |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---|");
    print!("{out}");
    let mut notes = Vec::new();
    let mut registry = KernelRegistry::new();
    for shape in shapes(args.tokens, args.square) {
        if args.filter.as_ref().is_some_and(|f| !shape.name.contains(f.as_str())) {
            continue;
        }
        let Op::Matmul(Matmul { m, n, k, layout, .. }) = shape.op else { unreachable!() };
        if let Some(why) = too_big(&ctx, &shape.op) {
            notes.push(format!("skipped {} ({m} x {n} x {k}): {why}", shape.name));
            continue;
        }
        let buffers: Vec<wgpu::Buffer> =
            shape.op.bindings().iter().enumerate().map(|(i, b)| filled(&ctx.device, b.len, i * 13)).collect();
        for (kernel, call) in kernels(&ctx, &shape.op, args.coop_all) {
            let row = match time_call(&ctx, &mut registry, &call, &shape.op, &buffers, args.warmup, args.runs) {
                Ok(times) => {
                    let ms = median(times);
                    let flops = 2.0 * m as f64 * n as f64 * k as f64;
                    let per_s = flops / (ms / 1e3);
                    format!(
                        "| {kernel} | {} | {m} | {n} | {k} | {ms:.3} | {:.2} | {:.1} | {} |",
                        layout.name(),
                        per_s / 1e12,
                        per_s / 1e9,
                        shape.name
                    )
                }
                Err(e) => {
                    notes.push(format!("{kernel} failed on {}: {e}", shape.name));
                    continue;
                }
            };
            println!("{row}");
            let _ = writeln!(out, "{row}");
        }
        for b in buffers {
            b.destroy();
        }
        // The split product as the plan emits it (`plan::emit_matmul`): both stages.
        let k_split = split_k(1, m, n, k);
        if k_split < k {
            let partial = Op::MatmulPartial(MatmulPartial { batch: 1, m, n, k, k_split, layout, a_prescale_exp: 0 });
            let splits = k.div_ceil(k_split);
            let sum = Op::MatmulSplitSum(MatmulSplitSum { batch: 1, m, n, splits, alpha: 1.0, accumulate: true });
            let mut total = 0.0;
            let mut failed = None;
            for op in [&partial, &sum] {
                let buffers: Vec<wgpu::Buffer> =
                    op.bindings().iter().enumerate().map(|(i, b)| filled(&ctx.device, b.len, i * 13)).collect();
                match time_call(&ctx, &mut registry, &op.kernel(), op, &buffers, args.warmup, args.runs) {
                    Ok(times) => total += median(times),
                    Err(e) => failed = Some(e),
                }
                for b in buffers {
                    b.destroy();
                }
            }
            if let Some(e) = failed {
                notes.push(format!("f32 split-K failed on {}: {e}", shape.name));
                continue;
            }
            let per_s = 2.0 * m as f64 * n as f64 * k as f64 / (total / 1e3);
            let row = format!(
                "| f32 split-K ({splits} x {k_split}) | {} | {m} | {n} | {k} | {total:.3} | {:.2} | {:.1} | {} |",
                layout.name(),
                per_s / 1e12,
                per_s / 1e9,
                shape.name
            );
            println!("{row}");
            let _ = writeln!(out, "{row}");
        }
    }
    if !notes.is_empty() {
        println!();
        let _ = writeln!(out);
        for n in &notes {
            println!("Note: {n}");
            let _ = writeln!(out, "Note: {n}");
        }
    }
    if let Ok(path) = std::env::var("WGOLF_BENCH_OUT") {
        if let Err(e) = std::fs::write(&path, &out) {
            eprintln!("matmul bench: could not write {path}: {e}");
            std::process::exit(1);
        }
        println!("\nwritten to {path}");
    }
}
