//! Shader checks that need no GPU: every WGSL file parses and validates with naga, every
//! entry point validates with the override constants the configs actually use, the `SHADERS`
//! table matches `shaders/`, and every shader's header names its CPU reference.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use wgolf::config::Config;
use wgolf::kernels::{validate_with_naga, SHADERS};
use wgolf::model::build_plan;
use wgolf::plan::{KernelCall, Op, Plan};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Parses and validates a shader module (no override values applied).
fn module(stem: &str, src: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{stem}.wgsl: {}", e.emit_to_string(src)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{stem}.wgsl: {}", e.emit_to_string(src)));
    module
}

/// Every `configs/*.toml`, sorted. Each must load: a config that does not is a bug.
fn configs() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("configs"))
        .expect("configs/ exists")
        .map(|e| e.expect("readable configs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(paths.iter().any(|p| p.ends_with("tiny.toml")), "configs/tiny.toml is missing");
    paths
}

fn plan_of(path: &Path) -> Plan {
    let cfg = Config::load(path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    build_plan(&cfg).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The kernels that can run `op`: its portable kernel, and the replacements a tensor-core
/// GPU would run instead (src/gpu/coop.rs), for a typical such device (subgroups of 32,
/// 1024 invocations per workgroup, 48 KiB of workgroup memory) and both tile sizes.
fn kernels_of(op: &Op) -> Vec<KernelCall> {
    use wgolf::gpu::coop;
    let bounds = coop::DeviceBounds {
        max_invocations: 1024,
        max_workgroup_x: 1024,
        max_workgroup_bytes: 48 << 10,
        max_workgroups_per_dim: 65535,
    };
    let replacements =
        [16, 8].into_iter().filter_map(|tile| coop::choose(tile, 32, &bounds, op)).filter_map(|p| coop::kernel(op, &p));
    std::iter::once(op.kernel()).chain(replacements).collect()
}

/// The distinct kernel calls (shader, entry, constants) of every step of a plan, by label.
fn calls(plan: &Plan) -> BTreeMap<String, KernelCall> {
    plan.all_steps().flat_map(|(_, s)| kernels_of(&s.op)).map(|k| (format!("{}:{}", k.shader, k.label()), k)).collect()
}

fn validate(call: &KernelCall, context: &str) {
    if let Err(e) = validate_with_naga(call.shader, call.entry, &call.constants) {
        panic!("{context}: {e}");
    }
}

#[test]
fn every_shader_parses_and_validates() {
    for (stem, src) in SHADERS {
        let m = module(stem, src);
        assert!(!m.entry_points.is_empty(), "{stem}.wgsl has no entry point");
        for ep in &m.entry_points {
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{stem}.wgsl: {} is not a compute entry point", ep.name);
        }
    }
}

#[test]
fn every_config_kernel_validates_with_its_overrides() {
    let mut total = 0;
    for path in configs() {
        let plan = plan_of(&path);
        let calls = calls(&plan);
        assert!(!calls.is_empty());
        for (label, call) in &calls {
            validate(call, &format!("{} {label}", path.display()));
        }
        total += calls.len();
    }
    assert!(total > 0);
}

#[test]
fn every_test_op_kernel_validates() {
    // The kernel tests' shapes (ragged, every variant) validate as well.
    for op in Op::examples() {
        for call in kernels_of(&op) {
            validate(&call, &format!("{op:?}"));
        }
    }
}

#[test]
fn the_examples_cover_every_op() {
    let seen: BTreeSet<&str> = Op::examples().iter().map(Op::kind).collect();
    assert_eq!(seen, Op::KINDS.iter().copied().collect(), "an op definition gives no examples (OpDef::examples)");
}

#[test]
fn every_entry_point_is_used_by_some_op() {
    let used: BTreeSet<(&str, &str)> = Op::examples()
        .iter()
        .flat_map(kernels_of)
        .chain(configs().iter().flat_map(|p| calls(&plan_of(p)).into_values()))
        .map(|k| (k.shader, k.entry))
        .collect();
    for (stem, src) in SHADERS {
        for ep in &module(stem, src).entry_points {
            assert!(used.contains(&(*stem, ep.name.as_str())), "{stem}.wgsl: entry point {} is used by no op", ep.name);
        }
    }
    for (stem, entry) in &used {
        let src = wgolf::kernels::shader_source(stem)
            .unwrap_or_else(|| panic!("an op names shader {stem}, which is not in SHADERS"));
        assert!(
            module(stem, src).entry_points.iter().any(|e| e.name == *entry),
            "an op names {stem}.wgsl:{entry}, which does not exist"
        );
    }
}

#[test]
fn validation_rejects_a_missing_override() {
    // The check above is only meaningful if a missing constant is an error.
    let err = validate_with_naga("relu2", "relu2_fwd", &[]).expect_err("COUNT has no default");
    assert!(err.contains("relu2"), "{err}");
    assert!(validate_with_naga("relu2", "no_such_entry", &[("COUNT", 4.0)]).is_err());
    assert!(validate_with_naga("no_such_shader", "main", &[]).is_err());
}

#[test]
fn shaders_table_matches_the_shaders_directory() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(root().join("shaders"))
        .expect("shaders/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| p.file_stem().expect("a file name").to_string_lossy().into_owned())
        .collect();
    let in_table: BTreeSet<String> = SHADERS.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(in_table.len(), SHADERS.len(), "SHADERS lists a stem twice");
    assert_eq!(in_table, on_disk, "SHADERS (left) and shaders/*.wgsl (right) differ");
    for (stem, src) in SHADERS {
        let file =
            std::fs::read_to_string(root().join("shaders").join(format!("{stem}.wgsl"))).expect("readable shader");
        assert_eq!(*src, file, "SHADERS entry {stem} is not the source of shaders/{stem}.wgsl");
    }
}

#[test]
fn every_shader_header_names_its_cpu_reference() {
    for (stem, src) in SHADERS {
        // The header is the comment block the file starts with.
        assert!(src.starts_with("//"), "{stem}.wgsl must start with a header comment");
        let header: Vec<&str> = src.lines().take_while(|l| l.starts_with("//")).collect();
        let line = header
            .iter()
            .find(|l| l.contains("CPU reference:"))
            .unwrap_or_else(|| panic!("{stem}.wgsl: the header has no 'CPU reference:' line"));
        // Every `src/....rs` it names exists, and so does every function named in parentheses
        // after it (except the "same names" shorthand).
        let refs = line.split("CPU reference:").nth(1).expect("text after the marker");
        let mut files = 0;
        for part in refs.split("),") {
            let part = part.trim().trim_end_matches('.').trim_end_matches(')');
            let (path, fns) = part.split_once(" (").unwrap_or((part, ""));
            let path = path.trim();
            assert!(path.starts_with("src/") && path.ends_with(".rs"), "{stem}.wgsl: '{path}' is not a source path");
            let text = std::fs::read_to_string(root().join(path))
                .unwrap_or_else(|e| panic!("{stem}.wgsl names {path} as its CPU reference: {e}"));
            files += 1;
            let named: Vec<String> = if fns.trim() == "same names" {
                module(stem, src).entry_points.iter().map(|e| e.name.clone()).collect()
            } else {
                fns.split(',').map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect()
            };
            for f in &named {
                assert!(
                    text.contains(&format!("pub fn {f}")),
                    "{stem}.wgsl names {f} in {path}, which has no `pub fn {f}`"
                );
            }
        }
        assert!(files > 0, "{stem}.wgsl: no CPU reference file named");
    }
}
