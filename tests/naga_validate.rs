//! Shader checks that need no GPU: every shader module (a family file with the common files it
//! lists appended) parses and validates with naga, every entry point validates with the
//! override constants the configs actually use, the `SHADERS` and `COMMON` tables match
//! `shaders/` and `shaders/common/`, every common file is used, no block of code is repeated
//! across the files, and every shader's header names its CPU reference.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use wgolf::config::Config;
use wgolf::kernels::{validate_with_naga, Module, Shader, COMMON, SHADERS};
use wgolf::model::build_plan;
use wgolf::plan::{KernelCall, KernelTarget, Op, Param, Plan};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Parses and validates every module of a shader family (no override values applied).
fn modules(shader: &Shader) -> Vec<naga::Module> {
    shader.modules().iter().map(|m| m.validate().unwrap_or_else(|e| panic!("{}: {e}", m.name)).0).collect()
}

/// The entry point names of every module of a family.
fn entry_points(shader: &Shader) -> Vec<String> {
    modules(shader).iter().flat_map(|m| m.entry_points.iter().map(|e| e.name.clone())).collect()
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

/// The kernels that can run `op`: its portable kernel for each adapter kind, and the
/// replacements a tensor-core GPU would run instead (src/gpu/coop.rs), for a typical such
/// device (subgroups of 32, 1024 invocations per workgroup, 48 KiB of workgroup memory) and
/// both tile sizes.
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
    [op.kernel(), op.kernel_for(KernelTarget::Cpu)].into_iter().chain(replacements).collect()
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
    for shader in SHADERS {
        let stem = shader.stem;
        for m in modules(shader) {
            assert!(!m.entry_points.is_empty(), "{stem}.wgsl has no entry point");
            for ep in &m.entry_points {
                assert_eq!(
                    ep.stage,
                    naga::ShaderStage::Compute,
                    "{stem}.wgsl: {} is not a compute entry point",
                    ep.name
                );
            }
        }
        // Each entry file holds exactly the entry points it is listed for.
        for (entries, file) in shader.entry_files {
            for entry in *entries {
                let m = shader.module_for(entry).expect("listed");
                assert!(m.name.ends_with(file.path), "{stem}.wgsl:{entry} is not in the module of {}", file.path);
                let (module, _) = m.validate().expect("validated above");
                let own: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
                assert_eq!(own, entries.to_vec(), "{}: the module of {stem}.wgsl:{entry} ({})", file.path, m.name);
            }
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

/// Checks that `op`'s kernels (for both adapter kinds) read their per-dispatch parameters
/// where the GPU executor binds them: with parameters, the entry point uses a uniform at the
/// binding after the op's tensors whose struct has exactly the parameters' names, in order,
/// with their types (u32 or f32); without, it uses nothing there. No entry point uses a binding beyond that one.
fn check_site(op: &Op, context: &str) {
    for call in [op.kernel(), op.kernel_for(KernelTarget::Cpu)] {
        check_site_of(op, &call, context);
    }
}

fn check_site_of(op: &Op, call: &KernelCall, context: &str) {
    let site = op.bindings().len() as u32;
    let module = wgolf::kernels::module(call.shader, call.entry).unwrap_or_else(|e| panic!("{context}: {e}"));
    let (module, info) = module.validate().unwrap_or_else(|e| panic!("{context}: {e}"));
    let index = module.entry_points.iter().position(|e| e.name == call.entry).expect("entry point");
    let uses = info.get_entry_point(index);
    let used: Vec<(u32, &naga::GlobalVariable)> = module
        .global_variables
        .iter()
        .filter(|(h, _)| !uses[*h].is_empty())
        .filter_map(|(_, v)| v.binding.as_ref().filter(|b| b.group == 0).map(|b| (b.binding, v)))
        .collect();
    let label = call.label();
    assert!(used.iter().all(|(b, _)| *b <= site), "{context}: {label} uses a binding past {site}");
    let at_site: Vec<&naga::GlobalVariable> = used.iter().filter(|(b, _)| *b == site).map(|(_, v)| *v).collect();
    if call.params.is_empty() {
        assert!(at_site.is_empty(), "{context}: {label} has no parameters but reads binding {site}");
        return;
    }
    let [var] = at_site[..] else {
        panic!("{context}: {label} has parameters but its entry point reads no uniform at binding {site}")
    };
    assert_eq!(var.space, naga::AddressSpace::Uniform, "{context}: {label}: binding {site}");
    let naga::TypeInner::Struct { members, .. } = &module.types[var.ty].inner else {
        panic!("{context}: {label}: the site uniform is not a struct")
    };
    let fields: Vec<(String, naga::TypeInner)> =
        members.iter().map(|m| (m.name.clone().unwrap_or_default(), module.types[m.ty].inner.clone())).collect();
    let want: Vec<(String, naga::TypeInner)> = call
        .params
        .iter()
        .map(|(name, v)| {
            let scalar = match v {
                Param::U32(_) => naga::Scalar::U32,
                Param::F32(_) => naga::Scalar::F32,
            };
            (name.to_string(), naga::TypeInner::Scalar(scalar))
        })
        .collect();
    assert_eq!(fields, want, "{context}: {label}: the site struct's fields and the call's parameters");
}

#[test]
fn every_site_uniform_matches_its_parameters() {
    for op in Op::examples() {
        check_site(&op, &format!("{op:?}"));
    }
    // And every op kind of the record plan, at one of its sites each.
    let plan = plan_of(&root().join("configs/record.toml"));
    let mut seen = BTreeSet::new();
    for (_, step) in plan.all_steps() {
        if seen.insert(step.op.kind()) {
            check_site(&step.op, "configs/record.toml");
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
    for shader in SHADERS {
        let stem = shader.stem;
        for ep in entry_points(shader) {
            assert!(used.contains(&(stem, ep.as_str())), "{stem}.wgsl: entry point {ep} is used by no op");
        }
    }
    for (stem, entry) in &used {
        let shader = wgolf::kernels::shader(stem)
            .unwrap_or_else(|| panic!("an op names shader {stem}, which is not in SHADERS"));
        let module = shader.module_for(entry).unwrap_or_else(|| panic!("{stem}.wgsl: no module holds {entry}"));
        let (module, _) = module.validate().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            module.entry_points.iter().any(|e| e.name == *entry),
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
fn a_naga_error_names_the_file_and_line() {
    let family = "// A family.\noverride COUNT: u32;\n\nfn f() -> f32 {\n    return helper(1.0);\n}\n";
    let shared = "// Shared.\nfn helper(v: f32) -> f32 {\n    return v + undefined_name;\n}\n";
    let m = Module::compose(&[("family.wgsl", family), ("common/shared.wgsl", shared)]);
    assert_eq!(m.name, "family.wgsl + common/shared.wgsl");
    assert_eq!(m.locate(5), ("family.wgsl", 5));
    assert_eq!(m.locate(9), ("common/shared.wgsl", 3));
    let err = m.validate().expect_err("an undefined name");
    assert!(err.starts_with("at common/shared.wgsl:3:"), "{err}");
    assert!(err.contains("undefined_name"), "{err}");
    // A validation error (naga's frontend lets this one through) is placed as well.
    let bad = "// Shared.\nfn helper(v: f32) -> f32 {\n    return v + 1u;\n}\n";
    let err = Module::compose(&[("family.wgsl", family), ("common/shared.wgsl", bad)]).validate().unwrap_err();
    assert!(err.starts_with("at common/shared.wgsl:"), "{err}");
    assert!(err.contains("Operation Add"), "{err}");
}

#[test]
fn shaders_table_matches_the_shaders_directory() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(root().join("shaders"))
        .expect("shaders/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| p.file_stem().expect("a file name").to_string_lossy().into_owned())
        .collect();
    let in_table: BTreeSet<String> = SHADERS.iter().map(|s| s.stem.to_string()).collect();
    assert_eq!(in_table.len(), SHADERS.len(), "SHADERS lists a stem twice");
    assert_eq!(in_table, on_disk, "SHADERS (left) and shaders/*.wgsl (right) differ");
    for Shader { stem, path, source: src, .. } in SHADERS {
        assert_eq!(*path, format!("{stem}.wgsl"));
        let file = std::fs::read_to_string(root().join("shaders").join(path)).expect("readable shader");
        assert_eq!(*src, file, "SHADERS entry {stem} is not the source of shaders/{stem}.wgsl");
    }
    // The same for the common files.
    let on_disk: BTreeSet<String> = std::fs::read_dir(root().join("shaders/common"))
        .expect("shaders/common/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| format!("common/{}", p.file_name().expect("a file name").to_string_lossy()))
        .collect();
    let in_table: BTreeSet<String> = COMMON.iter().map(|w| w.path.to_string()).collect();
    assert_eq!(in_table.len(), COMMON.len(), "COMMON lists a file twice");
    assert_eq!(in_table, on_disk, "COMMON (left) and shaders/common/*.wgsl (right) differ");
    for w in COMMON {
        let file = std::fs::read_to_string(root().join("shaders").join(w.path)).expect("readable shader");
        assert_eq!(w.source, file, "COMMON entry {} is not the source of shaders/{}", w.path, w.path);
    }
}

#[test]
fn every_common_file_is_used_and_has_a_header() {
    for w in COMMON {
        let users: Vec<&str> = SHADERS
            .iter()
            .filter(|s| s.common.iter().chain(s.entry_files.iter().map(|(_, f)| f)).any(|f| f.path == w.path))
            .map(|s| s.stem)
            .collect();
        assert!(!users.is_empty(), "{} is appended to no shader", w.path);
        assert!(w.source.starts_with("//"), "{} must start with a header comment", w.path);
        let header: String = w.source.lines().take_while(|l| l.starts_with("//")).collect::<Vec<_>>().join("\n");
        for stem in users {
            assert!(
                header.contains(&format!("{stem}.wgsl")),
                "{}'s header does not name {stem}.wgsl, which uses it",
                w.path
            );
        }
    }
}

#[test]
fn no_block_of_code_is_repeated_across_shader_files() {
    // Windows of consecutive code lines (comments, blank lines, lone braces and override
    // declarations, which are each module's interface, skipped) that occur in two files:
    // shared code belongs in shaders/common/.
    const WINDOW: usize = 5;
    let files = SHADERS.iter().map(|s| (s.path, s.source)).chain(COMMON.iter().map(|w| (w.path, w.source)));
    let mut seen: BTreeMap<Vec<&str>, (&str, usize)> = BTreeMap::new();
    let mut repeats = Vec::new();
    for (path, src) in files {
        let code: Vec<(usize, &str)> = src
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with("//") && !l.starts_with("override "))
            .filter(|(_, l)| !matches!(*l, "}" | "{" | "} else {"))
            .collect();
        for w in code.windows(WINDOW) {
            let key: Vec<&str> = w.iter().map(|(_, l)| *l).collect();
            match seen.get(&key) {
                Some((first, line)) if *first != path => {
                    repeats.push(format!("shaders/{path}:{} repeats shaders/{first}:{line}", w[0].0))
                }
                Some(_) => {}
                None => {
                    seen.insert(key, (path, w[0].0));
                }
            }
        }
    }
    assert!(repeats.is_empty(), "code repeated across shader files:\n{}", repeats.join("\n"));
}

#[test]
fn every_shader_header_names_its_cpu_reference() {
    for Shader { stem, source: src, .. } in SHADERS {
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
                entry_points(wgolf::kernels::shader(stem).expect("in SHADERS"))
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
