//! The cooperative-matrix matmul (`shaders/matmul_coop.wgsl`, `src/gpu/coop.rs`):
//! - naga validation of every variant (3 layouts x accumulate x tile 8/16, every candidate
//!   workgroup configuration, several subgroup sizes) with representative shapes; each
//!   processed pipeline module holds only its own matrix type, and its workgroup memory is
//!   what `CoopParams::workgroup_bytes` says; naga's SPIR-V backend writes them (no GPU
//!   needed);
//! - the configuration choice on synthetic adapter property lists and device limits;
//! - on the GPU, every layout against the f32 CPU reference within `Check::KernelF16`, through
//!   the executor (which asks `coop::select`) and through every fitting configuration directly,
//!   when the adapter reports a usable configuration. Elsewhere (lavapipe) that test says what
//!   it did not check and why, and checks that `select` declines and the executor's matmul
//!   still meets the f32 tolerance;
//! - on any GPU (lavapipe in CI), the shader with its cooperative built-ins emulated in plain
//!   WGSL against the CPU reference: staging, layouts, double buffering, ragged edges and both
//!   store paths, for both tiles.

mod common;

use common::{check_gpu_vs_cpu, random_inputs, run_cpu, Data};
use wgolf::gpu::coop::{self, CoopParams, DeviceBounds};
use wgolf::gpu::registry::KernelRegistry;
use wgolf::gpu::GpuContext;
use wgolf::kernels::{module, validate_with_naga};
use wgolf::ops::matmul::Layout;
use wgolf::plan::defs::*;
use wgolf::plan::{KernelCall, Op};
use wgolf::tolerance::{tolerance, Check};
use wgpu::wgt::{CooperativeMatrixProperties, CooperativeScalarType};

const LAYOUTS: [Layout; 3] = [Layout::Nt, Layout::Nn, Layout::Tn];

fn matmul(m: usize, n: usize, k: usize, layout: Layout, accumulate: bool) -> Op {
    Op::Matmul(Matmul { m, n, k, layout, accumulate, a_prescale_exp: 0 })
}

/// The first stage of a split-K product of one matrix (the weight gradients).
fn partial(m: usize, n: usize, k: usize, k_split: usize, layout: Layout) -> Op {
    Op::MatmulPartial(MatmulPartial { batch: 1, m, n, k, k_split, layout, a_prescale_exp: 0 })
}

/// The output shape and layout of a matmul or a split partial.
fn out_shape(op: &Op) -> (usize, usize, Layout) {
    match *op {
        Op::Matmul(Matmul { m, n, layout, .. }) | Op::MatmulPartial(MatmulPartial { m, n, layout, .. }) => {
            (m, n, layout)
        }
        _ => unreachable!("{op:?}"),
    }
}

// ---------------------------------------------------------------- naga (no GPU)

/// The module naga builds for one pipeline: overrides applied, only `call.entry` kept.
fn processed(call: &KernelCall) -> naga::Module {
    let composed = module(call.shader, call.entry).expect("matmul_coop is in SHADERS");
    let (module, info) = composed.validate().unwrap_or_else(|e| panic!("{e}"));
    let mut map = naga::back::PipelineConstants::default();
    for (k, v) in &call.constants {
        map.insert((*k).to_string(), *v);
    }
    let (m, _) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, call.entry)),
        &map,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", call.label()));
    m.into_owned()
}

/// Bytes of workgroup memory a processed module declares.
fn workgroup_bytes(module: &naga::Module) -> u64 {
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).expect("layout");
    module
        .global_variables
        .iter()
        .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
        .map(|(_, g)| layouter[g.ty].size as u64)
        .sum()
}

/// The cooperative matrix sizes a processed module declares.
fn coop_sizes(module: &naga::Module) -> Vec<u32> {
    let mut sizes: Vec<u32> = module
        .types
        .iter()
        .filter_map(|(_, t)| match t.inner {
            naga::TypeInner::CooperativeMatrix { columns, rows, .. } => {
                assert_eq!(columns as u32, rows as u32, "square tiles only");
                Some(columns as u32)
            }
            _ => None,
        })
        .collect();
    sizes.sort();
    sizes.dedup();
    sizes
}

#[test]
fn every_variant_validates_with_naga() {
    let shapes = [(33, 17, 65), (1, 1, 1), (256, 128, 96), (98_304, 512, 512), (512, 512, 98_304)];
    let mut checked = 0;
    for tile in [16, 8] {
        for sg_size in [8, 32, 64] {
            for p in CoopParams::candidates(tile, sg_size) {
                for layout in LAYOUTS {
                    for accumulate in [false, true] {
                        for (m, n, k) in shapes {
                            let op = matmul(m, n, k, layout, accumulate);
                            let call = coop::kernel(&op, &p).expect("a matmul has a coop kernel");
                            if let Err(e) = validate_with_naga(call.shader, call.entry, &call.constants) {
                                panic!("{e}");
                            }
                            checked += 1;
                        }
                        // The module a device gets: only its own matrix type, and the workgroup
                        // memory the Rust side budgets for.
                        let call = coop::kernel(&matmul(33, 17, 65, layout, accumulate), &p).unwrap();
                        let module = processed(&call);
                        assert_eq!(module.entry_points.len(), 1);
                        assert_eq!(coop_sizes(&module), vec![tile], "{}", call.label());
                        assert_eq!(workgroup_bytes(&module), p.workgroup_bytes(layout), "{}", call.label());
                        assert_eq!(module.entry_points[0].workgroup_size, [p.threads(), 1, 1], "{}", call.label());
                    }
                }
            }
        }
    }
    // Split partials (grid z = split, K_SPLIT set), including the record's weight gradient.
    for (m, n, k, k_split) in [(33, 17, 65, 32), (256, 512, 98_304, 8192)] {
        for layout in LAYOUTS {
            let p = CoopParams::candidates(16, 32)[0];
            let call = coop::kernel(&partial(m, n, k, k_split, layout), &p).expect("a split partial has a coop kernel");
            assert!(call.constants.contains(&("K_SPLIT", k_split as f64)), "{}", call.label());
            assert_eq!(call.workgroups[2] as usize, k.div_ceil(k_split));
            assert!(!call.constants.contains(&("ACCUMULATE", 1.0)), "partials overwrite: {}", call.label());
            if let Err(e) = validate_with_naga(call.shader, call.entry, &call.constants) {
                panic!("{e}");
            }
            checked += 1;
        }
    }
    println!("naga validated {checked} matmul_coop pipelines");
    assert!(checked >= 2 * 3 * 2 * 5, "too few variants checked: {checked}");
}

/// naga's SPIR-V backend (what wgpu's Vulkan backend runs) writes every variant, with the
/// options wgpu uses on a Vulkan 1.3 device with cooperative matrices. With
/// `WGOLF_SPIRV_DIR` set, the binaries are written there (for `spirv-val --target-env
/// vulkan1.3`, which this test does not need).
#[test]
fn every_variant_compiles_to_spirv() {
    let dump = std::env::var_os("WGOLF_SPIRV_DIR").map(std::path::PathBuf::from);
    let mut written = 0;
    for tile in [16, 8] {
        for p in CoopParams::candidates(tile, 32).into_iter().take(2) {
            for layout in LAYOUTS {
                for accumulate in [false, true] {
                    let call = coop::kernel(&matmul(33, 17, 65, layout, accumulate), &p).unwrap();
                    let module = processed(&call);
                    let info = naga::valid::Validator::new(
                        naga::valid::ValidationFlags::all(),
                        naga::valid::Capabilities::all(),
                    )
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{}: {e:?}", call.label()));
                    let options = naga::back::spv::Options {
                        lang_version: (1, 6),
                        flags: naga::back::spv::WriterFlags::empty(),
                        bounds_check_policies: naga::proc::BoundsCheckPolicies {
                            index: naga::proc::BoundsCheckPolicy::Restrict,
                            buffer: naga::proc::BoundsCheckPolicy::Restrict,
                            image_load: naga::proc::BoundsCheckPolicy::Restrict,
                            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
                        },
                        ..Default::default()
                    };
                    let pipeline = naga::back::spv::PipelineOptions {
                        shader_stage: naga::ShaderStage::Compute,
                        entry_point: call.entry.to_string(),
                    };
                    let words = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
                        .unwrap_or_else(|e| panic!("{}: {e}", call.label()));
                    assert!(words.len() > 100);
                    if let Some(dir) = &dump {
                        let name = format!(
                            "{}_{}_acc{}_sg{}x{}_bk{}.spv",
                            call.entry,
                            layout.name(),
                            accumulate as u8,
                            p.sg_m,
                            p.sg_n,
                            p.bk
                        );
                        std::fs::write(dir.join(name), bytemuck::cast_slice::<u32, u8>(&words)).expect("write spv");
                    }
                    written += 1;
                }
            }
        }
    }
    assert_eq!(written, 2 * 2 * 3 * 2);
}

#[test]
fn the_record_configuration_fits_an_h100_sized_device() {
    // The configuration the record shapes get with 16x16 tiles and 32-wide subgroups.
    let p = CoopParams { tile: 16, sg_size: 32, sg_m: 2, sg_n: 4, bk: 32 };
    assert!(p.is_valid());
    assert_eq!((p.bm(), p.bn(), p.threads()), (128, 128, 256));
    assert_eq!(p.per_thread(), (16, 16));
    // The largest layout (A and B both staged with BK-wide rows) needs exactly 48 KiB.
    assert_eq!(p.workgroup_bytes(Layout::Nt), 49_152);
    let call = coop::kernel(&matmul(98_304, 512, 512, Layout::Nt, false), &p).unwrap();
    assert_eq!(call.entry, "matmul_coop16");
    assert_eq!(call.workgroups, [4, 768, 1]);
}

#[test]
fn validation_rejects_a_tile_the_entry_point_lacks_a_value_for() {
    // TILE and SG_SIZE have no default: a call that forgets them is an error, not a silent 0.
    let p = CoopParams { tile: 16, sg_size: 32, sg_m: 2, sg_n: 4, bk: 32 };
    let call = coop::kernel(&matmul(64, 64, 64, Layout::Nn, false), &p).unwrap();
    let without: Vec<(&str, f64)> = call.constants.iter().copied().filter(|(k, _)| *k != "TILE").collect();
    assert!(validate_with_naga(call.shader, call.entry, &without).is_err());
}

// ---------------------------------------------------------------- configuration choice

fn prop(size: u32, ab: CooperativeScalarType, cr: CooperativeScalarType) -> CooperativeMatrixProperties {
    CooperativeMatrixProperties {
        m_size: size,
        n_size: size,
        k_size: size,
        ab_type: ab,
        cr_type: cr,
        saturating_accumulation: false,
    }
}

#[test]
fn pick_tile_on_synthetic_property_lists() {
    use CooperativeScalarType::{F16, F32, I32, U32};
    // An NVIDIA-like list: 16x16 f16 -> f32 among others.
    let nvidia = [prop(16, F16, F16), prop(16, F16, F32), prop(8, F16, F32), prop(16, U32, U32)];
    assert_eq!(coop::pick_tile(&nvidia), Some(16));
    // Only 8x8 (newer lavapipe).
    assert_eq!(coop::pick_tile(&[prop(8, F16, F16), prop(8, F16, F32)]), Some(8));
    // None at all (lavapipe 22.3, most adapters).
    assert_eq!(coop::pick_tile(&[]), None);
    // Only f32 operands (wgpu's 8x8 f32 configuration on Metal): not f16 x f16 -> f32.
    assert_eq!(coop::pick_tile(&[prop(8, F32, F32), prop(16, F32, F32)]), None);
    // f16 accumulation only, or integer types: not usable either.
    assert_eq!(coop::pick_tile(&[prop(16, F16, F16), prop(16, I32, I32)]), None);
    // A non-square configuration does not count as a square tile.
    let rect = CooperativeMatrixProperties { m_size: 16, n_size: 8, k_size: 16, ..prop(16, F16, F32) };
    assert_eq!(coop::pick_tile(&[rect]), None);
}

#[test]
fn choose_respects_device_limits_and_grid_size() {
    let h100 = DeviceBounds {
        max_invocations: 1024,
        max_workgroup_x: 1024,
        max_workgroup_bytes: 49_152,
        max_workgroups_per_dim: 65_535,
    };
    // Record shapes: plenty of workgroups, so the largest tile.
    for layout in LAYOUTS {
        let op = matmul(98_304, 512, 512, layout, false);
        let p = coop::choose(16, 32, &h100, &op).expect("fits");
        assert_eq!((p.sg_m, p.sg_n, p.bk), (2, 4, 32), "{layout:?}");
    }
    // A 512 x 512 weight gradient (K = tokens): 16 workgroups at 128 x 128, so smaller tiles.
    let wgrad = matmul(512, 512, 98_304, Layout::Tn, true);
    let p = coop::choose(16, 32, &h100, &wgrad).unwrap();
    let [x, y, _] = p.grid(512, 512);
    assert!(x * y > 16, "{p:?}");
    // 32 KiB of workgroup memory (lavapipe): the 48 KiB configuration is out.
    let small = DeviceBounds { max_workgroup_bytes: 32_768, ..h100 };
    for layout in LAYOUTS {
        let op = matmul(98_304, 512, 512, layout, false);
        let p = coop::choose(16, 32, &small, &op).unwrap();
        assert!(p.workgroup_bytes(layout) <= 32_768, "{p:?}");
    }
    // Not enough invocations for even one subgroup grid: nothing.
    let tiny = DeviceBounds { max_invocations: 16, max_workgroup_x: 16, ..h100 };
    assert_eq!(coop::choose(16, 32, &tiny, &matmul(64, 64, 64, Layout::Nn, false)), None);
    // The record's 256 x 512 weight gradient, split into 12 ranges of 8,192: the workgroups
    // counted are those of every split, so the largest tile that reaches the target with them.
    let split = partial(256, 512, 98_304, 8192, Layout::Tn);
    let p = coop::choose(16, 32, &h100, &split).unwrap();
    let call = coop::kernel(&split, &p).unwrap();
    let [x, y, z] = call.workgroups;
    assert_eq!(z, 12);
    assert!(u64::from(x * y * z) >= coop::TARGET_WORKGROUPS, "{p:?}");
    // A batched partial (Newton-Schulz stacks) keeps the portable kernel.
    let batched = Op::MatmulPartial(MatmulPartial {
        batch: 2,
        m: 64,
        n: 64,
        k: 512,
        k_split: 128,
        layout: Layout::Nn,
        a_prescale_exp: 0,
    });
    assert_eq!(coop::choose(16, 32, &h100, &batched), None);
    assert_eq!(coop::kernel(&batched, &p), None);
    // Only matmuls have a cooperative kernel.
    assert_eq!(coop::choose(16, 32, &h100, &Op::Relu2Fwd(Relu2Fwd { count: 4 })), None);
    assert_eq!(coop::kernel(&Op::Relu2Fwd(Relu2Fwd { count: 4 }), &CoopParams::candidates(16, 32)[0]), None);
    // Every candidate of every tile and subgroup size is valid for the shader.
    for tile in [8, 16] {
        for sg in [4, 8, 16, 32, 64, 128] {
            assert!(CoopParams::candidates(tile, sg).iter().all(|p| p.is_valid()));
        }
    }
}

// ---------------------------------------------------------------- GPU

/// Runs one kernel call for `op` from `inputs`; returns c.
fn run_call(ctx: &GpuContext, call: &KernelCall, op: &Op, inputs: &[Data]) -> Vec<f32> {
    use wgpu::util::DeviceExt;
    let device = &ctx.device;
    let mut registry = KernelRegistry::new();
    let kernel = registry.get(ctx, call, &op.bindings()).unwrap_or_else(|e| panic!("{e}"));
    let buffers: Vec<wgpu::Buffer> = inputs
        .iter()
        .map(|d| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(d.f32()),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            })
        })
        .collect();
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
        .collect();
    let bind_group =
        device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &kernel.layout, entries: &entries });
    let bytes = buffers[0].size();
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        let [x, y, z] = call.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
    encoder.copy_buffer_to_buffer(&buffers[0], 0, &readback, 0, bytes);
    ctx.queue.submit([encoder.finish()]);
    let slice = readback.slice(..);
    slice.map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    let out = bytemuck::cast_slice::<u8, f32>(&slice.get_mapped_range().expect("mapped")).to_vec();
    out
}

/// Ragged shapes (not multiples of any tile), shapes whose workgroups lie inside c (the
/// direct-store path) and mixes of both.
const GPU_SHAPES: [(usize, usize, usize); 6] =
    [(33, 17, 65), (1, 1, 1), (5, 7, 3), (256, 128, 96), (130, 260, 40), (128, 132, 48)];

#[test]
fn coop_matmul_matches_the_cpu_reference() {
    let ctx = common::gpu();
    let mut ops: Vec<Op> = GPU_SHAPES
        .iter()
        .flat_map(|&(m, n, k)| LAYOUTS.into_iter().flat_map(move |l| [false, true].map(|acc| matmul(m, n, k, l, acc))))
        .collect();
    // Split partials: ragged splits, and outputs whose workgroups lie inside c.
    ops.extend(LAYOUTS.map(|l| partial(33, 17, 200, 64, l)));
    ops.extend(LAYOUTS.map(|l| partial(128, 132, 150, 48, l)));
    let (tile, sg_size) = match coop::device_support(&ctx) {
        Ok(support) => support,
        Err(why) => {
            println!(
                "coop_matmul: CHECKED NO COOPERATIVE-MATRIX KERNEL on {}: {why}. Checked instead that \
                 coop::select declines every matmul and the executor's matmul meets the f32 tolerance.",
                ctx.adapter_name()
            );
            for op in &ops {
                assert_eq!(coop::select(&ctx, op), None, "{op:?}");
            }
            // f16 operands would miss this tolerance: the executor really runs the f32 kernel.
            for (i, op) in ops.iter().enumerate().filter(|(_, op)| matches!(op, Op::Matmul(Matmul { m: 33, .. }))) {
                check_gpu_vs_cpu(op, &random_inputs(op, 500 + i as u64), tolerance(Check::KernelF32));
            }
            return;
        }
    };
    println!("coop_matmul: {} has {tile}x{tile}x{tile} f16 -> f32 with subgroups of {sg_size}", ctx.adapter_name());
    let tol = tolerance(Check::KernelF16);
    // Through the executor, as training runs it.
    for (i, op) in ops.iter().enumerate() {
        let call = coop::select(&ctx, op).unwrap_or_else(|| panic!("select declined {op:?}"));
        assert_eq!(call.shader, coop::SHADER);
        check_gpu_vs_cpu(op, &random_inputs(op, 700 + i as u64), tol);
    }
    // Every configuration that fits the device, directly.
    let bounds = DeviceBounds::from(&ctx.device.limits());
    let mut runs = 0;
    for p in CoopParams::candidates(tile, sg_size) {
        for (i, op) in ops.iter().enumerate() {
            let (m, n, layout) = out_shape(op);
            if !p.fits(&bounds, layout, m, n) {
                continue;
            }
            let call = coop::kernel(op, &p).unwrap();
            let inputs = random_inputs(op, 900 + i as u64);
            let want = run_cpu(op, &inputs);
            let got = run_call(&ctx, &call, op, &inputs);
            common::assert_close(&format!("{} (gpu vs cpu)", call.label()), &got, &want[0].1, tol);
            runs += 1;
        }
    }
    println!("coop_matmul: {runs} direct runs over {} configurations", CoopParams::candidates(tile, sg_size).len());
    assert!(runs > 0);
}

// ---------------------------------------------------------------- emulation (any GPU)

/// The module of `matmul_coop.wgsl` for one tile size (the family file and its tile file)
/// with every cooperative-matrix type and built-in replaced by plain WGSL,
/// so that its staging, layouts, double buffering, ragged edges and both store paths run on
/// adapters without cooperative matrices (lavapipe in CI). Only the cooperative built-ins
/// themselves are not exercised: the GPU test above covers them where an adapter has them.
///
/// A matrix value becomes a handle (`u32`) to 256 floats of a fourth binding, `emu`, in a
/// region private to the invocation: handles 0..8 are the accumulators `c00`..`c31`
/// (assignments to them copy), the others a ring that loads allocate from. Every invocation
/// of a subgroup computes whole tiles, redundantly. (Private arrays would be simpler, but
/// lavapipe lowers their dynamic indexing so that the shader takes minutes to compile and run.)
fn emulated_source(tile: u32) -> String {
    let entry = CoopParams { tile, sg_size: 32, sg_m: 1, sg_n: 1, bk: tile }.entry();
    let src = module(coop::SHADER, entry).expect("in SHADERS").source;
    let src = src.replace("enable wgpu_cooperative_matrix;\n", "");
    let mut out = emulate_section(&src, tile);
    out.push_str(&emu_prelude());
    out
}

/// The emulation's helpers. Tiles are stored with a row stride of 16 and processed 4 wide
/// (4 x 4 products per multiply-add step), which keeps both lavapipe's compile time and the
/// loop iterations low: llvmpipe stops loops after 65535 iterations in all (its loop
/// limiter), which silently truncated a more literal emulation.
fn emu_prelude() -> String {
    let four = |f: &dyn Fn(u32) -> String| (0..4).map(f).collect::<Vec<_>>().join("\n");
    let mut out = String::from(EMU_PRELUDE);
    let mma = four(&|p| {
        let row = format!(
            "vec4<f32>(emu[bp + {o}u], emu[bp + {o1}u], emu[bp + {o2}u], emu[bp + {o3}u])",
            o = p * 16,
            o1 = p * 16 + 1,
            o2 = p * 16 + 2,
            o3 = p * 16 + 3
        );
        format!("        acc4 += emu[ap + {p}u] * {row};")
    });
    let zero = four(&|q| format!("        emu[emu_at(h, x * 4u + {q}u)] = 0.0;"));
    let copy = four(&|q| format!("        emu[emu_at(dst, x * 4u + {q}u)] = emu[emu_at(src, x * 4u + {q}u)];"));
    out.push_str(&format!(
        "fn emu_zero(h: Emu) -> Emu {{
    for (var x = 0u; x < emu_edge(64u); x++) {{
{zero}
    }}
    return h;
}}
fn emu_assign(dst: Emu, src: Emu) -> Emu {{
    if dst != src {{
        for (var x = 0u; x < emu_edge(64u); x++) {{
{copy}
        }}
    }}
    return dst;
}}
// acc += a b, in place: step x adds a[i][p..p+4] times b[p..p+4][j..j+4] to acc[i][j..j+4].
fn emu_mma(t_: u32, a: Emu, b: Emu, acc: Emu) -> Emu {{
    let t = emu_edge(t_);
    let w = t / 4u;
    for (var x = 0u; x < t * w * w; x++) {{
        let i = x / (w * w);
        let p = ((x / w) % w) * 4u;
        let j = (x % w) * 4u;
        let ap = emu_at(a, i * 16u + p);
        let bp = emu_at(b, p * 16u + j);
        let cp = emu_at(acc, i * 16u + j);
        var acc4 = vec4<f32>(emu[cp], emu[cp + 1u], emu[cp + 2u], emu[cp + 3u]);
{mma}
        emu[cp] = acc4.x;
        emu[cp + 1u] = acc4.y;
        emu[cp + 2u] = acc4.z;
        emu[cp + 3u] = acc4.w;
    }}
    return acc;
}}
"
    ));
    for (array, elem) in [("stage_a", "f16"), ("stage_b", "f16"), ("c", "f32"), ("scratch", "f32")] {
        let at = |q: u32| format!("select(i + (q + {q}u) * ld + r, i + r * ld + q + {q}u, row_major)");
        let ld = four(&|q| format!("        emu[emu_at(h, r * 16u + q + {q}u)] = f32({array}[{}]);", at(q)));
        let st = four(&|q| format!("        {array}[{}] = {elem}(emu[emu_at(h, r * 16u + q + {q}u)]);", at(q)));
        out.push_str(&format!(
            "fn emu_ld_{array}(i: u32, ld: u32, row_major: bool, t_: u32) -> Emu {{
    let t = emu_edge(t_);
    let h = emu_fresh();
    for (var x = 0u; x < t * t / 4u; x++) {{
        let r = x / (t / 4u);
        let q = (x % (t / 4u)) * 4u;
{ld}
    }}
    return h;
}}
fn emu_st_{array}(h: Emu, i: u32, ld: u32, row_major: bool, t_: u32) {{
    let t = emu_edge(t_);
    for (var x = 0u; x < t * t / 4u; x++) {{
        let r = x / (t / 4u);
        let q = (x % (t / 4u)) * 4u;
{st}
    }}
}}
"
        ));
    }
    out
}

const EMU_PRELUDE: &str = "
// ---- emulation of the cooperative built-ins (tests only)
alias Emu = u32;
const EMU_ACC: u32 = 8u;
const EMU_RING: u32 = 16u;
@group(0) @binding(3) var<storage, read_write> emu: array<f32>;
var<private> emu_base: u32;
var<private> emu_next: u32;
fn emu_init(wg: vec3<u32>, lid: u32) {
    let groups_x = (N + BN - 1u) / BN;
    let groups_y = (M + BM - 1u) / BM;
    emu_base = (((wg.z * groups_y + wg.y) * groups_x + wg.x) * THREADS + lid) * (EMU_ACC + EMU_RING) * 256u;
    emu_next = 0u;
}
// The tile edge, opaque to the driver's compiler (c is never empty).
fn emu_edge(t: u32) -> u32 {
    return select(t, 1u, arrayLength(&c) == 0u);
}
fn emu_at(h: Emu, i: u32) -> u32 {
    return emu_base + h * 256u + i;
}
fn emu_fresh() -> Emu {
    let h = EMU_ACC + emu_next % EMU_RING;
    emu_next += 1u;
    return h;
}
";

/// The text between `from` and the first `until` after it, and the rest after `until`.
fn take_until<'a>(s: &'a str, until: &str) -> (&'a str, &'a str) {
    let i = s.find(until).unwrap_or_else(|| panic!("expected {until:?} in {:?}", &s[..s.len().min(80)]));
    (&s[..i], &s[i + until.len()..])
}

/// Rewrites the cooperative syntax of a module whose tiles are `t` wide.
fn emulate_section(text: &str, t: u32) -> String {
    // Comments name the built-ins too: drop them.
    let text: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).map(|l| format!("{l}\n")).collect();
    let text = text.as_str();
    // coopLoad[T]<TYPE>(&ARRAY[INDEX], LD) -> emu_ld_ARRAY(INDEX, LD, ROW_MAJOR, t)
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("coopLoad") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "coopLoad".len()..];
        let (row_major, after) = match after.strip_prefix('T') {
            Some(a) => (true, a),
            None => (false, after),
        };
        let (_, after) = take_until(after, ">(&");
        let (array, after) = take_until(after, "[");
        let (index, after) = take_until(after, "], ");
        let (ld, after) = take_until(after, ")");
        out.push_str(&format!("emu_ld_{array}({index}, {ld}, {row_major}, {t}u)"));
        rest = after;
    }
    out.push_str(rest);
    // coopStore[T](VALUE, &ARRAY[INDEX], LD) -> emu_st_ARRAY(VALUE, INDEX, LD, ROW_MAJOR, t)
    let text = out;
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("coopStore") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "coopStore".len()..];
        let (row_major, after) = match after.strip_prefix('T') {
            Some(a) => (true, a),
            None => (false, after),
        };
        let after = after.strip_prefix('(').expect("coopStore(");
        let (value, after) = take_until(after, ", &");
        let (array, after) = take_until(after, "[");
        let (index, after) = take_until(after, "], ");
        let (ld, after) = take_until(after, ")");
        out.push_str(&format!("emu_st_{array}({value}, {index}, {ld}, {row_major}, {t}u)"));
        rest = after;
    }
    out.push_str(rest);
    // Types -> Emu; the multiply-add; accumulators; the per-invocation region.
    let text = out.replace("coopMultiplyAdd(", &format!("emu_mma({t}u, "));
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("coop_mat") {
        out.push_str(&rest[..i]);
        let (_, after) = take_until(&rest[i..], ">");
        out.push_str("Emu");
        rest = after;
    }
    out.push_str(rest);
    let mut lines = Vec::new();
    for line in out.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let acc = |name: &str| {
            let b = name.as_bytes();
            name.len() == 3 && b[0] == b'c' && b[1].is_ascii_digit() && b[2].is_ascii_digit()
        };
        if let Some(decl) = trimmed.strip_prefix("var ").filter(|d| d.ends_with(" = TileC();")) {
            let name = &decl[..3];
            assert!(acc(name), "unexpected matrix variable in {line:?}");
            let slot = (name.as_bytes()[1] - b'0') as u32 * 2 + (name.as_bytes()[2] - b'0') as u32;
            lines.push(format!("{indent}var {name} = emu_zero({slot}u);"));
        } else if trimmed.len() > 6 && acc(&trimmed[..3]) && trimmed[3..].starts_with(" = ") {
            let (name, value) = (&trimmed[..3], trimmed[6..].trim_end_matches(';'));
            lines.push(format!("{indent}{name} = emu_assign({name}, {value});"));
        } else {
            lines.push(line.to_string());
            if trimmed == "let row0 = wg.y * BM;" {
                lines.push(format!("{indent}emu_init(wg, lid);"));
            }
        }
    }
    lines.join("\n") + "\n"
}

#[test]
fn emulated_source_keeps_no_cooperative_syntax() {
    let sources = [16, 8].map(emulated_source);
    for src in &sources {
        let code: Vec<&str> = src.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
        for word in ["coop_mat", "coopLoad", "coopStore", "coopMultiplyAdd", "wgpu_cooperative_matrix"] {
            assert!(!code.iter().any(|l| l.contains(word)), "{word} left in the emulated source");
        }
    }
    // Both tiles' kernels, each with its 8 accumulators.
    assert_eq!(sources.iter().map(|src| src.matches("emu_init(wg, lid);").count()).sum::<usize>(), 2);
    assert_eq!(sources.iter().map(|src| src.matches("= emu_zero(").count()).sum::<usize>(), 16);
    // They validate with naga without the cooperative-matrix capability.
    for src in &sources {
        let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
        let caps = naga::valid::Capabilities::all() - naga::valid::Capabilities::COOPERATIVE_MATRIX;
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
    }
}

/// Runs one emulated-kernel call from `inputs`; returns c.
fn run_emulated(
    ctx: &GpuContext,
    module: &wgpu::ShaderModule,
    call: &KernelCall,
    p: &CoopParams,
    inputs: &[Data],
) -> Vec<f32> {
    use wgpu::util::DeviceExt;
    let device = &ctx.device;
    let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..4)
        .map(|i| wgpu::BindGroupLayoutEntry {
            binding: i,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: i == 1 || i == 2 },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: None,
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("emulated matmul_coop"),
        layout: Some(&pipeline_layout),
        module,
        entry_point: Some(call.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &call.constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    if let Some(e) = pollster::block_on(scope.pop()) {
        panic!("{}: {e}", call.label());
    }
    let mut buffers: Vec<wgpu::Buffer> = inputs
        .iter()
        .map(|d| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(d.f32()),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            })
        })
        .collect();
    let [x, y, z] = call.workgroups;
    let emu_bytes = (x * y * z * p.threads()) as u64 * (8 + 16) * 256 * 4;
    buffers.push(device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("emu"),
        size: emu_bytes,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    }));
    let bind_entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
        .collect();
    let bind_group =
        device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &bind_entries });
    let bytes = buffers[0].size();
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(x, y, z);
    }
    encoder.copy_buffer_to_buffer(&buffers[0], 0, &readback, 0, bytes);
    ctx.queue.submit([encoder.finish()]);
    let slice = readback.slice(..);
    slice.map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    let out = bytemuck::cast_slice::<u8, f32>(&slice.get_mapped_range().expect("mapped")).to_vec();
    out
}

#[test]
fn emulated_coop_matmul_matches_the_cpu_reference() {
    let ctx = common::gpu();
    let Some(lo) = emulation_subgroup_size(&ctx) else { return };
    let modules = [8, 16].map(|tile| (tile, emulated_module(&ctx, tile)));
    let bounds = DeviceBounds::from(&ctx.device.limits());
    let tol = tolerance(Check::KernelF16);
    // Both tiles; the largest configuration (several subgroups) and the smallest. Each shape
    // has 1.5 x 2 workgroups and more, so one dispatch has workgroups inside c (direct
    // stores; N % 4 == 0) and edge ones (guarded stores through scratch), and K takes several
    // ragged slices. Every layout, both modes. Each case is its own pipeline, which lavapipe
    // takes several seconds to compile (Mesa caches them on disk for later runs).
    let mut runs = 0;
    let mut split_runs = 0;
    for (tile, module) in &modules {
        let tile = *tile;
        let candidates = CoopParams::candidates(tile, lo);
        let (largest, smallest) = (candidates[0], *candidates.last().unwrap());
        let mut cases = vec![(largest, [(Layout::Nt, false), (Layout::Nn, true), (Layout::Tn, true)].as_slice())];
        if smallest != largest {
            cases.push((smallest, [(Layout::Nn, true), (Layout::Tn, false)].as_slice()));
        }
        for (p, variants) in cases {
            let (m, n, k) = (p.bm() as usize * 3 / 2 + 4, p.bn() as usize * 2 + 4, p.bk as usize * 3 + 5);
            for &(layout, accumulate) in variants {
                let op = matmul(m, n, k, layout, accumulate);
                assert!(p.fits(&bounds, layout, m, n), "{p:?} does not fit {}", ctx.adapter_name());
                let call = coop::kernel(&op, &p).unwrap();
                let inputs = random_inputs(&op, (m * 31 + n * 7 + k) as u64 + accumulate as u64);
                let want = run_cpu(&op, &inputs);
                let started = std::time::Instant::now();
                let got = run_emulated(&ctx, module, &call, &p, &inputs);
                println!("{:.1} s {}", started.elapsed().as_secs_f64(), call.label());
                common::assert_close(&format!("emulated {} (gpu vs cpu)", call.label()), &got, &want[0].1, tol);
                runs += 1;
            }
        }
        // A split partial (grid z = split, each over its K range, the last one ragged, into
        // its own slice of c) on the largest configuration, in the weight-gradient layout.
        let p = largest;
        let (m, n, k_split) = (p.bm() as usize * 3 / 2 + 4, p.bn() as usize * 2 + 4, p.bk as usize * 2);
        let op = partial(m, n, k_split * 2 + p.bk as usize + 3, k_split, Layout::Tn);
        let call = coop::kernel(&op, &p).unwrap();
        assert_eq!(call.workgroups[2], 3);
        let inputs = random_inputs(&op, (m * 13 + n) as u64);
        let want = run_cpu(&op, &inputs);
        let started = std::time::Instant::now();
        let got = run_emulated(&ctx, module, &call, &p, &inputs);
        println!("{:.1} s {}", started.elapsed().as_secs_f64(), call.label());
        common::assert_close(&format!("emulated {} (gpu vs cpu)", call.label()), &got, &want[0].1, tol);
        split_runs += 1;
    }
    println!("emulated matmul_coop: {runs} runs and {split_runs} split runs on {}", ctx.adapter_name());
    assert!(runs >= 2 * 3, "only {runs} emulated runs");
    assert_eq!(split_runs, 2);
}

/// Issue 9 item 6: at the record's 786,432 tokens per step every activation gradient carries
/// the loss's 1/786,432 (1.3e-6), below f16's smallest normal. The record plan's backward
/// products prescale exactly their gradient operands by 2^20, and with that the emulated
/// cooperative-matrix kernel (f16 staging) gives the tied embedding's weight gradient and a
/// block's input gradient within `Check::GradF16` of the f32 reference; without it (the
/// kernel before this change) most of the logits' gradient flushes to zero and the check
/// fails, which the test also asserts.
#[test]
fn record_scale_gradients_survive_f16_staging() {
    use wgolf::plan::{Phase, Role};
    let cfg = wgolf::config::Config::load(std::path::Path::new("configs/record.toml"), &[]).unwrap();
    assert_eq!(cfg.step_tokens(), 786_432, "the record's tokens per step (record-spec.md)");
    let exp = 20; // 2^20 / 786,432 = 1.33
    let plan = wgolf::model::build_plan(&cfg).unwrap();
    let mut backward_products = 0;
    for phase in Phase::ALL {
        for step in plan.steps(phase) {
            // A weight gradient is split along K: its first stage is the product.
            let a_prescale_exp = match step.op {
                Op::Matmul(mm) => mm.a_prescale_exp,
                Op::MatmulPartial(p) => p.a_prescale_exp,
                _ => continue,
            };
            let a_role = plan.tensor(step.args[1]).role;
            if phase == Phase::Backward {
                assert!(matches!(a_role, Role::ActGrad), "a backward product's a is a gradient: {:?}", step.op);
                assert_eq!(a_prescale_exp, exp, "{:?}", step.op);
                backward_products += 1;
            } else {
                assert_eq!(a_prescale_exp, 0, "{phase:?} {:?}", step.op);
            }
        }
    }
    assert_eq!(backward_products, 2 * (1 + 11 * 6 + 1), "head, 11 blocks of 6 linears, bigram projection");

    let ctx = common::gpu();
    let Some(sg_size) = emulation_subgroup_size(&ctx) else { return };
    let scale = 1.0 / cfg.step_tokens() as f64;
    let tol = tolerance(Check::GradF16);
    // The tied embedding's weight gradient dW[V, d] += dlogits^T x (K = the rows), from the
    // cross-entropy reference's logits gradient at the record's vocabulary and softcap;
    // a linear's input gradient dx[rows, d] += dy W with dy a 1/tokens-scaled gradient.
    let (rows, vocab, d) = (64, cfg.model.vocab_size, 32);
    let logits = common::normal(1, rows * vocab, 3.0);
    let targets = common::ids(2, rows, vocab);
    let mut dlogits = vec![0f32; rows * vocab];
    let mut loss = vec![0f32; rows];
    let softcap = cfg.model.logit_softcap;
    wgolf::ops::cross_entropy::cross_entropy(Some(&mut dlogits), &mut loss, &logits, &targets, vocab, softcap, scale);
    let dy: Vec<f32> = common::normal(3, rows * 128, 1.0).iter().map(|v| v * scale as f32).collect();
    let cases = [
        ("tied embedding dW", vocab, d, rows, Layout::Tn, dlogits, common::normal(4, rows * d, 1.0)),
        ("linear dx", rows, d, 128, Layout::Nn, dy, common::normal(5, 128 * d, 0.05)),
    ];
    for tile in [16, 8] {
        let module = emulated_module(&ctx, tile);
        let p = *CoopParams::candidates(tile, sg_size).last().unwrap();
        for (what, m, n, k, layout, a, b) in &cases {
            let (m, n, k) = (*m, *n, *k);
            // Accumulated into a cleared gradient (a step's first micro-batch).
            let inputs = [Data::F32(vec![0.0; m * n]), Data::F32(a.clone()), Data::F32(b.clone())];
            let run = |a_prescale_exp| {
                let op = Op::Matmul(Matmul { m, n, k, layout: *layout, accumulate: true, a_prescale_exp });
                let want = run_cpu(&op, &inputs).remove(0).1;
                let got = run_emulated(&ctx, &module, &coop::kernel(&op, &p).unwrap(), &p, &inputs);
                let lost = got.iter().zip(&want).filter(|(g, w)| **g == 0.0 && **w != 0.0).count();
                (got, want, lost)
            };
            let (got, want, lost) = run(exp);
            println!("tile {tile} {what}: prescaled 2^{exp}: {lost} of {} values lost", want.len());
            common::assert_close(&format!("{what}, tile {tile}, prescaled (emulated coop vs cpu)"), &got, &want, tol);
            let (got, want, lost) = run(0);
            println!("tile {tile} {what}: not prescaled: {lost} of {} values lost", want.len());
            assert!(
                wgolf::tolerance::first_mismatch(&got, &want, tol).is_some(),
                "{what}, tile {tile}: without the prescale f16 staging should lose the gradient, but it met the tolerance"
            );
        }
    }
}

/// The subgroup size the emulated kernel runs with, or `None` (after saying so) where the
/// adapter lacks f16, subgroups or a fixed subgroup size (lavapipe has all three).
fn emulation_subgroup_size(ctx: &GpuContext) -> Option<u32> {
    let features = ctx.device.features();
    let (lo, hi) = (ctx.report.info.subgroup_min_size, ctx.report.info.subgroup_max_size);
    let usable = features.contains(wgpu::Features::SHADER_F16)
        && features.contains(wgpu::Features::SUBGROUP)
        && lo == hi
        && lo > 0;
    if !usable {
        println!(
            "emulated matmul_coop: CHECKED NOTHING on {}: the emulation needs f16 ({}), subgroups ({}) \
             and one subgroup size (sizes {lo}..{hi})",
            ctx.adapter_name(),
            features.contains(wgpu::Features::SHADER_F16),
            features.contains(wgpu::Features::SUBGROUP),
        );
        return None;
    }
    Some(lo)
}

/// The emulated module of one tile size.
fn emulated_module(ctx: &GpuContext, tile: u32) -> wgpu::ShaderModule {
    ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("emulated matmul_coop"),
        source: wgpu::ShaderSource::Wgsl(emulated_source(tile).into()),
    })
}
