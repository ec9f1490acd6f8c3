//! The cooperative-matrix matmul (`shaders/matmul_coop.wgsl`, `src/gpu/coop.rs`):
//! - naga validation of every variant (3 layouts x accumulate x tile 8/16, every candidate
//!   workgroup configuration, several subgroup sizes) with representative shapes; each
//!   processed pipeline module holds only its own matrix type, and its workgroup memory is
//!   what `CoopParams::workgroup_bytes` says (no GPU needed);
//! - the configuration choice on synthetic adapter property lists and device limits;
//! - on the GPU, every layout against the f32 CPU reference within `Check::KernelF16`, through
//!   the executor (which asks `coop::select`) and through every fitting configuration directly,
//!   when the adapter reports a usable configuration. Elsewhere (lavapipe) that test says what
//!   it did not check and why, and checks that `select` declines and the executor's matmul
//!   still meets the f32 tolerance.

mod common;

use common::{check_gpu_vs_cpu, random_inputs, run_cpu, Data};
use wgolf::gpu::coop::{self, CoopParams, DeviceBounds};
use wgolf::gpu::registry::KernelRegistry;
use wgolf::gpu::GpuContext;
use wgolf::kernels::{shader_source, validate_with_naga};
use wgolf::ops::matmul::Layout;
use wgolf::plan::{KernelCall, Op};
use wgolf::tolerance::{tolerance, Check};
use wgpu::wgt::{CooperativeMatrixProperties, CooperativeScalarType};

const LAYOUTS: [Layout; 3] = [Layout::Nt, Layout::Nn, Layout::Tn];

fn matmul(m: usize, n: usize, k: usize, layout: Layout, accumulate: bool) -> Op {
    Op::Matmul {
        m,
        n,
        k,
        layout,
        accumulate,
    }
}

// ---------------------------------------------------------------- naga (no GPU)

/// The module naga builds for one pipeline: overrides applied, only `call.entry` kept.
fn processed(call: &KernelCall) -> naga::Module {
    let src = shader_source(call.shader).expect("matmul_coop is in SHADERS");
    let module =
        naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
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
    let shapes = [
        (33, 17, 65),
        (1, 1, 1),
        (256, 128, 96),
        (98_304, 512, 512),
        (512, 512, 98_304),
    ];
    let mut checked = 0;
    for tile in [16, 8] {
        for sg_size in [8, 32, 64] {
            for p in CoopParams::candidates(tile, sg_size) {
                for layout in LAYOUTS {
                    for accumulate in [false, true] {
                        for (m, n, k) in shapes {
                            let op = matmul(m, n, k, layout, accumulate);
                            let call = coop::kernel(&op, &p).expect("a matmul has a coop kernel");
                            if let Err(e) =
                                validate_with_naga(call.shader, call.entry, &call.constants)
                            {
                                panic!("{e}");
                            }
                            checked += 1;
                        }
                        // The module a device gets: only its own matrix type, and the workgroup
                        // memory the Rust side budgets for.
                        let call =
                            coop::kernel(&matmul(33, 17, 65, layout, accumulate), &p).unwrap();
                        let module = processed(&call);
                        assert_eq!(module.entry_points.len(), 1);
                        assert_eq!(coop_sizes(&module), vec![tile], "{}", call.label());
                        assert_eq!(
                            workgroup_bytes(&module),
                            p.workgroup_bytes(layout),
                            "{}",
                            call.label()
                        );
                        assert_eq!(
                            module.entry_points[0].workgroup_size,
                            [p.threads(), 1, 1],
                            "{}",
                            call.label()
                        );
                    }
                }
            }
        }
    }
    println!("naga validated {checked} matmul_coop pipelines");
    assert!(
        checked >= 2 * 3 * 2 * 5,
        "too few variants checked: {checked}"
    );
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
                    let words =
                        naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
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
                        std::fs::write(dir.join(name), bytemuck::cast_slice::<u32, u8>(&words))
                            .expect("write spv");
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
    let p = CoopParams {
        tile: 16,
        sg_size: 32,
        sg_m: 2,
        sg_n: 4,
        bk: 32,
    };
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
    let p = CoopParams {
        tile: 16,
        sg_size: 32,
        sg_m: 2,
        sg_n: 4,
        bk: 32,
    };
    let call = coop::kernel(&matmul(64, 64, 64, Layout::Nn, false), &p).unwrap();
    let without: Vec<(&str, f64)> = call
        .constants
        .iter()
        .copied()
        .filter(|(k, _)| *k != "TILE")
        .collect();
    assert!(validate_with_naga(call.shader, call.entry, &without).is_err());
}

// ---------------------------------------------------------------- configuration choice

fn prop(
    size: u32,
    ab: CooperativeScalarType,
    cr: CooperativeScalarType,
) -> CooperativeMatrixProperties {
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
    let nvidia = [
        prop(16, F16, F16),
        prop(16, F16, F32),
        prop(8, F16, F32),
        prop(16, U32, U32),
    ];
    assert_eq!(coop::pick_tile(&nvidia), Some(16));
    // Only 8x8 (newer lavapipe).
    assert_eq!(
        coop::pick_tile(&[prop(8, F16, F16), prop(8, F16, F32)]),
        Some(8)
    );
    // None at all (lavapipe 22.3, most adapters).
    assert_eq!(coop::pick_tile(&[]), None);
    // Only f32 operands (wgpu's 8x8 f32 configuration on Metal): not f16 x f16 -> f32.
    assert_eq!(
        coop::pick_tile(&[prop(8, F32, F32), prop(16, F32, F32)]),
        None
    );
    // f16 accumulation only, or integer types: not usable either.
    assert_eq!(
        coop::pick_tile(&[prop(16, F16, F16), prop(16, I32, I32)]),
        None
    );
    // A non-square configuration does not count as a square tile.
    let rect = CooperativeMatrixProperties {
        m_size: 16,
        n_size: 8,
        k_size: 16,
        ..prop(16, F16, F32)
    };
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
    let small = DeviceBounds {
        max_workgroup_bytes: 32_768,
        ..h100
    };
    for layout in LAYOUTS {
        let op = matmul(98_304, 512, 512, layout, false);
        let p = coop::choose(16, 32, &small, &op).unwrap();
        assert!(p.workgroup_bytes(layout) <= 32_768, "{p:?}");
    }
    // Not enough invocations for even one subgroup grid: nothing.
    let tiny = DeviceBounds {
        max_invocations: 16,
        max_workgroup_x: 16,
        ..h100
    };
    assert_eq!(
        coop::choose(16, 32, &tiny, &matmul(64, 64, 64, Layout::Nn, false)),
        None
    );
    // Only matmuls have a cooperative kernel.
    assert_eq!(
        coop::choose(16, 32, &h100, &Op::Relu2Fwd { count: 4 }),
        None
    );
    assert_eq!(
        coop::kernel(
            &Op::Relu2Fwd { count: 4 },
            &CoopParams::candidates(16, 32)[0]
        ),
        None
    );
    // Every candidate of every tile and subgroup size is valid for the shader.
    for tile in [8, 16] {
        for sg in [4, 8, 16, 32, 64, 128] {
            assert!(CoopParams::candidates(tile, sg)
                .iter()
                .all(|p| p.is_valid()));
        }
    }
}

// ---------------------------------------------------------------- GPU

/// Runs one kernel call for `op` from `inputs`; returns c.
fn run_call(ctx: &GpuContext, call: &KernelCall, op: &Op, inputs: &[Data]) -> Vec<f32> {
    use wgpu::util::DeviceExt;
    let device = &ctx.device;
    let mut registry = KernelRegistry::new();
    let kernel = registry
        .get(ctx, call, &op.bindings())
        .unwrap_or_else(|e| panic!("{e}"));
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
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &kernel.layout,
        entries: &entries,
    });
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
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .expect("poll");
    let out = bytemuck::cast_slice::<u8, f32>(&slice.get_mapped_range().expect("mapped")).to_vec();
    out
}

/// Ragged shapes (not multiples of any tile), shapes whose workgroups lie inside c (the
/// direct-store path) and mixes of both.
const GPU_SHAPES: [(usize, usize, usize); 6] = [
    (33, 17, 65),
    (1, 1, 1),
    (5, 7, 3),
    (256, 128, 96),
    (130, 260, 40),
    (128, 132, 48),
];

#[test]
fn coop_matmul_matches_the_cpu_reference() {
    let ctx = common::gpu();
    let ops: Vec<Op> = GPU_SHAPES
        .iter()
        .flat_map(|&(m, n, k)| {
            LAYOUTS
                .into_iter()
                .flat_map(move |l| [false, true].map(|acc| matmul(m, n, k, l, acc)))
        })
        .collect();
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
            for (i, op) in ops
                .iter()
                .enumerate()
                .filter(|(_, op)| matches!(op, Op::Matmul { m: 33, .. }))
            {
                check_gpu_vs_cpu(
                    op,
                    &random_inputs(op, 500 + i as u64),
                    tolerance(Check::KernelF32),
                );
            }
            return;
        }
    };
    println!(
        "coop_matmul: {} has {tile}x{tile}x{tile} f16 -> f32 with subgroups of {sg_size}",
        ctx.adapter_name()
    );
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
            let Op::Matmul { m, n, layout, .. } = *op else {
                unreachable!()
            };
            if !p.fits(&bounds, layout, m, n) {
                continue;
            }
            let call = coop::kernel(op, &p).unwrap();
            let inputs = random_inputs(op, 900 + i as u64);
            let want = run_cpu(op, &inputs);
            let got = run_call(&ctx, &call, op, &inputs);
            common::assert_close(
                &format!("{} (gpu vs cpu)", call.label()),
                &got,
                &want[0].1,
                tol,
            );
            runs += 1;
        }
    }
    println!(
        "coop_matmul: {runs} direct runs over {} configurations",
        CoopParams::candidates(tile, sg_size).len()
    );
    assert!(runs > 0);
}

// ---------------------------------------------------------------- emulation (any GPU)

/// `matmul_coop.wgsl` with every cooperative-matrix type and built-in replaced by plain WGSL
/// (each invocation of a subgroup holds and multiplies whole tiles, redundantly), so that the
/// staging, layouts, double buffering, ragged edges and both store paths run on adapters
/// without cooperative matrices (lavapipe in CI). Only the cooperative built-ins themselves
/// are not exercised: the GPU test above covers them where an adapter has them.
fn emulated_source() -> String {
    let src = shader_source(coop::SHADER).expect("in SHADERS");
    let src = src.replace("enable wgpu_cooperative_matrix;\n", "");
    let (head, tail) = src
        .split_once("// ---- 8x8 tiles")
        .expect("the 8x8 section marker");
    let load = regex_lite(r"coopLoad(T?)<coop_mat\d+x\d+<\w+, \w>>\(&(\w+)\[([^\]]*)\], (\w+)\)");
    let store = regex_lite(r"coopStore(T?)\((\w+), &(\w+)\[([^\]]*)\], (\w+)\)");
    let emulate = |text: &str, t: u32| -> String {
        let text = load.replace(text, |c: &[&str]| {
            format!(
                "emu_ld_{}({}, {}, {}, {t}u)",
                c[2],
                c[3],
                c[4],
                !c[1].is_empty()
            )
        });
        let text = store.replace(&text, |c: &[&str]| {
            format!(
                "emu_st_{}({}, {}, {}, {}, {t}u)",
                c[3],
                c[2],
                c[4],
                c[5],
                !c[1].is_empty()
            )
        });
        let text = text.replace("coopMultiplyAdd(", &format!("emu_mma({t}u, "));
        regex_lite(r"coop_mat\d+x\d+<\w+, \w>").replace(&text, |_| "Emu".to_string())
    };
    let mut out = emulate(head, 16);
    out.push_str("// ---- 8x8 tiles");
    out.push_str(&emulate(tail, 8));
    out.push_str(EMU_PRELUDE);
    for (array, elem) in [
        ("stage_a", "f16"),
        ("stage_b", "f16"),
        ("c", "f32"),
        ("scratch", "f32"),
    ] {
        out.push_str(&format!(
            "fn emu_ld_{array}(i: u32, ld: u32, row_major: bool, t_: u32) -> Emu {{
    let t = emu_edge(t_);
    var m: Emu;
    for (var r = 0u; r < t; r++) {{
        for (var q = 0u; q < t; q++) {{
            m[r * t + q] = f32({array}[select(i + q * ld + r, i + r * ld + q, row_major)]);
        }}
    }}
    return m;
}}
fn emu_st_{array}(m: Emu, i: u32, ld: u32, row_major: bool, t_: u32) {{
    let t = emu_edge(t_);
    for (var r = 0u; r < t; r++) {{
        for (var q = 0u; q < t; q++) {{
            {array}[select(i + q * ld + r, i + r * ld + q, row_major)] = {elem}(m[r * t + q]);
        }}
    }}
}}
"
        ));
    }
    out
}

const EMU_PRELUDE: &str = "
// ---- emulation of the cooperative built-ins (tests only)
alias Emu = array<f32, 256>;
// The tile edge, opaque to the driver's compiler (c is never empty), so that it does not
// unroll the emulation loops into a huge shader.
fn emu_edge(t: u32) -> u32 {
    return select(t, 1u, arrayLength(&c) == 0u);
}
fn emu_mma(t_: u32, a: Emu, b: Emu, acc: Emu) -> Emu {
    let t = emu_edge(t_);
    var out = acc;
    for (var i = 0u; i < t; i++) {
        for (var j = 0u; j < t; j++) {
            var s = out[i * t + j];
            for (var p = 0u; p < t; p++) {
                s += a[i * t + p] * b[p * t + j];
            }
            out[i * t + j] = s;
        }
    }
    return out;
}
";

/// A tiny regex stand-in (no regex crate among the dependencies): the patterns above only use
/// literals, `\w+`, `\w`, `\d+`, `[^\]]*`, and groups `(...)` / `(T?)`, so they are matched by a
/// small backtracking matcher.
struct Pattern(Vec<Tok>);

#[derive(Clone, Debug)]
enum Tok {
    Lit(char),
    Word,
    WordChar,
    Digits,
    NotBracket,
    Open,
    Close,
    OptT,
}

fn regex_lite(p: &str) -> Pattern {
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let rest: String = chars[i..].iter().collect();
        if rest.starts_with(r"\w+") {
            toks.push(Tok::Word);
            i += 3;
        } else if rest.starts_with(r"\w") {
            toks.push(Tok::WordChar);
            i += 2;
        } else if rest.starts_with(r"\d+") {
            toks.push(Tok::Digits);
            i += 3;
        } else if rest.starts_with(r"[^\]]*") {
            toks.push(Tok::NotBracket);
            i += 6;
        } else if rest.starts_with("(T?)") {
            toks.push(Tok::Open);
            toks.push(Tok::OptT);
            toks.push(Tok::Close);
            i += 4;
        } else if chars[i] == '\\' {
            toks.push(Tok::Lit(chars[i + 1]));
            i += 2;
        } else if chars[i] == '(' {
            toks.push(Tok::Open);
            i += 1;
        } else if chars[i] == ')' {
            toks.push(Tok::Close);
            i += 1;
        } else {
            toks.push(Tok::Lit(chars[i]));
            i += 1;
        }
    }
    Pattern(toks)
}

impl Pattern {
    /// Matches at byte `start`: the end and the group spans.
    fn match_at(&self, s: &[char], start: usize) -> Option<(usize, Vec<(usize, usize)>)> {
        let mut pos = start;
        let mut groups = Vec::new();
        let mut open = Vec::new();
        for (ti, tok) in self.0.iter().enumerate() {
            match tok {
                Tok::Lit(c) => {
                    if s.get(pos) != Some(c) {
                        return None;
                    }
                    pos += 1;
                }
                Tok::Word | Tok::Digits => {
                    let ok = |c: char| {
                        if matches!(tok, Tok::Word) {
                            c.is_alphanumeric() || c == '_'
                        } else {
                            c.is_ascii_digit()
                        }
                    };
                    let from = pos;
                    while pos < s.len() && ok(s[pos]) {
                        pos += 1;
                    }
                    if pos == from {
                        return None;
                    }
                }
                Tok::WordChar => {
                    if !s.get(pos).is_some_and(|c| c.is_alphanumeric() || *c == '_') {
                        return None;
                    }
                    pos += 1;
                }
                Tok::NotBracket => {
                    while pos < s.len() && s[pos] != ']' {
                        pos += 1;
                    }
                }
                Tok::OptT => {
                    // Greedy, but give the T back when the next token needs it.
                    if s.get(pos) == Some(&'T')
                        && !matches!(self.0.get(ti + 2), Some(Tok::Lit('T')))
                    {
                        pos += 1;
                    }
                }
                Tok::Open => open.push(pos),
                Tok::Close => groups.push((open.pop().expect("balanced"), pos)),
            }
        }
        groups.sort();
        Some((pos, groups))
    }

    /// Replaces every match; `f` gets the whole match then each group, in order of opening.
    fn replace(&self, text: &str, f: impl Fn(&[&str]) -> String) -> String {
        let s: Vec<char> = text.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < s.len() {
            if let Some((end, groups)) = self.match_at(&s, i) {
                let owned: Vec<String> = std::iter::once((i, end))
                    .chain(groups)
                    .map(|(a, b)| s[a..b].iter().collect())
                    .collect();
                let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
                out.push_str(&f(&refs));
                i = end;
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    }
}

#[test]
fn emulated_source_keeps_no_cooperative_syntax() {
    let src = emulated_source();
    let code: Vec<&str> = src
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    for word in [
        "coop_mat",
        "coopLoad",
        "coopStore",
        "coopMultiplyAdd",
        "wgpu_cooperative_matrix",
    ] {
        assert!(
            !code.iter().any(|l| l.contains(word)),
            "{word} left in the emulated source"
        );
    }
    // It validates with naga without the cooperative-matrix capability.
    let module =
        naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&src)));
    let caps = naga::valid::Capabilities::all() - naga::valid::Capabilities::COOPERATIVE_MATRIX;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&src)));
}

/// Runs one emulated-kernel call for `op` from `inputs`; returns c.
fn run_emulated(
    ctx: &GpuContext,
    module: &wgpu::ShaderModule,
    call: &KernelCall,
    inputs: &[Data],
) -> Vec<f32> {
    use wgpu::util::DeviceExt;
    let device = &ctx.device;
    let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..3)
        .map(|i| wgpu::BindGroupLayoutEntry {
            binding: i,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: i > 0 },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: None,
        entries: &entries,
    });
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
    let bind_entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &layout,
        entries: &bind_entries,
    });
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
        let [x, y, z] = call.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
    encoder.copy_buffer_to_buffer(&buffers[0], 0, &readback, 0, bytes);
    ctx.queue.submit([encoder.finish()]);
    let slice = readback.slice(..);
    slice.map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .expect("poll");
    let out = bytemuck::cast_slice::<u8, f32>(&slice.get_mapped_range().expect("mapped")).to_vec();
    out
}

#[test]
fn emulated_coop_matmul_matches_the_cpu_reference() {
    let ctx = common::gpu();
    let features = ctx.device.features();
    let (lo, hi) = (
        ctx.report.info.subgroup_min_size,
        ctx.report.info.subgroup_max_size,
    );
    assert!(
        features.contains(wgpu::Features::SHADER_F16) && features.contains(wgpu::Features::SUBGROUP) && lo == hi && lo > 0,
        "the emulation needs f16, subgroups and one subgroup size; {} has f16 {}, subgroups {}, sizes {lo}..{hi}",
        ctx.adapter_name(),
        features.contains(wgpu::Features::SHADER_F16),
        features.contains(wgpu::Features::SUBGROUP),
    );
    let src = emulated_source();
    let module = ctx
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("emulated matmul_coop"),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
    let bounds = DeviceBounds::from(&ctx.device.limits());
    let tol = tolerance(Check::KernelF16);
    // Both tiles; the largest configuration (several subgroups; the 256 x 128 shape takes the
    // direct store path, the ragged one the guarded path) and the smallest (several
    // workgroups, both paths); every layout; both modes. Each case is its own pipeline.
    let mut runs = 0;
    for tile in [8, 16] {
        let candidates = CoopParams::candidates(tile, lo);
        let cases = [
            (candidates[0], [(256, 128, 40), (33, 17, 65)].as_slice()),
            (*candidates.last().unwrap(), [(70, 132, 24)].as_slice()),
        ];
        for (p, shapes) in cases {
            for &(m, n, k) in shapes {
                for layout in LAYOUTS {
                    for accumulate in [false, true] {
                        let op = matmul(m, n, k, layout, accumulate);
                        assert!(
                            p.fits(&bounds, layout, m, n),
                            "{p:?} does not fit {}",
                            ctx.adapter_name()
                        );
                        let call = coop::kernel(&op, &p).unwrap();
                        let inputs =
                            random_inputs(&op, (m * 31 + n * 7 + k) as u64 + accumulate as u64);
                        let want = run_cpu(&op, &inputs);
                        let started = std::time::Instant::now();
                        let got = run_emulated(&ctx, &module, &call, &inputs);
                        println!("{:.2} s {}", started.elapsed().as_secs_f64(), call.label());
                        common::assert_close(
                            &format!("emulated {} (gpu vs cpu)", call.label()),
                            &got,
                            &want[0].1,
                            tol,
                        );
                        runs += 1;
                    }
                }
            }
        }
    }
    println!(
        "emulated matmul_coop: {runs} runs on {}",
        ctx.adapter_name()
    );
    assert_eq!(runs, 2 * 3 * 3 * 2);
}
