//! The GPU context: one instance, adapter, device and queue, built once.
//!
//! Vulkan, Metal and DX12 are asked for explicitly: wgpu's default would silently fall back
//! to a GL software adapter with neither f16 nor subgroups. The device is created with the
//! adapter's own limits (WebGPU's defaults cap storage bindings at 128 MiB and workgroups at
//! 256 invocations) and with the optional features the adapter has that wgolf can use.
use crate::plan::KernelTarget;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// The environment variable that picks an adapter, like `--adapter`.
pub const ADAPTER_ENV: &str = "WGOLF_ADAPTER";

/// Backends wgolf runs on.
pub fn backends() -> wgpu::Backends {
    wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
}

/// Why no GPU context could be made.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no Vulkan, Metal or DX12 adapter found. On Linux without a GPU install lavapipe, Mesa's CPU \
         Vulkan driver: `sudo apt-get install mesa-vulkan-drivers`; with a GPU, install its Vulkan driver"
    )]
    NoAdapter,
    #[error("no adapter matches '{wanted}' (from {source_of}); the adapters are:\n{list}")]
    NoMatch { wanted: String, source_of: String, list: String },
    #[error("could not create a device on {adapter}: {message}")]
    Device { adapter: String, message: String },
    #[error("kernel {label}: {message}")]
    Kernel { label: String, message: String },
    #[error("the plan's {bytes} bytes of tensors do not fit in {adapter}'s memory: {message}")]
    OutOfMemory { bytes: u64, adapter: String, message: String },
    #[error("the plan needs {what} of {needed} bytes but {adapter} allows {limit}")]
    Limit { what: String, needed: u64, limit: u64, adapter: String },
}

/// What `wgolf info` prints about an adapter.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    pub index: usize,
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    pub cooperative_matrix: Vec<wgpu::wgt::CooperativeMatrixProperties>,
    /// Bytes of device-local memory, where the backend reports it (Vulkan).
    pub device_memory: Option<u64>,
}

impl AdapterReport {
    fn of(index: usize, adapter: &wgpu::Adapter) -> Self {
        AdapterReport {
            index,
            info: adapter.get_info(),
            features: adapter.features(),
            limits: adapter.limits(),
            cooperative_matrix: adapter.cooperative_matrix_properties(),
            device_memory: device_memory(adapter),
        }
    }

    /// One line: index, name, backend, device type.
    pub fn one_line(&self) -> String {
        format!(
            "[{}] {} ({:?}, {:?}, driver {} {})",
            self.index,
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        )
    }

    /// The features and limits that matter for training, one per line.
    pub fn details(&self) -> String {
        let f = &self.features;
        let yes = |b: bool| if b { "yes" } else { "no" };
        let l = &self.limits;
        let mut s = String::new();
        let _ = writeln!(s, "  backend:                 {:?}", self.info.backend);
        let _ = writeln!(s, "  device type:             {:?}", self.info.device_type);
        let _ = writeln!(s, "  driver:                  {} {}", self.info.driver, self.info.driver_info);
        let _ = writeln!(s, "  vendor / device id:      {:#06x} / {:#06x}", self.info.vendor, self.info.device);
        let _ = writeln!(s, "  f16 in shaders:          {}", yes(f.contains(wgpu::Features::SHADER_F16)));
        let _ = writeln!(
            s,
            "  subgroups:               {} (sizes {}..{})",
            yes(f.contains(wgpu::Features::SUBGROUP)),
            self.info.subgroup_min_size,
            self.info.subgroup_max_size
        );
        let _ = writeln!(
            s,
            "  timestamps:              {} (inside passes: {})",
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY)),
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES))
        );
        let coop = if self.cooperative_matrix.is_empty() {
            "none".to_string()
        } else {
            self.cooperative_matrix
                .iter()
                .map(|c| format!("{}x{}x{} {:?}->{:?}", c.m_size, c.n_size, c.k_size, c.ab_type, c.cr_type))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "  cooperative matrices:    {} ({})",
            yes(f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)),
            coop
        );
        let memory = self.device_memory.map_or("not reported".to_string(), |b| format!("{} MiB", b >> 20));
        let _ = writeln!(s, "  device memory:           {memory}");
        let _ = writeln!(s, "  max buffer size:         {} MiB", l.max_buffer_size >> 20);
        let _ = writeln!(s, "  max storage binding:     {} MiB", l.max_storage_buffer_binding_size >> 20);
        let _ = writeln!(s, "  storage buffers / stage: {}", l.max_storage_buffers_per_shader_stage);
        let _ = writeln!(s, "  workgroup memory:        {} KiB", l.max_compute_workgroup_storage_size >> 10);
        let _ = writeln!(s, "  invocations / workgroup: {}", l.max_compute_invocations_per_workgroup);
        let _ = writeln!(s, "  workgroups / dimension:  {}", l.max_compute_workgroups_per_dimension);
        let _ = write!(s, "  immediates:              {} bytes", l.max_immediate_size);
        s
    }
}

/// The sum of a Vulkan adapter's device-local heaps (what a plan's buffers are allocated
/// from); `None` on other backends.
#[cfg(not(any(target_arch = "wasm32", target_vendor = "apple")))]
fn device_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: the guard keeps the adapter alive while its physical device's memory
    // properties are read; nothing is created or changed through the raw handles.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    // SAFETY: a valid physical device of this instance (wgpu-hal's own handle).
    let props = unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    let heaps = &props.memory_heaps[..props.memory_heap_count as usize];
    let local: u64 =
        heaps.iter().filter(|h| h.flags.contains(ash::vk::MemoryHeapFlags::DEVICE_LOCAL)).map(|h| h.size).sum();
    (local > 0).then_some(local)
}

#[cfg(any(target_arch = "wasm32", target_vendor = "apple"))]
fn device_memory(_adapter: &wgpu::Adapter) -> Option<u64> {
    None
}

/// Lists the Vulkan/Metal/DX12 adapters of this machine.
pub fn list_adapters() -> Vec<AdapterReport> {
    let instance = make_instance();
    pollster::block_on(instance.enumerate_adapters(backends()))
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterReport::of(i, a))
        .collect()
}

fn make_instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends();
    wgpu::Instance::new(desc)
}

/// The device and queue every executor and test uses.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub report: AdapterReport,
    /// Whether the device was created with cooperative matrices enabled.
    pub cooperative_matrix: bool,
    /// Why the device was lost, once the driver says so (set by wgpu's device-lost callback).
    lost: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    /// Opens an adapter: `choice` (an index or a name substring), else `WGOLF_ADAPTER`, else
    /// the first discrete GPU, then integrated, then any (lavapipe last).
    pub fn new(choice: Option<&str>) -> Result<Self, GpuError> {
        let instance = make_instance();
        let adapters = pollster::block_on(instance.enumerate_adapters(backends()));
        if adapters.is_empty() {
            return Err(GpuError::NoAdapter);
        }
        let env = std::env::var(ADAPTER_ENV).ok().filter(|s| !s.is_empty());
        let (wanted, source_of) = match (choice, env) {
            (Some(c), _) => (Some(c.to_string()), "--adapter".to_string()),
            (None, Some(e)) => (Some(e), ADAPTER_ENV.to_string()),
            (None, None) => (None, String::new()),
        };
        let index = match &wanted {
            Some(w) => pick(&adapters, w).ok_or_else(|| GpuError::NoMatch {
                wanted: w.clone(),
                source_of,
                list: adapters
                    .iter()
                    .enumerate()
                    .map(|(i, a)| AdapterReport::of(i, a).one_line())
                    .collect::<Vec<_>>()
                    .join("\n"),
            })?,
            None => {
                let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
                    wgpu::DeviceType::DiscreteGpu => 0,
                    wgpu::DeviceType::IntegratedGpu => 1,
                    wgpu::DeviceType::VirtualGpu => 2,
                    wgpu::DeviceType::Other => 3,
                    wgpu::DeviceType::Cpu => 4,
                };
                (0..adapters.len()).min_by_key(|&i| rank(&adapters[i])).expect("not empty")
            }
        };
        let adapter = &adapters[index];
        let report = AdapterReport::of(index, adapter);
        let wanted_features = wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        let features = adapter.features() & wanted_features;
        let cooperative_matrix = features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        let desc = wgpu::DeviceDescriptor {
            label: Some("wgolf"),
            required_features: features,
            required_limits: adapter.limits(),
            // SAFETY: experimental features are only used by kernels that check the adapter's
            // cooperative-matrix configurations first.
            experimental_features: if cooperative_matrix {
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            },
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| GpuError::Device { adapter: report.info.name.clone(), message: e.to_string() })?;
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut lost) = flag.lock() {
                *lost = Some(format!("{reason:?}: {message}"));
            }
        });
        Ok(GpuContext { device, queue, report, cooperative_matrix, lost })
    }

    /// Why the device is lost, if the driver has said it is.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().map(|l| l.clone()).unwrap_or_else(|_| Some("the device-lost flag is poisoned".into()))
    }

    /// The adapter's name.
    pub fn adapter_name(&self) -> &str {
        &self.report.info.name
    }

    /// The kind of adapter the portable kernels are tuned for: [`KernelTarget::Cpu`] for a
    /// CPU adapter (lavapipe's llvmpipe: 256-bit SIMD, subgroups of 8) with subgroups of
    /// exactly 8 invocations (the CPU calls spread reads over a subgroup's 8 lanes and lay a
    /// matmul row of 8 invocations on one subgroup), [`KernelTarget::Gpu`] for everything
    /// else.
    pub fn kernel_target(&self) -> KernelTarget {
        let cpu = self.report.info.device_type == wgpu::DeviceType::Cpu;
        if cpu && self.has_subgroups_of(8) {
            KernelTarget::Cpu
        } else {
            KernelTarget::Gpu
        }
    }

    /// Whether the device has subgroup operations on subgroups of exactly `lanes` invocations.
    pub fn has_subgroups_of(&self, lanes: u32) -> bool {
        let info = &self.report.info;
        self.device.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == lanes
            && info.subgroup_max_size == lanes
    }
}

fn pick(adapters: &[wgpu::Adapter], wanted: &str) -> Option<usize> {
    if let Ok(i) = wanted.parse::<usize>() {
        return (i < adapters.len()).then_some(i);
    }
    let w = wanted.to_lowercase();
    adapters.iter().position(|a| a.get_info().name.to_lowercase().contains(&w))
}
