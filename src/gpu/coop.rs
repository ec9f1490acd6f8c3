//! Cooperative-matrix (tensor core) kernels: which op they can replace on which adapter.
//!
//! [`select`] is asked for every plan step when the GPU executor is built; it returns a
//! replacement kernel when the adapter reports a usable cooperative-matrix configuration,
//! and `None` otherwise (the portable f32 kernels then run). No adapter without the feature
//! ever reaches a cooperative-matrix shader.
//!
//! Today two ops have a replacement: [`Op::Matmul`] and the first stage of a split-K product
//! of one matrix, [`Op::MatmulPartial`] with `batch == 1` (the weight gradients; grid z =
//! split, each summing its K range), both by `shaders/matmul_coop.wgsl` (f16
//! operands rounded from the f32 buffers while staging, f32 accumulation; checked against the
//! f32 CPU reference with [`crate::tolerance::Check::KernelF16`]). A backward product's
//! gradient operand is staged times the power of two its `a_prescale_exp` says, and the
//! product scaled back in f32, so the 1/tokens factor the gradients carry does not flush them
//! to zero in f16 (checked at the record's tokens per step with
//! [`crate::tolerance::Check::GradF16`]). It needs, all of them:
//! - the device's `EXPERIMENTAL_COOPERATIVE_MATRIX`, `SHADER_F16` (the shader says
//!   `enable f16;`) and `SUBGROUP` (it finds its subgroup with `@builtin(subgroup_id)`);
//! - an adapter configuration with f16 A and B and f32 C, square: 16x16x16 is preferred, else
//!   8x8x8 ([`pick_tile`]). wgpu does not check the shader's matrix type against the
//!   adapter's list, so this module does; each pipeline keeps only the entry point of its tile
//!   size, so the driver never sees a matrix type it did not report;
//! - one fixed subgroup size (`subgroup_min_size == subgroup_max_size`): the workgroup is
//!   sized as a whole number of subgroups and each subgroup owns fixed output tiles;
//! - a configuration within the device's workgroup limits ([`choose`]).
//!
//! Setting `WGOLF_COOP=0` (or `off`, `false`) turns the replacement off, e.g. to run the f32
//! kernel tests, whose tolerances f16 operands do not meet, on a tensor-core GPU.
use super::context::GpuContext;
use crate::ops::matmul::Layout;
use crate::plan::{KernelCall, Op};
use wgpu::wgt::{CooperativeMatrixProperties, CooperativeScalarType};

/// The shader file stem of the cooperative-matrix matmul.
pub const SHADER: &str = "matmul_coop";
/// The environment variable that turns cooperative-matrix kernels off (`0`, `off`, `false`).
pub const COOP_ENV: &str = "WGOLF_COOP";
/// Output tiles per subgroup along M and N (the shader's `SUB_M`, `SUB_N`).
pub const SUB_M: u32 = 4;
pub const SUB_N: u32 = 2;
/// Padding of each staged row, in f16 elements (the shader's `PAD`).
pub const PAD: u32 = 8;
/// The most staged elements per invocation, operand and slice (the shader's `MAX_PER`).
pub const MAX_PER: u32 = 32;
/// [`choose`] takes the largest workgroup tile that still gives at least this many
/// workgroups (a GPU has on the order of a hundred multiprocessors); to be tuned on hardware.
pub const TARGET_WORKGROUPS: u64 = 256;

/// The cooperative tile edge this list of adapter configurations supports for f16 x f16 ->
/// f32 products: 16 if it has 16x16x16, else 8 if it has 8x8x8, else `None`.
pub fn pick_tile(props: &[CooperativeMatrixProperties]) -> Option<u32> {
    [16, 8].into_iter().find(|&t| {
        props.iter().any(|p| {
            p.m_size == t
                && p.n_size == t
                && p.k_size == t
                && p.ab_type == CooperativeScalarType::F16
                && p.cr_type == CooperativeScalarType::F32
        })
    })
}

/// The shape parameters of one `matmul_coop` pipeline (its override constants besides the
/// op's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopParams {
    /// Cooperative tile edge, 8 or 16 (picks the entry point).
    pub tile: u32,
    /// The adapter's subgroup size.
    pub sg_size: u32,
    /// Subgroups per workgroup along M and N.
    pub sg_m: u32,
    pub sg_n: u32,
    /// Depth of one staged K slice (a multiple of `tile`).
    pub bk: u32,
}

impl CoopParams {
    /// The entry point of this tile size.
    pub fn entry(&self) -> &'static str {
        if self.tile == 16 {
            "matmul_coop16"
        } else {
            "matmul_coop8"
        }
    }
    pub fn subgroups(&self) -> u32 {
        self.sg_m * self.sg_n
    }
    /// Invocations per workgroup.
    pub fn threads(&self) -> u32 {
        self.subgroups() * self.sg_size
    }
    /// Rows of c one workgroup covers.
    pub fn bm(&self) -> u32 {
        self.sg_m * SUB_M * self.tile
    }
    /// Columns of c one workgroup covers.
    pub fn bn(&self) -> u32 {
        self.sg_n * SUB_N * self.tile
    }
    /// Staged elements each invocation carries per slice, for A and for B.
    pub fn per_thread(&self) -> (u32, u32) {
        let t = self.threads();
        ((self.bm() * self.bk).div_ceil(t), (self.bn() * self.bk).div_ceil(t))
    }
    /// Workgroup memory in bytes (two f16 staging buffers per operand and one f32 scratch
    /// tile per subgroup), computed as the shader sizes its arrays.
    pub fn workgroup_bytes(&self, layout: Layout) -> u64 {
        let (bm, bn, bk) = (self.bm() as u64, self.bn() as u64, self.bk as u64);
        let pad = PAD as u64;
        let a_stage = if layout.trans_a() { bk * (bm + pad) } else { bm * (bk + pad) };
        let b_stage = if layout.trans_b() { bn * (bk + pad) } else { bk * (bn + pad) };
        2 * (a_stage + b_stage) * 2 + (self.subgroups() * self.tile * self.tile) as u64 * 4
    }
    /// The workgroup grid for an `m x n` output.
    pub fn grid(&self, m: usize, n: usize) -> [u32; 3] {
        [n.div_ceil(self.bn() as usize) as u32, m.div_ceil(self.bm() as usize) as u32, 1]
    }
    /// Whether the shader's own constraints hold (not the device's).
    pub fn is_valid(&self) -> bool {
        let (pa, pb) = self.per_thread();
        matches!(self.tile, 8 | 16)
            && self.sg_size > 0
            && self.sg_m > 0
            && self.sg_n > 0
            && self.bk > 0
            && self.bk.is_multiple_of(self.tile)
            && pa <= MAX_PER
            && pb <= MAX_PER
    }
    /// The configurations tried for a tile and subgroup size, largest workgroup tile first.
    pub fn candidates(tile: u32, sg_size: u32) -> Vec<CoopParams> {
        let mut out = Vec::new();
        for (sg_m, sg_n) in [(2, 4), (2, 2), (1, 2), (1, 1)] {
            for bk in [32, 16, 8] {
                let p = CoopParams { tile, sg_size, sg_m, sg_n, bk };
                if p.is_valid() {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// The device limits a configuration must respect (from [`wgpu::Limits`]; separate so the
/// choice is testable without a device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceBounds {
    pub max_invocations: u32,
    pub max_workgroup_x: u32,
    pub max_workgroup_bytes: u32,
    pub max_workgroups_per_dim: u32,
}

impl From<&wgpu::Limits> for DeviceBounds {
    fn from(l: &wgpu::Limits) -> Self {
        DeviceBounds {
            max_invocations: l.max_compute_invocations_per_workgroup,
            max_workgroup_x: l.max_compute_workgroup_size_x,
            max_workgroup_bytes: l.max_compute_workgroup_storage_size,
            max_workgroups_per_dim: l.max_compute_workgroups_per_dimension,
        }
    }
}

impl CoopParams {
    /// Whether this configuration fits the device for an `m x n` output in `layout`.
    pub fn fits(&self, bounds: &DeviceBounds, layout: Layout, m: usize, n: usize) -> bool {
        let [gx, gy, _] = self.grid(m, n);
        self.is_valid()
            && self.threads() <= bounds.max_invocations
            && self.threads() <= bounds.max_workgroup_x
            && self.workgroup_bytes(layout) <= bounds.max_workgroup_bytes as u64
            && gx.max(gy) <= bounds.max_workgroups_per_dim
    }
}

/// The configuration for `op` with this tile and subgroup size on a device: the largest
/// fitting workgroup tile that still yields [`TARGET_WORKGROUPS`] workgroups, else the
/// fitting one with the most workgroups (ties: fewer invocations, then the deeper K slice).
/// `None` for ops other than a matmul, or when nothing fits.
///
/// A weight gradient (`Tn`, K = tokens) with a small output, e.g. 512 x 512, gets few
/// workgroups per split; the plan splits it along K ([`crate::plan::split_k`]), and the
/// workgroups counted here are those of all its splits. `cargo bench --bench matmul --
/// --coop-all` times every candidate.
pub fn choose(tile: u32, sg_size: u32, bounds: &DeviceBounds, op: &Op) -> Option<CoopParams> {
    let (m, n, layout, splits) = replaced(op)?;
    let fitting: Vec<CoopParams> = CoopParams::candidates(tile, sg_size)
        .into_iter()
        .filter(|p| p.fits(bounds, layout, m, n) && splits as u32 <= bounds.max_workgroups_per_dim)
        .collect();
    let count = |p: &CoopParams| {
        let [x, y, _] = p.grid(m, n);
        x as u64 * y as u64 * splits as u64
    };
    fitting
        .iter()
        .find(|p| count(p) >= TARGET_WORKGROUPS)
        .or_else(|| fitting.iter().max_by_key(|p| (count(p), std::cmp::Reverse(p.threads()), p.bk)))
        .copied()
}

/// The output shape, layout and split count of an op `matmul_coop` can replace: a
/// [`Matmul`](crate::plan::Matmul) (one split) or a one-matrix
/// [`MatmulPartial`](crate::plan::MatmulPartial). `None` for every other op.
fn replaced(op: &Op) -> Option<(usize, usize, Layout, usize)> {
    match *op {
        Op::Matmul(crate::plan::Matmul { m, n, layout, .. }) => Some((m, n, layout, 1)),
        Op::MatmulPartial(p) if p.batch == 1 => Some((p.m, p.n, p.layout, p.splits())),
        _ => None,
    }
}

/// The `matmul_coop` kernel call for an op [`choose`] accepts with configuration `p` (no
/// device checks: [`select`] makes those). `None` for other ops. A split product sets
/// `K_SPLIT` and runs its splits along grid z, overwriting its partials.
pub fn kernel(op: &Op, p: &CoopParams) -> Option<KernelCall> {
    let (m, n, k, layout, accumulate, k_split, splits, a_exp) = match *op {
        Op::Matmul(crate::plan::Matmul { m, n, k, layout, accumulate, a_prescale_exp }) => {
            (m, n, k, layout, accumulate, k, 1, a_prescale_exp)
        }
        Op::MatmulPartial(q) if q.batch == 1 => {
            (q.m, q.n, q.k, q.layout, false, q.k_split, q.splits(), q.a_prescale_exp)
        }
        _ => return None,
    };
    let u = |v: usize| v as f64;
    let b = |v: bool| if v { 1.0 } else { 0.0 };
    let [x, y, _] = p.grid(m, n);
    let mut constants = vec![
        ("M", u(m)),
        ("N", u(n)),
        ("K", u(k)),
        ("TRANS_A", b(layout.trans_a())),
        ("TRANS_B", b(layout.trans_b())),
        ("ACCUMULATE", b(accumulate)),
        ("A_EXP", a_exp as f64),
        ("TILE", p.tile as f64),
        ("SG_SIZE", p.sg_size as f64),
        ("SG_M", p.sg_m as f64),
        ("SG_N", p.sg_n as f64),
        ("BK", p.bk as f64),
    ];
    if splits > 1 {
        constants.push(("K_SPLIT", u(k_split)));
    }
    Some(KernelCall::new(SHADER, p.entry(), constants, [x, y, splits as u32]))
}

/// Whether `WGOLF_COOP` turns cooperative-matrix kernels off.
pub fn disabled_by_env() -> bool {
    std::env::var(COOP_ENV)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "off" | "false" | "no"))
}

/// The tile size and subgroup size this device can run `matmul_coop` with, or why not.
pub fn device_support(ctx: &GpuContext) -> Result<(u32, u32), String> {
    if disabled_by_env() {
        return Err(format!("turned off by {COOP_ENV}"));
    }
    if !ctx.cooperative_matrix {
        return Err("the device has no EXPERIMENTAL_COOPERATIVE_MATRIX".into());
    }
    let features = ctx.device.features();
    for (f, name) in [(wgpu::Features::SHADER_F16, "SHADER_F16"), (wgpu::Features::SUBGROUP, "SUBGROUP")] {
        if !features.contains(f) {
            return Err(format!("the device has no {name}"));
        }
    }
    let tile = pick_tile(&ctx.report.cooperative_matrix).ok_or_else(|| {
        format!(
            "the adapter reports no 16x16x16 or 8x8x8 f16 x f16 -> f32 configuration (it reports {:?})",
            ctx.report.cooperative_matrix
        )
    })?;
    let (lo, hi) = (ctx.report.info.subgroup_min_size, ctx.report.info.subgroup_max_size);
    if lo != hi || lo == 0 {
        return Err(format!("the subgroup size is not fixed (it ranges over {lo}..{hi})"));
    }
    Ok((tile, lo))
}

/// A replacement kernel for `op` on this adapter, if one applies: the cooperative-matrix
/// matmul for [`Op::Matmul`] and a one-matrix [`Op::MatmulPartial`] when
/// [`device_support`] and [`choose`] find a configuration.
pub fn select(ctx: &GpuContext, op: &Op) -> Option<KernelCall> {
    replaced(op)?;
    let (tile, sg_size) = device_support(ctx).ok()?;
    let p = choose(tile, sg_size, &DeviceBounds::from(&ctx.device.limits()), op)?;
    kernel(op, &p)
}
