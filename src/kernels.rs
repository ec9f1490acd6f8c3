//! The closed list of WGSL shader files, embedded in the binary. Each file is one kernel
//! family with a header giving its formula, shapes, dispatch and CPU reference; the entry
//! points and override constants each op uses are in [`crate::plan::op`].

/// `(file stem, source)` of every shader under `shaders/`.
pub const SHADERS: &[(&str, &str)] = &[
    ("adamw", include_str!("../shaders/adamw.wgsl")),
    ("add", include_str!("../shaders/add.wgsl")),
    ("attention", include_str!("../shaders/attention.wgsl")),
    ("channel", include_str!("../shaders/channel.wgsl")),
    ("clip", include_str!("../shaders/clip.wgsl")),
    ("cross_entropy", include_str!("../shaders/cross_entropy.wgsl")),
    ("ema", include_str!("../shaders/ema.wgsl")),
    ("embedding", include_str!("../shaders/embedding.wgsl")),
    ("matmul", include_str!("../shaders/matmul.wgsl")),
    ("matmul_coop", include_str!("../shaders/matmul_coop.wgsl")),
    ("muon", include_str!("../shaders/muon.wgsl")),
    ("reduce", include_str!("../shaders/reduce.wgsl")),
    ("relu2", include_str!("../shaders/relu2.wgsl")),
    ("rmsnorm", include_str!("../shaders/rmsnorm.wgsl")),
    ("rope", include_str!("../shaders/rope.wgsl")),
    ("smear", include_str!("../shaders/smear.wgsl")),
    ("xsa", include_str!("../shaders/xsa.wgsl")),
];

/// The source of a shader by file stem.
pub fn shader_source(stem: &str) -> Option<&'static str> {
    SHADERS.iter().find(|(s, _)| *s == stem).map(|(_, src)| *src)
}

/// Validates one entry point of a shader with naga, with the given override constants
/// (no GPU needed). Returns a message naming the kernel on failure.
pub fn validate_with_naga(stem: &str, entry: &str, constants: &[(&str, f64)]) -> Result<(), String> {
    let label = format!("{stem}.wgsl:{entry}");
    let src = shader_source(stem).ok_or_else(|| format!("{label}: no such shader"))?;
    let module = naga::front::wgsl::parse_str(src).map_err(|e| format!("{label}: {}", e.emit_to_string(src)))?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .map_err(|e| format!("{label}: {}", e.emit_to_string(src)))?;
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
