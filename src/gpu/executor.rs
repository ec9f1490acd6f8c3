//! The GPU executor: one wgpu buffer per slot of the plan's memory (a tensor of its own, or
//! tensors with disjoint lifetimes, each bound as the first `numel * 4` bytes of its slot's
//! buffer; separate buffers, rather than ranges of one, so that wgpu's per-buffer usage
//! tracking never serialises unrelated kernels), every pipeline and bind group built once
//! when the plan is loaded, and each run re-encoding a tight set_pipeline / set_bind_group / dispatch loop in
//! one compute pass. Nothing is allocated per step but the encoder and the pass; the loss is
//! read back only when asked. Allocation runs inside an out-of-memory error scope and every
//! run inside a validation scope, so a failure comes back as an error naming the tensor or
//! the step, never through wgpu's panicking default handler; a lost device is reported by
//! the poll that waits for it. The plan's clears (a tensor first written by an
//! accumulation) are encoded right before their steps, between compute passes.
//!
//! A kernel's per-dispatch parameters ([`KernelCall::params`]: which matrix, offset or count
//! a site works on) are each dispatch's own record in one uniform buffer, written once with
//! the constants and bound after the step's tensors; the pipeline is shared by every site.
use super::context::{GpuContext, GpuError};
use super::registry::{Kernel, KernelRegistry};
use crate::exec::{ExecError, Executor, HostData, PendingRead};
use crate::plan::{KernelCall, KernelTarget, Phase, Plan, Role, TensorId};
use std::sync::Arc;

/// How long a read-back waits for its map callback once the device is idle.
const MAP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

struct Prepared {
    kernel: Arc<Kernel>,
    /// The dispatch's [`KernelCall::label`] (its parameters included), its bind group's label.
    label: String,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

/// Replays a plan on the GPU.
pub struct GpuExecutor {
    ctx: Arc<GpuContext>,
    plan: Plan,
    /// One per slot of the plan's memory.
    buffers: Vec<wgpu::Buffer>,
    steps: [Vec<Prepared>; 3],
    pending_clears: Vec<TensorId>,
    /// Read-back staging buffers not in use (one per read in flight at most).
    staging: Arc<std::sync::Mutex<Vec<wgpu::Buffer>>>,
    /// Every dispatch's site uniform (see the module doc), when some kernel has one.
    sites: Option<wgpu::Buffer>,
    /// Distinct pipelines the plan uses.
    pub pipelines: usize,
}

impl GpuExecutor {
    /// Allocates every tensor, builds every pipeline and bind group, and uploads constants.
    /// The plan is checked against the adapter's binding limits and memory first, so an
    /// oversized config fails before anything is allocated.
    pub fn new(ctx: Arc<GpuContext>, plan: &Plan) -> Result<Self, GpuError> {
        let target = ctx.kernel_target();
        Self::with_target(ctx, plan, target)
    }

    /// [`new`](Self::new) with the kernels tuned for `target` rather than for this adapter's
    /// kind (the kernel tests run both variants on one adapter).
    pub fn with_target(ctx: Arc<GpuContext>, plan: &Plan, target: KernelTarget) -> Result<Self, GpuError> {
        let limits = ctx.device.limits();
        check_fits(plan, &limits, ctx.report.device_memory, ctx.adapter_name())?;
        let device = &ctx.device;
        let memory = plan.memory();
        let slots = memory.slot_lens();
        // A slot is labelled by its first tensor (and how many share it); a uniform (always
        // a slot of its own) gets a uniform buffer.
        let mut labels: Vec<Option<String>> = vec![None; slots.len()];
        let mut members = vec![0usize; slots.len()];
        let mut uniform = vec![false; slots.len()];
        for (t, desc) in plan.tensors.iter().enumerate() {
            let s = memory.slot(t);
            labels[s].get_or_insert_with(|| desc.name.clone());
            members[s] += 1;
            uniform[s] |= matches!(desc.role, Role::Hyper(_));
        }
        let mut buffers = Vec::with_capacity(slots.len());
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        for (s, &len) in slots.iter().enumerate() {
            let usage = if uniform[s] {
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST
            } else {
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
            };
            let name = labels[s].clone().unwrap_or_else(|| format!("slot {s}"));
            let label = if members[s] > 1 { format!("{name} (+{} sharing)", members[s] - 1) } else { name };
            buffers.push(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&label),
                size: elems_bytes(len),
                usage,
                mapped_at_creation: false,
            }));
        }
        if let Some(err) = pollster::block_on(oom.pop()) {
            return Err(GpuError::OutOfMemory {
                bytes: plan.bytes() as u64,
                adapter: ctx.adapter_name().to_string(),
                message: format!("{err}; {}", memory_hint(plan)),
            });
        }
        // A cooperative-matrix kernel replaces the portable one where the adapter has one;
        // the portable one is tuned for the adapter's kind.
        let calls: Vec<Vec<KernelCall>> = Phase::ALL
            .iter()
            .map(|&phase| {
                plan.steps(phase)
                    .iter()
                    .map(|step| super::coop::select(&ctx, &step.op).unwrap_or_else(|| step.op.kernel_for(target)))
                    .collect()
            })
            .collect();
        let (site_bytes, site_ranges) = site_records(&calls, limits.min_uniform_buffer_offset_alignment);
        let site_buffer = (!site_bytes.is_empty()).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("per-dispatch parameters"),
                size: site_bytes.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let mut registry = KernelRegistry::new();
        let mut steps: [Vec<Prepared>; 3] = Default::default();
        for phase in Phase::ALL {
            let p = phase as usize;
            for (i, (step, call)) in plan.steps(phase).iter().zip(&calls[p]).enumerate() {
                let kernel = registry.get(&ctx, call, &step.op.bindings())?;
                let mut entries: Vec<wgpu::BindGroupEntry> = step
                    .args
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| wgpu::BindGroupEntry {
                        binding: i as u32,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &buffers[memory.slot(t)],
                            offset: 0,
                            size: std::num::NonZeroU64::new(buffer_bytes(&plan.tensors[t])),
                        }),
                    })
                    .collect();
                if let (Some(buffer), Some((offset, size))) = (&site_buffer, site_ranges[p][i]) {
                    entries.push(wgpu::BindGroupEntry {
                        binding: step.args.len() as u32,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer,
                            offset,
                            size: std::num::NonZeroU64::new(size),
                        }),
                    });
                }
                let label = call.label();
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&label),
                    layout: &kernel.layout,
                    entries: &entries,
                });
                steps[p].push(Prepared { kernel, label, bind_group, workgroups: call.workgroups });
            }
        }
        let pipelines = registry.len();
        let ex = GpuExecutor {
            ctx,
            plan: plan.clone(),
            buffers,
            steps,
            pending_clears: Vec::new(),
            staging: Default::default(),
            sites: site_buffer,
            pipelines,
        };
        for (id, data) in &plan.constants {
            let bytes: &[u8] = bytemuck::cast_slice(data);
            ex.ctx.queue.write_buffer(ex.buffer(*id), 0, bytes);
        }
        if let Some(sites) = &ex.sites {
            ex.ctx.queue.write_buffer(sites, 0, &site_bytes);
        }
        Ok(ex)
    }

    /// The buffer holding tensor `t` (its first `numel * 4` bytes).
    fn buffer(&self, t: TensorId) -> &wgpu::Buffer {
        &self.buffers[self.plan.memory().slot(t)]
    }

    /// Zeroes tensor `t`'s bytes of its slot.
    fn encode_clear(&self, encoder: &mut wgpu::CommandEncoder, t: TensorId) {
        encoder.clear_buffer(self.buffer(t), 0, Some(buffer_bytes(&self.plan.tensors[t])));
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    fn encode_clears(&mut self, encoder: &mut wgpu::CommandEncoder) {
        for t in std::mem::take(&mut self.pending_clears) {
            self.encode_clear(encoder, t);
        }
    }

    /// The name of the step a validation message is about: the first step of `range` whose
    /// kernel label the message quotes (wgpu names the pipeline and bind group), else the
    /// range itself.
    fn step_of(&self, phase: Phase, range: std::ops::Range<usize>, message: &str) -> String {
        let steps = &self.steps[phase as usize];
        let named = range
            .clone()
            .find(|&i| message.contains(&steps[i].label))
            .or_else(|| range.clone().find(|&i| message.contains(&steps[i].kernel.label)));
        match named {
            Some(i) => self.plan.step_name(phase, i),
            None if range.len() == 1 => self.plan.step_name(phase, range.start),
            None => format!("{phase:?} steps {}..{}", range.start, range.end),
        }
    }

    /// An error when the driver has reported the device lost.
    fn check_device(&self, during: impl Fn() -> String) -> Result<(), ExecError> {
        match self.ctx.lost() {
            Some(message) => Err(ExecError::DeviceLost { during: during(), message }),
            None => Ok(()),
        }
    }

    /// Waits for the device; a failure, or a loss the driver reported meanwhile (the poll
    /// runs the device-lost callback), means it is lost.
    fn wait(&self, during: impl Fn() -> String) -> Result<(), ExecError> {
        self.check_device(&during)?;
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| ExecError::DeviceLost { during: during(), message: e.to_string() })?;
        self.check_device(&during)
    }
}

/// Per phase and step, the `(offset, size)` of the step's site uniform, if it has one.
type SiteRanges = Vec<Vec<Option<(u64, u64)>>>;

/// The site uniforms of `calls` (per phase, per step) laid out in one buffer: each call with
/// parameters gets its [`KernelCall::param_words`] at an offset that is a multiple of
/// `align` (the adapter's `min_uniform_buffer_offset_alignment`). Returns the buffer's bytes
/// (empty when no call has parameters) and per phase and step the `(offset, size)` of its
/// record.
fn site_records(calls: &[Vec<KernelCall>], align: u32) -> (Vec<u8>, SiteRanges) {
    let align = align.max(4) as usize;
    let mut bytes: Vec<u8> = Vec::new();
    let ranges = calls
        .iter()
        .map(|phase| {
            phase
                .iter()
                .map(|call| {
                    let words = call.param_words();
                    if words.is_empty() {
                        return None;
                    }
                    let offset = bytes.len().next_multiple_of(align);
                    bytes.resize(offset, 0);
                    bytes.extend_from_slice(bytemuck::cast_slice(&words));
                    Some((offset as u64, (words.len() * 4) as u64))
                })
                .collect()
        })
        .collect();
    (bytes, ranges)
}

/// The bytes of a tensor's binding (wgpu buffers are never empty).
fn buffer_bytes(t: &crate::plan::TensorDesc) -> u64 {
    elems_bytes(t.numel())
}

/// The bytes of a buffer of `n` f32 or u32 values.
fn elems_bytes(n: usize) -> u64 {
    ((n * 4).max(4)) as u64
}

/// Which part of the plan takes its memory, and the config fields that shrink it.
pub fn memory_hint(plan: &Plan) -> String {
    let per_batch: usize = plan
        .tensors
        .iter()
        .filter(|t| matches!(t.role, Role::Activation | Role::ActGrad | Role::Input))
        .map(|t| t.numel() * 4)
        .sum();
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    format!(
        "activations and their gradients take {:.1} MiB of the plan's {:.1} MiB before buffer reuse, {:.1} MiB \
         after (lower train.batch_seqs, the sequences per micro-batch, raising train.grad_accum to keep the \
         step's tokens, or train.seq_len); the rest is parameters, gradients and optimizer state (lower \
         model.num_layers or model.model_dim)",
        mib(per_batch),
        mib(plan.bytes_without_reuse()),
        mib(plan.bytes())
    )
}

/// Whether `plan` fits an adapter with `limits` and `device_memory` bytes (when known): every
/// tensor within the binding limit of its kind, and all of them within the memory. The error
/// gives the figures and the config fields to lower.
pub fn check_fits(
    plan: &Plan,
    limits: &wgpu::Limits,
    device_memory: Option<u64>,
    adapter: &str,
) -> Result<(), GpuError> {
    for t in &plan.tensors {
        let limit = if matches!(t.role, Role::Hyper(_)) {
            limits.max_uniform_buffer_binding_size
        } else {
            limits.max_storage_buffer_binding_size.min(limits.max_buffer_size)
        };
        let needed = buffer_bytes(t);
        if needed > limit {
            return Err(GpuError::Limit {
                what: format!("tensor {} {:?} ({})", t.name, t.shape, memory_hint(plan)),
                needed,
                limit,
                adapter: adapter.to_string(),
            });
        }
    }
    let total: u64 = plan.memory().slot_lens().iter().map(|&n| elems_bytes(n)).sum();
    match device_memory {
        Some(memory) if total > memory => Err(GpuError::Limit {
            what: format!("{} tensors ({})", plan.tensors.len(), memory_hint(plan)),
            needed: total,
            limit: memory,
            adapter: format!("{adapter}'s device memory"),
        }),
        _ => Ok(()),
    }
}

impl Executor for GpuExecutor {
    fn write(&mut self, t: TensorId, data: HostData<'_>) -> Result<(), ExecError> {
        let bytes: &[u8] = match data {
            HostData::F32(v) => bytemuck::cast_slice(v),
            HostData::U32(v) => bytemuck::cast_slice(v),
        };
        let desc = &self.plan.tensors[t];
        self.check_device(|| format!("writing {}", desc.name))?;
        if bytes.len() != desc.numel() * 4 {
            return Err(ExecError::Write {
                tensor: desc.name.clone(),
                message: format!("{} values for a tensor of {}", bytes.len() / 4, desc.numel()),
            });
        }
        // Queue writes land before the next submission's commands, where pending clears are
        // encoded: a clear asked for earlier (of this tensor, or of another sharing its
        // slot) would wipe this write. Submit the clears first, so the calls keep their order.
        if !self.pending_clears.is_empty() {
            let mut encoder =
                self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("clears") });
            self.encode_clears(&mut encoder);
            self.ctx.queue.submit([encoder.finish()]);
        }
        self.ctx.queue.write_buffer(self.buffer(t), 0, bytes);
        Ok(())
    }

    fn read(&mut self, t: TensorId) -> Result<Vec<f32>, ExecError> {
        Ok(self.read_many(&[t])?.remove(0))
    }

    /// One submission copying every tensor into one staging buffer, one map, one wait: the
    /// per-tensor submission and wait is most of the cost of reading many small tensors.
    fn read_many(&mut self, ts: &[TensorId]) -> Result<Vec<Vec<f32>>, ExecError> {
        self.begin_read_many(ts)?.finish()
    }

    /// The copies into a staging buffer (from the pool, or a new one) in one submission, and
    /// its map requested; `finish` waits for that submission only, so work submitted later
    /// keeps the device busy meanwhile.
    fn begin_read_many(&mut self, ts: &[TensorId]) -> Result<PendingRead, ExecError> {
        let lens: Vec<u64> = ts.iter().map(|&t| (self.plan.tensors[t].numel() * 4) as u64).collect();
        let bytes: u64 = lens.iter().sum();
        let name = match ts {
            [t] => self.plan.tensors[*t].name.clone(),
            _ => format!("{} tensors", ts.len()),
        };
        self.check_device(|| format!("reading {name} back"))?;
        if ts.is_empty() {
            return Ok(PendingRead::ready(Vec::new()));
        }
        let ctx = self.ctx.clone();
        let device = &ctx.device;
        let free = {
            let mut pool = self.staging.lock().unwrap_or_else(|e| e.into_inner());
            pool.iter().position(|s| s.size() >= bytes).map(|i| pool.swap_remove(i))
        };
        let staging = free.unwrap_or_else(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback staging"),
                size: bytes.next_power_of_two().max(256),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        self.encode_clears(&mut encoder);
        let mut at = 0;
        for (&t, &len) in ts.iter().zip(&lens) {
            // Every tensor is a whole number of f32: offsets stay 4-aligned, as copies need.
            encoder.copy_buffer_to_buffer(self.buffer(t), 0, &staging, at, len);
            at += len;
        }
        let submission = self.ctx.queue.submit([encoder.finish()]);
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(ExecError::Readback { tensor: name, message: err.to_string() });
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.slice(0..bytes).map_async(wgpu::MapMode::Read, move |r| {
            // The receiver lives until the wait below has its answer or gives up.
            let _ = sender.send(r);
        });
        let pool = self.staging.clone();
        Ok(PendingRead::new(move || {
            let lost = |message: String| ExecError::DeviceLost { during: format!("reading {name} back"), message };
            if let Some(m) = ctx.lost() {
                return Err(lost(m));
            }
            ctx.device
                .poll(wgpu::PollType::Wait { submission_index: Some(submission), timeout: None })
                .map_err(|e| lost(e.to_string()))?;
            if let Some(m) = ctx.lost() {
                return Err(lost(m));
            }
            // The callback runs in whichever thread's poll finds the map ready (tests share one
            // device across threads), possibly just after this poll returned: wait for it, but
            // not forever.
            let mapped = receiver.recv_timeout(MAP_TIMEOUT).map_err(|_| ExecError::Readback {
                tensor: name.clone(),
                message: format!("the map did not complete within {MAP_TIMEOUT:?} of its copy finishing"),
            })?;
            mapped.map_err(|e| ExecError::Readback { tensor: name.clone(), message: e.to_string() })?;
            let slice = staging.slice(0..bytes);
            let out = {
                let view = slice
                    .get_mapped_range()
                    .map_err(|e| ExecError::Readback { tensor: name.clone(), message: e.to_string() })?;
                let all: &[f32] = bytemuck::cast_slice::<u8, f32>(&view);
                let mut at = 0;
                lens.iter()
                    .map(|&len| {
                        let n = len as usize / 4;
                        at += n;
                        all[at - n..at].to_vec()
                    })
                    .collect()
            };
            staging.unmap();
            pool.lock().unwrap_or_else(|e| e.into_inner()).push(staging);
            Ok(out)
        }))
    }

    fn clear(&mut self, ts: &[TensorId]) -> Result<(), ExecError> {
        self.pending_clears.extend_from_slice(ts);
        Ok(())
    }

    fn run(&mut self, phase: Phase, range: std::ops::Range<usize>) -> Result<(), ExecError> {
        self.check_device(|| format!("running {phase:?} steps {}..{}", range.start, range.end))?;
        let scope = self.ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder =
            self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgolf step") });
        self.encode_clears(&mut encoder);
        // One compute pass per run of steps without clears; the plan's clears (buffer
        // commands, which a pass cannot hold) go between passes, right before their step.
        let mut i = range.start;
        while i < range.end {
            for &t in self.plan.clears_before(phase, i) {
                self.encode_clear(&mut encoder, t);
            }
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("wgolf pass"), timestamp_writes: None });
            loop {
                let s = &self.steps[phase as usize][i];
                pass.set_pipeline(&s.kernel.pipeline);
                pass.set_bind_group(0, &s.bind_group, &[]);
                let [x, y, z] = s.workgroups;
                pass.dispatch_workgroups(x, y, z);
                i += 1;
                if i == range.end || !self.plan.clears_before(phase, i).is_empty() {
                    break;
                }
            }
        }
        self.ctx.queue.submit([encoder.finish()]);
        match pollster::block_on(scope.pop()) {
            None => Ok(()),
            Some(err) => {
                let message = err.to_string();
                Err(ExecError::Step { step: self.step_of(phase, range, &message), message })
            }
        }
    }

    fn sync(&mut self) -> Result<(), ExecError> {
        self.wait(|| "waiting for submitted work".into())
    }

    fn describe(&self) -> String {
        format!("{} ({:?})", self.ctx.adapter_name(), self.ctx.report.info.backend)
    }
    fn device(&self) -> String {
        self.ctx.report.one_line()
    }
}
