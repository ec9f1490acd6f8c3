//! The closed list of WGSL shader files, embedded in the binary, and the shader modules built
//! from them. Each file under `shaders/` is one kernel family with a header giving its formula,
//! shapes, dispatch and CPU reference; the entry points and override constants each op uses are
//! in [`crate::plan::op`].
//!
//! Code that several kernels share is written once, in a file under `shaders/common/`, and
//! each family lists the common files it uses: a family's module is its own file followed by
//! those files, concatenated as they are (no templates, no substitution; WGSL declarations
//! may come in any order). The family file comes first, so its `enable` directives lead the
//! module and a line number in it is the line in the file. A family whose entry points need
//! different types (matmul_coop: a cooperative matrix type cannot depend on an override) or
//! capabilities not every adapter has (attention, matmul: their CPU-adapter entry points use
//! subgroup operations) lists entry files: common files holding those entry points and the code that
//! differs, each its own module.

/// One WGSL file: its path under `shaders/` and its text.
#[derive(Clone, Copy, Debug)]
pub struct Wgsl {
    pub path: &'static str,
    pub source: &'static str,
}

macro_rules! wgsl {
    ($path:literal) => {
        Wgsl { path: $path, source: include_str!(concat!("../shaders/", $path)) }
    };
}

/// The workgroup tree sum (`workgroup_sum`): clip, muon, reduce, smear.
pub const WORKGROUP_SUM: Wgsl = wgsl!("common/workgroup_sum.wgsl");
/// matmul_coop's 16x16 tile types and its `matmul_coop16` entry point.
pub const COOP_TILE16: Wgsl = wgsl!("common/coop_tile16.wgsl");
/// matmul_coop's 8x8 tile types and its `matmul_coop8` entry point.
pub const COOP_TILE8: Wgsl = wgsl!("common/coop_tile8.wgsl");
/// attention's entry points for GPUs, reading staged tiles from workgroup memory.
pub const ATTENTION_UNIFORM: Wgsl = wgsl!("common/attention_uniform.wgsl");
/// attention's entry points for CPU adapters, spreading those reads over subgroup lanes.
pub const ATTENTION_SUBGROUP: Wgsl = wgsl!("common/attention_subgroup.wgsl");
/// matmul's entry point reading the staged slices from workgroup memory.
pub const MATMUL_UNIFORM: Wgsl = wgsl!("common/matmul_uniform.wgsl");
/// matmul's entry point for CPU adapters, spreading the op(a) reads over subgroup lanes.
pub const MATMUL_SUBGROUP: Wgsl = wgsl!("common/matmul_subgroup.wgsl");

/// Every file under `shaders/common/`.
pub const COMMON: &[Wgsl] =
    &[WORKGROUP_SUM, COOP_TILE16, COOP_TILE8, ATTENTION_UNIFORM, ATTENTION_SUBGROUP, MATMUL_UNIFORM, MATMUL_SUBGROUP];

/// A kernel family: its file under `shaders/` and the common files its modules append.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// File stem under `shaders/` (what [`crate::plan::KernelCall::shader`] names).
    pub stem: &'static str,
    /// `<stem>.wgsl`, its path under `shaders/`.
    pub path: &'static str,
    /// The file's text.
    pub source: &'static str,
    /// Common files appended to `source`, in this order, in every module of the family.
    pub common: &'static [Wgsl],
    /// Entry points that live in common files of their own, appended after `common`, and
    /// those files: each file is then its own module, holding exactly these entry points.
    /// Empty for a family with one module holding all its entry points.
    pub entry_files: &'static [(&'static [&'static str], Wgsl)],
}

macro_rules! shader {
    ($stem:literal $(, $common:expr)*) => {
        Shader {
            stem: $stem,
            path: concat!($stem, ".wgsl"),
            source: include_str!(concat!("../shaders/", $stem, ".wgsl")),
            common: &[$($common),*],
            entry_files: &[],
        }
    };
}

/// Every kernel family under `shaders/`.
pub const SHADERS: &[Shader] = &[
    shader!("adamw"),
    shader!("add"),
    Shader {
        entry_files: &[
            (&["attention_fwd", "attention_bwd_q", "attention_bwd_kv"], ATTENTION_UNIFORM),
            (&["attention_fwd_subgroup", "attention_bwd_q_subgroup", "attention_bwd_kv_subgroup"], ATTENTION_SUBGROUP),
        ],
        ..shader!("attention")
    },
    shader!("channel"),
    shader!("clip", WORKGROUP_SUM),
    shader!("cross_entropy"),
    shader!("ema"),
    shader!("embedding"),
    Shader {
        entry_files: &[(&["matmul"], MATMUL_UNIFORM), (&["matmul_subgroup"], MATMUL_SUBGROUP)],
        ..shader!("matmul")
    },
    Shader {
        entry_files: &[(&["matmul_coop16"], COOP_TILE16), (&["matmul_coop8"], COOP_TILE8)],
        ..shader!("matmul_coop")
    },
    shader!("matmul_split_sum"),
    shader!("muon", WORKGROUP_SUM),
    shader!("reduce", WORKGROUP_SUM),
    shader!("relu2"),
    shader!("rmsnorm"),
    shader!("rope"),
    shader!("sgd"),
    shader!("smear", WORKGROUP_SUM),
    shader!("xsa"),
];

/// The family of a file stem.
pub fn shader(stem: &str) -> Option<&'static Shader> {
    SHADERS.iter().find(|s| s.stem == stem)
}

/// The WGSL of one shader module, composed from its files.
#[derive(Clone, Debug)]
pub struct Module {
    /// Its files in order, e.g. `clip.wgsl + common/workgroup_sum.wgsl` (also its label).
    pub name: String,
    pub source: String,
    /// Each file's path and the line of `source` its first line is.
    pub parts: Vec<(&'static str, usize)>,
}

impl Module {
    /// The module of `(path, text)` files, in this order.
    pub fn compose(files: &[(&'static str, &'static str)]) -> Module {
        let (mut source, mut parts) = (String::new(), Vec::new());
        for (path, text) in files {
            parts.push((*path, source.lines().count() + 1));
            source.push_str(text);
            if !source.ends_with('\n') {
                source.push('\n');
            }
        }
        let name = parts.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(" + ");
        Module { name, source, parts }
    }

    /// The file and line in it of line `line` (1-based) of `source`.
    pub fn locate(&self, line: usize) -> (&'static str, usize) {
        let (path, first) = self.parts.iter().rev().find(|(_, first)| *first <= line).unwrap_or(&self.parts[0]);
        (path, line + 1 - first)
    }

    /// `path:line:column` of a naga error's first span, when it has one.
    fn place(&self, location: Option<naga::SourceLocation>) -> String {
        match location {
            Some(l) => {
                let (path, line) = self.locate(l.line_number as usize);
                format!("at {path}:{line}:{}: ", l.line_position)
            }
            None => String::new(),
        }
    }

    /// Parses and validates the module with naga (every capability), or says where it fails
    /// (file and line, then naga's report on the composed source).
    pub fn validate(&self) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
        let src = &self.source;
        let module = naga::front::wgsl::parse_str(src)
            .map_err(|e| format!("{}{}", self.place(e.location(src)), e.emit_to_string_with_path(src, &self.name)))?;
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .map_err(|e| format!("{}{}", self.place(e.location(src)), e.emit_to_string_with_path(src, &self.name)))?;
        Ok((module, info))
    }
}

impl Shader {
    fn files(&self, entry_file: Option<Wgsl>) -> Vec<(&'static str, &'static str)> {
        std::iter::once((self.path, self.source))
            .chain(self.common.iter().chain(entry_file.iter()).map(|w| (w.path, w.source)))
            .collect()
    }

    /// Every module built from this family: one, or one per entry file.
    pub fn modules(&self) -> Vec<Module> {
        if self.entry_files.is_empty() {
            vec![Module::compose(&self.files(None))]
        } else {
            self.entry_files.iter().map(|(_, w)| Module::compose(&self.files(Some(*w)))).collect()
        }
    }

    /// The module that holds `entry` (for a family without entry files, its one module,
    /// whether or not it has that entry point).
    pub fn module_for(&self, entry: &str) -> Option<Module> {
        if self.entry_files.is_empty() {
            return Some(Module::compose(&self.files(None)));
        }
        let (_, w) = self.entry_files.iter().find(|(entries, _)| entries.contains(&entry))?;
        Some(Module::compose(&self.files(Some(*w))))
    }
}

/// The module a kernel call of `stem`'s entry point `entry` runs in.
pub fn module(stem: &str, entry: &str) -> Result<Module, String> {
    let label = format!("{stem}.wgsl:{entry}");
    let shader = shader(stem).ok_or_else(|| format!("{label}: no such shader"))?;
    shader.module_for(entry).ok_or_else(|| format!("{label}: no such entry point"))
}

/// Validates one entry point of a shader with naga, with the given override constants
/// (no GPU needed). Returns a message naming the kernel (and, for an error in the source, the
/// file and line) on failure.
pub fn validate_with_naga(stem: &str, entry: &str, constants: &[(&str, f64)]) -> Result<(), String> {
    let label = format!("{stem}.wgsl:{entry}");
    let m = module(stem, entry)?;
    let (module, info) = m.validate().map_err(|e| format!("{label}: {e}"))?;
    if !module.entry_points.iter().any(|e| e.name == entry) {
        return Err(format!("{label}: no such entry point"));
    }
    let mut map = naga::back::PipelineConstants::default();
    for (k, v) in constants {
        map.insert((*k).to_string(), *v);
    }
    naga::back::pipeline_constants::process_overrides(&module, &info, Some((naga::ShaderStage::Compute, entry)), &map)
        .map(|_| ())
        .map_err(|e| format!("{label} with {constants:?}: {e}"))
}
