//! What a plan step runs. Each op is one kernel dispatch on the GPU and one CPU reference
//! call, and is defined in one place: a struct in `plan/defs/<family>.rs` implementing
//! [`OpDef`] (its bindings, shape checks, kernel call, CPU reference call and the small
//! shapes the kernel tests run it on). [`Op`] is the closed list of those structs, generated
//! by [`op_table!`] so that every method forwards to the definition without a hand-written
//! match. Nothing here touches wgpu.
//!
//! Adding an op: its shader, its CPU reference in `ops/`, its struct and `OpDef` impl in
//! `defs/` (its [`Cost`] counted from the shader), one line in the table at the bottom of
//! this file, and its tests.
use crate::ops::Real;

/// Workgroup width of every 1-D kernel (`@workgroup_size(64)` in the shaders).
pub const WG_1D: u32 = 64;
/// The largest workgroup count per grid dimension every adapter supports.
pub const MAX_GRID_DIM: u32 = 65535;
/// The number of `AdamHyper` / `MuonHyper` / `SgdHyper` f32 values in a hyperparameter uniform.
pub const HYPER_LEN: usize = 8;

/// How a kernel binds a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Written (or read and written) by the kernel.
    ReadWrite,
    /// Only read.
    Read,
    /// A small uniform block (optimizer hyperparameters).
    Uniform,
}

/// Element type of a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    U32,
}

/// The values a binding may hold, where the op needs more than "any finite f32": what the
/// kernel tests draw random inputs from, and a precondition worth reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    Any,
    /// Sums of squares, second moments.
    NonNegative,
    /// Token or bucket ids below `bound`.
    Ids {
        bound: usize,
    },
    /// A u32 [`id_index`](crate::ops::embedding::id_index) of ids below `vocab`: `vocab + 1`
    /// ascending offsets from 0 to the id count, then the positions grouped by id.
    IdIndex {
        vocab: usize,
    },
    /// An [`AdamHyper`](crate::ops::adamw::AdamHyper) uniform.
    AdamHyper,
    /// A [`MuonHyper`](crate::ops::muon::MuonHyper) uniform.
    MuonHyper,
    /// An [`SgdHyper`](crate::ops::sgd::SgdHyper) uniform.
    SgdHyper,
}

/// One binding of a kernel: access, element type, the exact element count expected, the
/// values it may hold, and for a written binding whether its old value survives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingSpec {
    pub access: Access,
    pub dtype: DType,
    pub len: usize,
    pub domain: Domain,
    /// A [`ReadWrite`](Access::ReadWrite) binding whose every element the kernel writes
    /// without reading the old value (`y = f(x)`). `false` (what [`BindingSpec::rw`] says)
    /// means the kernel may read the old value or leave some of it in place (`dx += ..`, an
    /// in-place update, a write of one slice): the plan then zeroes the tensor before its
    /// first write in a pass when that write is its first access (see `plan::memory`).
    /// Getting this wrong is the one way to mislead the plan's liveness, so `false` is the
    /// safe default; [`BindingSpec::out`] is the claim that the old value is dead.
    pub overwrites: bool,
}

impl BindingSpec {
    /// An f32 binding the kernel reads and writes, or writes only in part (accumulates,
    /// updates in place).
    pub fn rw(len: usize) -> Self {
        BindingSpec { access: Access::ReadWrite, dtype: DType::F32, len, domain: Domain::Any, overwrites: false }
    }
    /// An f32 binding the kernel overwrites entirely without reading it (see
    /// [`BindingSpec::overwrites`]).
    pub fn out(len: usize) -> Self {
        BindingSpec { overwrites: true, ..Self::rw(len) }
    }
    /// [`BindingSpec::out`] when `overwrites`, else [`BindingSpec::rw`] (an op whose flag
    /// decides, such as RoPE's inverse, which accumulates).
    pub fn written(len: usize, overwrites: bool) -> Self {
        BindingSpec { overwrites, ..Self::rw(len) }
    }
    /// An f32 binding the kernel only reads.
    pub fn rd(len: usize) -> Self {
        BindingSpec { access: Access::Read, dtype: DType::F32, len, domain: Domain::Any, overwrites: false }
    }
    /// A u32 id binding (read-only), every id below `bound`.
    pub fn ids(len: usize, bound: usize) -> Self {
        BindingSpec { access: Access::Read, dtype: DType::U32, len, domain: Domain::Ids { bound }, overwrites: false }
    }
    /// An [`id_index`](crate::ops::embedding::id_index) of `tokens` ids below `vocab`
    /// (read-only).
    pub fn id_index(tokens: usize, vocab: usize) -> Self {
        let domain = Domain::IdIndex { vocab };
        BindingSpec { access: Access::Read, dtype: DType::U32, len: vocab + 1 + tokens, domain, overwrites: false }
    }
    /// A hyperparameter uniform of [`HYPER_LEN`] f32 laid out as `domain` says.
    pub fn hyper(domain: Domain) -> Self {
        BindingSpec { access: Access::Uniform, dtype: DType::F32, len: HYPER_LEN, domain, overwrites: false }
    }
    /// The same binding with a narrower domain.
    pub fn within(self, domain: Domain) -> Self {
        BindingSpec { domain, ..self }
    }
}

/// A per-dispatch value of a [`KernelCall`] (see [`KernelCall::params`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Param {
    U32(u32),
    F32(f32),
}

impl Param {
    /// The 4 bytes the kernel's uniform field holds.
    pub fn bits(self) -> u32 {
        match self {
            Param::U32(v) => v,
            Param::F32(v) => v.to_bits(),
        }
    }
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Param::U32(v) => write!(f, "{v}"),
            Param::F32(v) => write!(f, "{v}"),
        }
    }
}

/// What the GPU needs to run an op: shader file, entry point, overrides, per-dispatch
/// parameters and grid.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelCall {
    /// Shader file stem under `shaders/` (see [`crate::kernels::SHADERS`]).
    pub shader: &'static str,
    pub entry: &'static str,
    /// Override constants, in the order they appear in labels: values that shape the kernel
    /// (tiles, layouts, loop bounds worth folding). Each distinct set is a pipeline.
    pub constants: Vec<(&'static str, f64)>,
    /// Per-dispatch values that only select the data (a matrix's index and shape in its
    /// stack, an offset, an element count), named as the fields of the kernel's
    /// `var<uniform>` site struct at the binding after the op's [`bindings`](OpDef::bindings),
    /// in field order (lower-case, so labels tell them from constants). They are known when
    /// the plan is built: the GPU executor writes each dispatch's values once into a small
    /// uniform buffer, so one pipeline serves every site. A uniform works on every backend;
    /// immediates (push constants) would need `Features::IMMEDIATES` and a non-zero
    /// `max_immediate_size`, which WebGPU-level adapters lack. Empty for a kernel without one.
    pub params: Vec<(&'static str, Param)>,
    pub workgroups: [u32; 3],
}

impl KernelCall {
    pub fn new(
        shader: &'static str,
        entry: &'static str,
        constants: Vec<(&'static str, f64)>,
        workgroups: [u32; 3],
    ) -> Self {
        KernelCall { shader, entry, constants, params: Vec::new(), workgroups }
    }

    /// The same call with per-dispatch parameters (see [`KernelCall::params`]).
    pub fn with_params(self, params: Vec<(&'static str, Param)>) -> Self {
        KernelCall { params, ..self }
    }

    /// A readable label of this dispatch such as `matmul[M=64,N=32,K=16,TRANS_A=0,...]` or
    /// `muon_apply[rows=7,cols=5,index=1,shape_scale=1.18]`: the constants, then the
    /// parameters.
    pub fn label(&self) -> String {
        let consts = self.constants.iter().map(|(k, v)| format!("{k}={v}"));
        let params = self.params.iter().map(|(k, v)| format!("{k}={v}"));
        format!("{}[{}]", self.entry, consts.chain(params).collect::<Vec<_>>().join(","))
    }

    /// The label of the pipeline this dispatch runs: [`label`](KernelCall::label) without the
    /// parameters, `shader:entry[constants]`. Dispatches with the same one share a pipeline.
    pub fn pipeline_label(&self) -> String {
        let consts: Vec<String> = self.constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}:{}[{}]", self.shader, self.entry, consts.join(","))
    }

    /// The site uniform's contents: the parameters' bits, zero-padded to a whole number of
    /// 16 bytes (a uniform binding's granularity). Empty without parameters.
    pub fn param_words(&self) -> Vec<u32> {
        let mut words: Vec<u32> = self.params.iter().map(|(_, v)| v.bits()).collect();
        words.resize(words.len().next_multiple_of(4), 0);
        words
    }
}

/// What one dispatch of an op does, counted from its shader as written (the accounting of
/// `plan::cost` and `wgolf info --kernels` sums these).
///
/// The convention, the same for every op:
/// - `bytes_read` / `bytes_written`: every load from and store to a storage buffer that the
///   shader's code issues, 4 bytes each (every binding is f32 or u32), summed over the
///   invocations that do work. A value loaded twice counts twice and `x[i] += y` is one load
///   and one store: no credit for caches, coalescing or the compiler hoisting a repeated load.
///   Uniform blocks (the optimizer hyperparameters), workgroup memory (the `workgroup_sum`
///   tree) and private arrays are not counted. Elements a kernel computes only to discard
///   (the matmul's clamped edge rows) count as their loads do.
/// - `flops`: a multiply-add is 2; every other arithmetic operation on values (add, mul,
///   div, max, min, sqrt, exp, log, tanh) is 1. Index arithmetic, comparisons, selects,
///   negations and expressions of override constants alone (which the pipeline folds) are
///   not counted.
///   The `workgroup_sum` tree counts its `lanes - 1` additions.
/// - Data-dependent branches take the common path, stated where it matters (XSA's norm
///   clamp is taken as inactive).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub flops: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl Cost {
    /// A cost from element counts: `loads` and `stores` of 4-byte storage elements.
    pub fn elems(flops: u64, loads: u64, stores: u64) -> Self {
        Cost { flops, bytes_read: 4 * loads, bytes_written: 4 * stores }
    }
    /// Bytes moved either way.
    pub fn bytes(&self) -> u64 {
        self.bytes_read + self.bytes_written
    }
    /// The same work `times` over.
    pub fn times(self, times: u64) -> Self {
        Cost {
            flops: self.flops * times,
            bytes_read: self.bytes_read * times,
            bytes_written: self.bytes_written * times,
        }
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            flops: self.flops + o.flops,
            bytes_read: self.bytes_read + o.bytes_read,
            bytes_written: self.bytes_written + o.bytes_written,
        }
    }
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        *self = *self + o;
    }
}

/// A count as `u64`, for [`Cost`] arithmetic.
pub fn n64(v: usize) -> u64 {
    v as u64
}

/// FLOPs of `workgroup_sum` over `lanes` lanes (its pairwise additions), for one workgroup.
pub const fn tree_flops(lanes: u64) -> u64 {
    lanes - 1
}

/// A 1-D grid covering `count` invocations of [`WG_1D`]-wide workgroups, folded into y
/// when there are more than [`MAX_GRID_DIM`] workgroups (kernels index `x + y * nx * 64`).
pub fn grid_1d(count: usize) -> [u32; 3] {
    grid_groups(count.div_ceil(WG_1D as usize))
}

/// A grid of `groups` workgroups (at least one), folded into y when there are more than
/// [`MAX_GRID_DIM`] (kernels number them `x + y * nx`; the last row may run past `groups`).
pub fn grid_groups(groups: usize) -> [u32; 3] {
    let groups = groups.max(1) as u32;
    let x = groups.min(MAX_GRID_DIM);
    [x, groups.div_ceil(x), 1]
}

/// An error when a grid dimension of `n` workgroups exceeds [`MAX_GRID_DIM`].
pub fn check_grid_dim(what: &str, n: usize) -> Result<(), String> {
    if n > MAX_GRID_DIM as usize {
        return Err(format!("{what}: {n} workgroups along one grid dimension exceed {MAX_GRID_DIM}"));
    }
    Ok(())
}

/// An override constant's value for a count or an index.
pub fn uconst(v: usize) -> f64 {
    v as f64
}

/// A [`Param`] for a count, an index or an offset (the plan's tensors have fewer than 2^32
/// elements: their bindings are checked against the adapter's limits).
pub fn uparam(v: usize) -> Param {
    Param::U32(u32::try_from(v).expect("a per-dispatch parameter fits in u32"))
}

/// A [`Param`] for a real value, rounded to f32 as the kernel reads it.
pub fn fparam(v: f64) -> Param {
    Param::F32(v as f32)
}

/// An override constant's value for a flag.
pub fn flag(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

/// A read-only binding's host data, as the CPU reference sees it.
pub enum In<'a, R> {
    F(&'a [R]),
    U(&'a [u32]),
}

impl<'a, R: Real> In<'a, R> {
    /// The float data (the plan checked the binding's type when it was built).
    pub fn f(&self) -> &'a [R] {
        match self {
            In::F(v) => v,
            In::U(_) => panic!("plan checked: f32 binding expected"),
        }
    }
    /// The id data.
    pub fn u(&self) -> &'a [u32] {
        match self {
            In::U(v) => v,
            In::F(_) => panic!("plan checked: u32 binding expected"),
        }
    }
    /// A hyperparameter uniform as the `#[repr(C)]` f32 block the kernel reads.
    pub fn hyper<H: bytemuck::Pod>(&self) -> H {
        let values: Vec<f32> = self.f().iter().map(|v| v.to_f64() as f32).collect();
        bytemuck::pod_read_unaligned(bytemuck::cast_slice(&values))
    }
}

/// The kind of adapter a kernel call is tuned for. A GPU has many multiprocessors, fast
/// workgroup memory and registers that spill past a point; a CPU adapter (llvmpipe) has a few
/// cores, runs each workgroup-memory read lane by lane, and has caches to hold large tiles and
/// blocked rows. The plan is the same on both; only [`OpDef::kernel_for`] differs. The CPU
/// calls may use subgroup operations on subgroups of exactly 8 invocations (lavapipe's), so
/// an adapter gets them only when it has those ([`crate::gpu::GpuContext::kernel_target`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelTarget {
    Gpu,
    Cpu,
}

/// The definition of one op: everything the plan, the executors and the tests need.
pub trait OpDef: Copy + std::fmt::Debug + PartialEq {
    /// The bindings in shader order (outputs first), with the element count of each.
    fn bindings(&self) -> Vec<BindingSpec>;
    /// Shape conditions beyond element counts; a message saying what is wrong.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
    /// The kernel that runs this op on a GPU: the one the plan's accounting
    /// ([`cost`](OpDef::cost), `wgolf info --kernels`) describes.
    fn kernel(&self) -> KernelCall;
    /// The kernel for an adapter of kind `target`: the same computation with tiles or
    /// register blocking tuned for it (no buffer changes size). [`kernel`](OpDef::kernel)
    /// unless the op says otherwise.
    fn kernel_for(&self, target: KernelTarget) -> KernelCall {
        let _ = target;
        self.kernel()
    }
    /// What one dispatch of [`kernel`](OpDef::kernel) computes and moves, counted from the
    /// shader as written (the convention is [`Cost`]'s).
    fn cost(&self) -> Cost;
    /// The CPU reference: `outs` are the read-write bindings in order, `ins` the rest.
    fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]);
    /// Small, ragged instances covering every layout and flag, for the kernel tests.
    fn examples() -> Vec<Self>;
}

/// Generates [`Op`], one variant per definition (named as its struct), with `From` for each
/// struct and methods forwarding to [`OpDef`].
macro_rules! op_table {
    ($($name:ident),* $(,)?) => {
        /// The ops of the plan. Shapes are fixed when the plan is built.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum Op {
            $($name($name),)*
        }

        $(impl From<$name> for Op {
            fn from(op: $name) -> Op {
                Op::$name(op)
            }
        })*

        impl Op {
            /// Every variant's name, in table order.
            pub const KINDS: &'static [&'static str] = &[$(stringify!($name)),*];

            /// The variant's name (`"Matmul"`).
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Op::$name(_) => stringify!($name),)*
                }
            }
            /// See [`OpDef::bindings`].
            pub fn bindings(&self) -> Vec<BindingSpec> {
                match self {
                    $(Op::$name(op) => op.bindings(),)*
                }
            }
            /// See [`OpDef::check`].
            pub fn check(&self) -> Result<(), String> {
                match self {
                    $(Op::$name(op) => op.check(),)*
                }
            }
            /// See [`OpDef::kernel`].
            pub fn kernel(&self) -> KernelCall {
                match self {
                    $(Op::$name(op) => op.kernel(),)*
                }
            }
            /// See [`OpDef::kernel_for`].
            pub fn kernel_for(&self, target: KernelTarget) -> KernelCall {
                match self {
                    $(Op::$name(op) => op.kernel_for(target),)*
                }
            }
            /// See [`OpDef::cost`].
            pub fn cost(&self) -> Cost {
                match self {
                    $(Op::$name(op) => op.cost(),)*
                }
            }
            /// See [`OpDef::run_cpu`].
            pub fn run_cpu<R: Real>(&self, outs: &mut [Vec<R>], ins: &[In<'_, R>]) {
                match self {
                    $(Op::$name(op) => op.run_cpu(outs, ins),)*
                }
            }
            /// Every definition's examples, in table order.
            pub fn examples() -> Vec<Op> {
                let mut all = Vec::new();
                $(all.extend($name::examples().into_iter().map(Op::from));)*
                all
            }
        }
    };
}

use super::defs::*;

op_table! {
    EmbeddingFwd,
    EmbeddingBwd,
    RmsNormFwd,
    RmsNormBwd,
    Matmul,
    MatmulPartial,
    MatmulSplitSum,
    Rope,
    AttentionFwd,
    AttentionBwdQ,
    AttentionBwdKv,
    Relu2Fwd,
    Relu2Bwd,
    ScaleFwd,
    ScaleBwd,
    ScaledAddFwd,
    ScaledAddBwd,
    MixFwd,
    MixBwd,
    AddInto,
    ChannelDot,
    ChannelDotPartial,
    ChannelSum,
    CrossEntropy,
    SumRows,
    AdamW,
    BatchedMatmul,
    MuonMomentum,
    MuonSumSq,
    MuonNormalize,
    ScaleCopy,
    MuonApply,
    GradSumSq,
    ClipCoef,
    Ema,
    EmaGroup,
    Sgd,
    SmearFwd,
    SmearBwd,
    SmearGrad,
    XsaFwd,
    XsaBwd,
}
