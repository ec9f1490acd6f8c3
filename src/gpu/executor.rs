//! The GPU executor: one wgpu buffer per tensor (so wgpu's per-dispatch usage tracking never
//! serialises unrelated kernels), every pipeline and bind group built once when the plan is
//! loaded, and each run re-encoding a tight set_pipeline / set_bind_group / dispatch loop in
//! one compute pass. Nothing is allocated per step but the encoder and the pass; the loss is
//! read back only when asked.
use super::context::{GpuContext, GpuError};
use super::registry::{Kernel, KernelRegistry};
use crate::exec::{Executor, HostData};
use crate::plan::{Phase, Plan, Role, TensorId};
use std::sync::Arc;

struct Prepared {
    kernel: Arc<Kernel>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

/// Replays a plan on the GPU.
pub struct GpuExecutor {
    ctx: Arc<GpuContext>,
    plan: Plan,
    buffers: Vec<wgpu::Buffer>,
    steps: [Vec<Prepared>; 3],
    pending_clears: Vec<TensorId>,
    staging: Option<wgpu::Buffer>,
    /// Distinct pipelines the plan uses.
    pub pipelines: usize,
}

impl GpuExecutor {
    /// Allocates every tensor, builds every pipeline and bind group, and uploads constants.
    pub fn new(ctx: Arc<GpuContext>, plan: &Plan) -> Result<Self, GpuError> {
        let limits = ctx.device.limits();
        let device = &ctx.device;
        let mut buffers = Vec::with_capacity(plan.tensors.len());
        for t in &plan.tensors {
            let bytes = ((t.numel() * 4).max(4)) as u64;
            let is_uniform = matches!(t.role, Role::Hyper(_));
            let limit = if is_uniform {
                limits.max_uniform_buffer_binding_size
            } else {
                limits.max_storage_buffer_binding_size
            };
            if bytes > limit {
                return Err(GpuError::Limit {
                    what: format!("tensor {} {:?}", t.name, t.shape),
                    needed: bytes,
                    limit,
                    adapter: ctx.adapter_name().to_string(),
                });
            }
            let usage = if is_uniform {
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST
            } else {
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
            };
            buffers.push(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&t.name),
                size: bytes,
                usage,
                mapped_at_creation: false,
            }));
        }
        let mut registry = KernelRegistry::new();
        let mut steps: [Vec<Prepared>; 3] = Default::default();
        for phase in Phase::ALL {
            for step in plan.steps(phase) {
                // A cooperative-matrix kernel replaces the portable one where the adapter has one.
                let call = super::coop::select(&ctx, &step.op).unwrap_or_else(|| step.op.kernel());
                let kernel = registry.get(&ctx, &call, &step.op.bindings())?;
                let entries: Vec<wgpu::BindGroupEntry> = step
                    .args
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| wgpu::BindGroupEntry { binding: i as u32, resource: buffers[t].as_entire_binding() })
                    .collect();
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&kernel.label),
                    layout: &kernel.layout,
                    entries: &entries,
                });
                steps[phase as usize].push(Prepared { kernel, bind_group, workgroups: call.workgroups });
            }
        }
        let pipelines = registry.len();
        let mut ex = GpuExecutor {
            ctx,
            plan: plan.clone(),
            buffers,
            steps,
            pending_clears: Vec::new(),
            staging: None,
            pipelines,
        };
        for (id, data) in &plan.constants {
            ex.write(*id, HostData::F32(data));
        }
        Ok(ex)
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    fn encode_clears(&mut self, encoder: &mut wgpu::CommandEncoder) {
        for t in self.pending_clears.drain(..) {
            encoder.clear_buffer(&self.buffers[t], 0, None);
        }
    }
}

impl Executor for GpuExecutor {
    fn write(&mut self, t: TensorId, data: HostData<'_>) {
        let bytes: &[u8] = match data {
            HostData::F32(v) => bytemuck::cast_slice(v),
            HostData::U32(v) => bytemuck::cast_slice(v),
        };
        assert_eq!(
            bytes.len(),
            self.plan.tensors[t].numel() * 4,
            "write to {}: wrong length",
            self.plan.tensors[t].name
        );
        self.ctx.queue.write_buffer(&self.buffers[t], 0, bytes);
    }

    fn read(&mut self, t: TensorId) -> Vec<f32> {
        let bytes = (self.plan.tensors[t].numel() * 4) as u64;
        let ctx = self.ctx.clone();
        let device = &ctx.device;
        if self.staging.as_ref().is_none_or(|s| s.size() < bytes) {
            self.staging = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback staging"),
                size: bytes.next_power_of_two().max(256),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let staging = self.staging.clone().expect("just made");
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        self.encode_clears(&mut encoder);
        encoder.copy_buffer_to_buffer(&self.buffers[t], 0, &staging, 0, bytes);
        self.ctx.queue.submit([encoder.finish()]);
        let slice = staging.slice(0..bytes);
        slice.map_async(wgpu::MapMode::Read, |r| r.expect("mapping the readback buffer failed"));
        device.poll(wgpu::PollType::wait_indefinitely()).expect("device lost while reading back");
        let out = {
            let view = slice.get_mapped_range().expect("readback range is mapped");
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        out
    }

    fn clear(&mut self, ts: &[TensorId]) {
        self.pending_clears.extend_from_slice(ts);
    }

    fn run(&mut self, phase: Phase, range: std::ops::Range<usize>) {
        let mut encoder =
            self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgolf step") });
        self.encode_clears(&mut encoder);
        {
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("wgolf pass"), timestamp_writes: None });
            for s in &self.steps[phase as usize][range] {
                pass.set_pipeline(&s.kernel.pipeline);
                pass.set_bind_group(0, &s.bind_group, &[]);
                let [x, y, z] = s.workgroups;
                pass.dispatch_workgroups(x, y, z);
            }
        }
        self.ctx.queue.submit([encoder.finish()]);
    }

    fn sync(&mut self) {
        self.ctx.device.poll(wgpu::PollType::wait_indefinitely()).expect("device lost");
    }

    fn describe(&self) -> String {
        format!("{} ({:?})", self.ctx.adapter_name(), self.ctx.report.info.backend)
    }
}
