//! The kernel registry: builds each (shader, entry point, override constants) pipeline once,
//! with an explicit bind group layout and a readable label such as
//! `matmul:matmul[M=64,N=32,K=16,TRANS_A=0,TRANS_B=1,ACCUMULATE=0]`
//! ([`KernelCall::pipeline_label`]: a call's per-dispatch parameters are not part of it, so
//! every site of a kernel with a site uniform shares one pipeline), and caches it. Shader modules
//! are composed from their files ([`crate::kernels`]) and compiled once each. Validation
//! errors are captured and name the kernel.
use super::context::{GpuContext, GpuError};
use crate::kernels;
use crate::plan::{Access, BindingSpec, KernelCall};
use std::collections::HashMap;
use std::sync::Arc;

/// Whether shader modules keep wgpu's injected bounds checks: on in debug builds (tests),
/// off in release builds, where the checks cost about a third of a matmul's time on
/// lavapipe. `WGOLF_CHECKED_SHADERS=1` keeps them in a release build.
pub fn checked_shaders() -> bool {
    cfg!(debug_assertions) || std::env::var("WGOLF_CHECKED_SHADERS").is_ok_and(|v| v == "1")
}

/// A ready pipeline and its bind group layout.
pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub label: String,
}

/// Pipelines by label, shader modules by name (their files, see [`kernels::Module`]).
#[derive(Default)]
pub struct KernelRegistry {
    modules: HashMap<String, wgpu::ShaderModule>,
    pipelines: HashMap<String, Arc<Kernel>>,
}

impl KernelRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of distinct pipelines built so far.
    pub fn len(&self) -> usize {
        self.pipelines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pipelines.is_empty()
    }

    /// The pipeline for `call` with the binding table `bindings` (built on first use), plus
    /// the site uniform at binding `bindings.len()` when the call has parameters.
    pub fn get(
        &mut self,
        ctx: &GpuContext,
        call: &KernelCall,
        bindings: &[BindingSpec],
    ) -> Result<Arc<Kernel>, GpuError> {
        let label = call.pipeline_label();
        if let Some(k) = self.pipelines.get(&label) {
            return Ok(k.clone());
        }
        let device = &ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let composed = kernels::module(call.shader, call.entry)
            .map_err(|message| GpuError::Kernel { label: label.clone(), message })?;
        let module = match self.modules.get(&composed.name) {
            Some(m) => m.clone(),
            None => {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(&composed.name),
                    source: wgpu::ShaderSource::Wgsl(composed.source.into()),
                };
                let m = if checked_shaders() {
                    device.create_shader_module(desc)
                } else {
                    // SAFETY: every kernel guards or clamps its own indices against the
                    // element counts the plan checked when it was built; the test suite runs
                    // with the checks on (debug builds) and compares every kernel with its
                    // CPU reference on ragged shapes.
                    unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
                };
                self.modules.insert(composed.name, m.clone());
                m
            }
        };
        let site = (!call.params.is_empty()).then_some(Access::Uniform);
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|b| b.access)
            .chain(site)
            .enumerate()
            .map(|(i, access)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match access {
                        Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                        Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Access::Uniform => wgpu::BufferBindingType::Uniform,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(call.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &call.constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Kernel { label, message: err.to_string() });
        }
        let kernel = Arc::new(Kernel { pipeline, layout, label: label.clone() });
        self.pipelines.insert(label, kernel.clone());
        Ok(kernel)
    }
}
