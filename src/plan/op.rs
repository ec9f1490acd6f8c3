//! The closed list of ops a plan step can run. Each op is one kernel dispatch on the GPU and
//! one CPU reference call; this file says, for each, which WGSL entry point and override
//! constants it uses, its bindings (outputs first), the element count each binding must have,
//! and its workgroup grid. Nothing here touches wgpu.
use crate::ops::attention::AttnShape;
use crate::ops::elementwise::Channels;
use crate::ops::matmul::Layout;

/// Workgroup width of every 1-D kernel (`@workgroup_size(64)` in the shaders).
pub const WG_1D: u32 = 64;
/// The largest workgroup count per grid dimension every adapter supports.
pub const MAX_GRID_DIM: u32 = 65535;

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

/// One binding of a kernel: access, element type, and the exact element count expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingSpec {
    pub access: Access,
    pub dtype: DType,
    pub len: usize,
}

/// What the GPU needs to run an op: shader file, entry point, overrides and grid.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelCall {
    /// Shader file stem under `shaders/` (see [`crate::kernels::SHADERS`]).
    pub shader: &'static str,
    pub entry: &'static str,
    /// Override constants, in the order they appear in labels.
    pub constants: Vec<(&'static str, f64)>,
    pub workgroups: [u32; 3],
}

impl KernelCall {
    /// A readable label such as `matmul[M=64,N=32,K=16,TRANS_A=0,...]`.
    pub fn label(&self) -> String {
        let consts: Vec<String> = self.constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}[{}]", self.entry, consts.join(","))
    }
}

/// A 1-D grid covering `count` invocations of [`WG_1D`]-wide workgroups, folded into y
/// when there are more than [`MAX_GRID_DIM`] workgroups (kernels index `x + y * nx * 64`).
pub fn grid_1d(count: usize) -> [u32; 3] {
    let groups = count.div_ceil(WG_1D as usize).max(1) as u32;
    let x = groups.min(MAX_GRID_DIM);
    [x, groups.div_ceil(x), 1]
}

/// The ops of the plan. Shapes are fixed when the plan is built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `[out | table, ids]`.
    EmbeddingFwd { tokens: usize, dim: usize, vocab: usize },
    /// `[dtable | dout, ids]`.
    EmbeddingBwd { tokens: usize, dim: usize, vocab: usize },
    /// `[y, rstd | x]`.
    RmsNormFwd { rows: usize, dim: usize, eps: f64 },
    /// `[dx | dy, y, rstd]`.
    RmsNormBwd { rows: usize, dim: usize },
    /// `[c | a, b]`.
    Matmul { m: usize, n: usize, k: usize, layout: Layout, accumulate: bool },
    /// `[out | x, table]`; `inverse` is the backward (accumulates).
    Rope { rows: usize, heads: usize, head_dim: usize, seq_len: usize, inverse: bool },
    /// `[out, lse | q, k, v]`.
    AttentionFwd(AttnShape),
    /// `[dq, delta | dout, out, q, k, v, lse]`.
    AttentionBwdQ(AttnShape),
    /// `[dk, dv | dout, q, k, v, lse, delta]`.
    AttentionBwdKv(AttnShape),
    /// `[y | x]`.
    Relu2Fwd { count: usize },
    /// `[dx | dy, x]`.
    Relu2Bwd { count: usize },
    /// `[y | x, s]`.
    ScaleFwd { count: usize, ch: Channels, s_len: usize },
    /// `[dx | dy, s]`.
    ScaleBwd { count: usize, ch: Channels, s_len: usize },
    /// `[out | a, b, s]`.
    ScaledAddFwd { count: usize, ch: Channels, s_len: usize },
    /// `[da, db | dout, s]`.
    ScaledAddBwd { count: usize, ch: Channels, s_len: usize },
    /// `[out | a, b, mix]`.
    MixFwd { count: usize, ch: Channels },
    /// `[da, db | dout, mix]`.
    MixBwd { count: usize, ch: Channels },
    /// `[dst | src]`: `dst += src`.
    AddInto { count: usize },
    /// `[out | a, b]`: `out[ch(i)] += a[i] b[i]`.
    ChannelDot { count: usize, ch: Channels, out_len: usize },
    /// SmearGate forward `[out | x, gate]`: `out_t = (1 - sig(gate)) x_t + sig(gate) x_{t-1}`,
    /// `x_{t-1} = 0` where `t % seq_len == 0` (see `ops::smear`).
    SmearFwd { rows: usize, dim: usize, seq_len: usize },
    /// `[dx | dout, gate]` (accumulates).
    SmearBwd { rows: usize, dim: usize, seq_len: usize },
    /// `[dgate | dout, x, gate]` (accumulates; one workgroup per channel).
    SmearGrad { rows: usize, dim: usize, seq_len: usize },
    /// XSA forward `[out | y, v]`: each head of `y` minus its component along its KV group's
    /// normalised `v` (see `ops::xsa`).
    XsaFwd { rows: usize, heads: usize, kv_heads: usize, head_dim: usize },
    /// `[dy, dv | dout, y, v]` (accumulates).
    XsaBwd { rows: usize, heads: usize, kv_heads: usize, head_dim: usize },
    /// `[dlogits, loss | logits, targets]`.
    CrossEntropy { rows: usize, vocab: usize, softcap: f64, grad_scale: f64, write_grad: bool },
    /// `[total | rows]`: `total += scale * sum(rows)`.
    SumRows { count: usize, scale: f64 },
    /// `[p, m, v | g, hyper]`.
    AdamW { count: usize },
    /// `[c | a, b]`: `batch` products strided by matrix size,
    /// `c[z] (= or +=) alpha op(a[z]) op(b[z])` (`matmul.wgsl` with BATCH and ALPHA).
    BatchedMatmul { batch: usize, m: usize, n: usize, k: usize, layout: Layout, alpha: f64, accumulate: bool },
    /// `[buf, stack | grad, hyper]`: Muon momentum `buf <- mu buf + g`, and the Nesterov
    /// `g + mu buf` into matrix `index` of a `[count, a, b]` stack (transposed when
    /// rows > cols; see `ops::muon`).
    MuonMomentum { rows: usize, cols: usize, index: usize, count: usize },
    /// `[stack]`: each `[a, b]` matrix of a `[count, a, b]` stack divided by its Frobenius norm
    /// plus 1e-7 (one workgroup per matrix).
    MuonNormalize { count: usize, a: usize, b: usize },
    /// `[out | x]`: `out = alpha x`.
    ScaleCopy { count: usize, alpha: f64 },
    /// `[param | stack, hyper]`: `W <- W (1 - lr wd) - lr shape_scale O`, O matrix `index`
    /// of the stack.
    MuonApply { rows: usize, cols: usize, index: usize, count: usize, shape_scale: f64 },
    /// `[norms | grad]`: `norms[slot] = sum g^2` (one workgroup; overwrites its slot).
    GradSumSq { count: usize, slot: usize, slots: usize },
    /// `[coef | norms]`: `coef = min(1, max_norm / (sqrt(sum norms) + 1e-6))`.
    ClipCoef { slots: usize, max_norm: f64 },
    /// `[x | coef]`: `x *= coef[0]`.
    ScaleByCoef { count: usize },
    /// `[ema | param]`: `ema <- decay ema + (1 - decay) param`.
    Ema { count: usize, decay: f64 },
}

fn rw(len: usize) -> BindingSpec {
    BindingSpec { access: Access::ReadWrite, dtype: DType::F32, len }
}
fn rd(len: usize) -> BindingSpec {
    BindingSpec { access: Access::Read, dtype: DType::F32, len }
}
fn ids(len: usize) -> BindingSpec {
    BindingSpec { access: Access::Read, dtype: DType::U32, len }
}
fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

/// The number of `AdamHyper` f32 values in a hyperparameter uniform.
pub const HYPER_LEN: usize = 8;

impl Op {
    /// The bindings in shader order (outputs first), with the element count of each.
    pub fn bindings(&self) -> Vec<BindingSpec> {
        match *self {
            Op::EmbeddingFwd { tokens, dim, vocab } => {
                vec![rw(tokens * dim), rd(vocab * dim), ids(tokens)]
            }
            Op::EmbeddingBwd { tokens, dim, vocab } => {
                vec![rw(vocab * dim), rd(tokens * dim), ids(tokens)]
            }
            Op::RmsNormFwd { rows, dim, .. } => vec![rw(rows * dim), rw(rows), rd(rows * dim)],
            Op::RmsNormBwd { rows, dim } => {
                vec![rw(rows * dim), rd(rows * dim), rd(rows * dim), rd(rows)]
            }
            Op::Matmul { m, n, k, .. } => vec![rw(m * n), rd(m * k), rd(k * n)],
            Op::Rope { rows, heads, head_dim, seq_len, .. } => {
                let n = rows * heads * head_dim;
                vec![rw(n), rd(n), rd(seq_len * head_dim)]
            }
            Op::AttentionFwd(s) => {
                let (q, kv, l) = attn_sizes(s);
                vec![rw(q), rw(l), rd(q), rd(kv), rd(kv)]
            }
            Op::AttentionBwdQ(s) => {
                let (q, kv, l) = attn_sizes(s);
                vec![rw(q), rw(l), rd(q), rd(q), rd(q), rd(kv), rd(kv), rd(l)]
            }
            Op::AttentionBwdKv(s) => {
                let (q, kv, l) = attn_sizes(s);
                vec![rw(kv), rw(kv), rd(q), rd(q), rd(kv), rd(kv), rd(l), rd(l)]
            }
            Op::Relu2Fwd { count } => vec![rw(count), rd(count)],
            Op::Relu2Bwd { count } => vec![rw(count), rd(count), rd(count)],
            Op::ScaleFwd { count, s_len, .. } | Op::ScaleBwd { count, s_len, .. } => {
                vec![rw(count), rd(count), rd(s_len)]
            }
            Op::ScaledAddFwd { count, s_len, .. } => {
                vec![rw(count), rd(count), rd(count), rd(s_len)]
            }
            Op::ScaledAddBwd { count, s_len, .. } => {
                vec![rw(count), rw(count), rd(count), rd(s_len)]
            }
            Op::MixFwd { count, ch } => vec![rw(count), rd(count), rd(count), rd(2 * ch.channels)],
            Op::MixBwd { count, ch } => vec![rw(count), rw(count), rd(count), rd(2 * ch.channels)],
            Op::AddInto { count } => vec![rw(count), rd(count)],
            Op::ChannelDot { count, out_len, .. } => vec![rw(out_len), rd(count), rd(count)],
            Op::SmearFwd { rows, dim, .. } | Op::SmearBwd { rows, dim, .. } => {
                vec![rw(rows * dim), rd(rows * dim), rd(dim)]
            }
            Op::SmearGrad { rows, dim, .. } => {
                vec![rw(dim), rd(rows * dim), rd(rows * dim), rd(dim)]
            }
            Op::XsaFwd { rows, heads, kv_heads, head_dim } => {
                vec![rw(rows * heads * head_dim), rd(rows * heads * head_dim), rd(rows * kv_heads * head_dim)]
            }
            Op::XsaBwd { rows, heads, kv_heads, head_dim } => {
                let (ny, nv) = (rows * heads * head_dim, rows * kv_heads * head_dim);
                vec![rw(ny), rw(nv), rd(ny), rd(ny), rd(nv)]
            }
            Op::CrossEntropy { rows, vocab, .. } => {
                vec![rw(rows * vocab), rw(rows), rd(rows * vocab), ids(rows)]
            }
            Op::SumRows { count, .. } => vec![rw(1), rd(count)],
            Op::BatchedMatmul { batch, m, n, k, .. } => {
                vec![rw(batch * m * n), rd(batch * m * k), rd(batch * k * n)]
            }
            Op::MuonMomentum { rows, cols, count, .. } => {
                vec![rw(rows * cols), rw(count * rows * cols), rd(rows * cols), hyper_block()]
            }
            Op::MuonNormalize { count, a, b } => vec![rw(count * a * b)],
            Op::ScaleCopy { count, .. } => vec![rw(count), rd(count)],
            Op::MuonApply { rows, cols, count, .. } => vec![rw(rows * cols), rd(count * rows * cols), hyper_block()],
            Op::GradSumSq { count, slots, .. } => vec![rw(slots), rd(count)],
            Op::ClipCoef { slots, .. } => vec![rw(1), rd(slots)],
            Op::ScaleByCoef { count } => vec![rw(count), rd(1)],
            Op::Ema { count, .. } => vec![rw(count), rd(count)],
            Op::AdamW { count } => vec![
                rw(count),
                rw(count),
                rw(count),
                rd(count),
                BindingSpec { access: Access::Uniform, dtype: DType::F32, len: HYPER_LEN },
            ],
        }
    }

    /// Shape conditions beyond element counts; a message saying what is wrong.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Op::AttentionFwd(s) | Op::AttentionBwdQ(s) | Op::AttentionBwdKv(s) => {
                if s.kv_heads == 0 || s.heads % s.kv_heads != 0 {
                    return Err(format!("heads {} is not a multiple of kv_heads {}", s.heads, s.kv_heads));
                }
                if s.head_dim > 128 {
                    return Err(format!("head_dim {} is above the kernel's maximum 128", s.head_dim));
                }
            }
            Op::Rope { head_dim, .. } if head_dim % 2 != 0 => {
                return Err(format!("rope needs an even head_dim, got {head_dim}"));
            }
            Op::ChannelDot { count, ch, out_len } => {
                if count % (ch.group * ch.channels) != 0 {
                    return Err(format!(
                        "channel_dot: {count} elements are not whole rows of {} x {}",
                        ch.channels, ch.group
                    ));
                }
                if ch.offset + ch.channels > out_len {
                    return Err(format!("channel_dot writes past its output of {out_len}"));
                }
            }
            Op::MixFwd { ch, .. } | Op::MixBwd { ch, .. } if ch.offset != 0 => {
                return Err(format!("mix reads both rows of its [2, {}] parameter; offset must be 0", ch.channels));
            }
            Op::ScaleFwd { ch, s_len, .. }
            | Op::ScaleBwd { ch, s_len, .. }
            | Op::ScaledAddFwd { ch, s_len, .. }
            | Op::ScaledAddBwd { ch, s_len, .. }
                if ch.offset + ch.channels > s_len =>
            {
                return Err(format!(
                    "channel offset {} + {} exceeds the scale's {s_len} values",
                    ch.offset, ch.channels
                ));
            }
            Op::SmearFwd { dim, seq_len, .. }
            | Op::SmearBwd { dim, seq_len, .. }
            | Op::SmearGrad { dim, seq_len, .. } => {
                if seq_len == 0 || dim == 0 {
                    return Err(format!("smear needs seq_len >= 1 and dim >= 1, got {seq_len} and {dim}"));
                }
                if dim > MAX_GRID_DIM as usize {
                    return Err(format!("smear_grad runs one workgroup per channel: dim {dim} > {MAX_GRID_DIM}"));
                }
            }
            Op::XsaFwd { heads, kv_heads, head_dim, .. } | Op::XsaBwd { heads, kv_heads, head_dim, .. } => {
                if kv_heads == 0 || heads % kv_heads != 0 {
                    return Err(format!("xsa: heads {heads} is not a multiple of kv_heads {kv_heads}"));
                }
                if head_dim == 0 || head_dim > 128 {
                    return Err(format!("xsa: head_dim {head_dim} is outside the kernel's 1..=128"));
                }
            }
            Op::BatchedMatmul { batch, .. } if batch as u32 > MAX_GRID_DIM || batch == 0 => {
                return Err(format!("batched matmul: batch {batch} is not in 1..={MAX_GRID_DIM}"));
            }
            Op::MuonMomentum { index, count, .. } | Op::MuonApply { index, count, .. } if index >= count => {
                return Err(format!("muon: matrix {index} of a stack of {count}"));
            }
            Op::MuonNormalize { count, .. } if count as u32 > MAX_GRID_DIM => {
                return Err(format!("muon_normalize: {count} matrices, one workgroup each, exceed {MAX_GRID_DIM}"));
            }
            Op::GradSumSq { slot, slots, .. } if slot >= slots => {
                return Err(format!("grad_sum_sq: slot {slot} of {slots}"));
            }
            _ => {}
        }
        Ok(())
    }

    /// The kernel that runs this op.
    pub fn kernel(&self) -> KernelCall {
        let u = |v: usize| v as f64;
        let call = |shader, entry, constants, workgroups| KernelCall { shader, entry, constants, workgroups };
        match *self {
            Op::EmbeddingFwd { tokens, dim, .. } => {
                call("embedding", "embedding_fwd", vec![("TOKENS", u(tokens)), ("DIM", u(dim))], grid_1d(tokens * dim))
            }
            Op::EmbeddingBwd { tokens, dim, .. } => {
                call("embedding", "embedding_bwd", vec![("TOKENS", u(tokens)), ("DIM", u(dim))], grid_1d(dim))
            }
            Op::RmsNormFwd { rows, dim, eps } => {
                call("rmsnorm", "rmsnorm_fwd", vec![("ROWS", u(rows)), ("DIM", u(dim)), ("EPS", eps)], grid_1d(rows))
            }
            Op::RmsNormBwd { rows, dim } => {
                call("rmsnorm", "rmsnorm_bwd", vec![("ROWS", u(rows)), ("DIM", u(dim))], grid_1d(rows))
            }
            Op::Matmul { m, n, k, layout, accumulate } => call(
                "matmul",
                "matmul",
                matmul_consts(m, n, k, layout, accumulate),
                [n.div_ceil(32) as u32, m.div_ceil(32) as u32, 1],
            ),
            Op::Rope { rows, heads, head_dim, seq_len, inverse } => call(
                "rope",
                "rope",
                vec![
                    ("ROWS", u(rows)),
                    ("HEADS", u(heads)),
                    ("HEAD_DIM", u(head_dim)),
                    ("SEQ_LEN", u(seq_len)),
                    ("INVERSE", b(inverse)),
                ],
                grid_1d(rows * heads * head_dim / 2),
            ),
            Op::AttentionFwd(s) => {
                call("attention", "attention_fwd", attn_consts(s), grid_1d(s.batch * s.heads * s.seq))
            }
            Op::AttentionBwdQ(s) => {
                call("attention", "attention_bwd_q", attn_consts(s), grid_1d(s.batch * s.heads * s.seq))
            }
            Op::AttentionBwdKv(s) => {
                call("attention", "attention_bwd_kv", attn_consts(s), grid_1d(s.batch * s.kv_heads * s.seq))
            }
            Op::Relu2Fwd { count } => call("relu2", "relu2_fwd", vec![("COUNT", u(count))], grid_1d(count)),
            Op::Relu2Bwd { count } => call("relu2", "relu2_bwd", vec![("COUNT", u(count))], grid_1d(count)),
            Op::ScaleFwd { count, ch, .. } => call("channel", "scale_fwd", ch_consts(count, ch), grid_1d(count)),
            Op::ScaleBwd { count, ch, .. } => call("channel", "scale_bwd", ch_consts(count, ch), grid_1d(count)),
            Op::ScaledAddFwd { count, ch, .. } => {
                call("channel", "scaled_add_fwd", ch_consts(count, ch), grid_1d(count))
            }
            Op::ScaledAddBwd { count, ch, .. } => {
                call("channel", "scaled_add_bwd", ch_consts(count, ch), grid_1d(count))
            }
            Op::MixFwd { count, ch } => call("channel", "mix_fwd", ch_consts(count, ch), grid_1d(count)),
            Op::MixBwd { count, ch } => call("channel", "mix_bwd", ch_consts(count, ch), grid_1d(count)),
            Op::AddInto { count } => call("add", "add_into", vec![("COUNT", u(count))], grid_1d(count)),
            Op::ChannelDot { count, ch, .. } => call(
                "reduce",
                "channel_dot",
                vec![
                    ("COUNT", u(count)),
                    ("GROUP", u(ch.group)),
                    ("CHANNELS", u(ch.channels)),
                    ("OUT_OFFSET", u(ch.offset)),
                ],
                [ch.channels as u32, 1, 1],
            ),
            Op::SmearFwd { rows, dim, seq_len } => {
                call("smear", "smear_fwd", smear_consts(rows, dim, seq_len), grid_1d(rows * dim))
            }
            Op::SmearBwd { rows, dim, seq_len } => {
                call("smear", "smear_bwd", smear_consts(rows, dim, seq_len), grid_1d(rows * dim))
            }
            Op::SmearGrad { rows, dim, seq_len } => {
                call("smear", "smear_grad", smear_consts(rows, dim, seq_len), [dim as u32, 1, 1])
            }
            Op::XsaFwd { rows, heads, kv_heads, head_dim } => {
                call("xsa", "xsa_fwd", xsa_consts(rows, heads, kv_heads, head_dim), grid_1d(rows * heads))
            }
            Op::XsaBwd { rows, heads, kv_heads, head_dim } => {
                call("xsa", "xsa_bwd", xsa_consts(rows, heads, kv_heads, head_dim), grid_1d(rows * kv_heads))
            }
            Op::CrossEntropy { rows, vocab, softcap, grad_scale, write_grad } => call(
                "cross_entropy",
                "cross_entropy",
                vec![
                    ("ROWS", u(rows)),
                    ("VOCAB", u(vocab)),
                    ("SOFTCAP", softcap),
                    ("GRAD_SCALE", grad_scale),
                    ("WRITE_GRAD", b(write_grad)),
                ],
                grid_1d(rows),
            ),
            Op::SumRows { count, scale } => {
                call("reduce", "sum_rows", vec![("COUNT", u(count)), ("SCALE", scale)], [1, 1, 1])
            }
            Op::BatchedMatmul { batch, m, n, k, layout, alpha, accumulate } => call(
                "matmul",
                "matmul",
                [matmul_consts(m, n, k, layout, accumulate), vec![("BATCH", u(batch)), ("ALPHA", alpha)]].concat(),
                [n.div_ceil(32) as u32, m.div_ceil(32) as u32, batch as u32],
            ),
            Op::MuonMomentum { rows, cols, index, .. } => call(
                "muon",
                "muon_momentum",
                vec![("ROWS", u(rows)), ("COLS", u(cols)), ("INDEX", u(index))],
                grid_1d(rows * cols),
            ),
            Op::MuonNormalize { count, a, b } => {
                call("muon", "muon_normalize", vec![("A", u(a)), ("B", u(b))], [count as u32, 1, 1])
            }
            Op::ScaleCopy { count, alpha } => {
                call("muon", "scale_copy", vec![("COUNT", u(count)), ("ALPHA", alpha)], grid_1d(count))
            }
            Op::MuonApply { rows, cols, index, shape_scale, .. } => call(
                "muon",
                "muon_apply",
                vec![("ROWS", u(rows)), ("COLS", u(cols)), ("INDEX", u(index)), ("SHAPE_SCALE", shape_scale)],
                grid_1d(rows * cols),
            ),
            Op::GradSumSq { count, slot, .. } => {
                call("clip", "grad_sum_sq", vec![("COUNT", u(count)), ("SLOT", u(slot))], [1, 1, 1])
            }
            Op::ClipCoef { slots, max_norm } => {
                call("clip", "clip_coef", vec![("SLOTS", u(slots)), ("MAX_NORM", max_norm)], [1, 1, 1])
            }
            Op::ScaleByCoef { count } => call("clip", "scale_by_coef", vec![("COUNT", u(count))], grid_1d(count)),
            Op::Ema { count, decay } => call("ema", "ema", vec![("COUNT", u(count)), ("DECAY", decay)], grid_1d(count)),
            Op::AdamW { count } => call("adamw", "adamw", vec![("COUNT", u(count))], grid_1d(count)),
        }
    }
}

fn attn_sizes(s: AttnShape) -> (usize, usize, usize) {
    let rows = s.batch * s.seq;
    (rows * s.heads * s.head_dim, rows * s.kv_heads * s.head_dim, s.batch * s.heads * s.seq)
}

fn attn_consts(s: AttnShape) -> Vec<(&'static str, f64)> {
    vec![
        ("BATCH", s.batch as f64),
        ("SEQ", s.seq as f64),
        ("HEADS", s.heads as f64),
        ("KV_HEADS", s.kv_heads as f64),
        ("HEAD_DIM", s.head_dim as f64),
    ]
}

fn ch_consts(count: usize, ch: Channels) -> Vec<(&'static str, f64)> {
    vec![
        ("COUNT", count as f64),
        ("GROUP", ch.group as f64),
        ("CHANNELS", ch.channels as f64),
        ("S_OFFSET", ch.offset as f64),
    ]
}

fn smear_consts(rows: usize, dim: usize, seq_len: usize) -> Vec<(&'static str, f64)> {
    vec![("ROWS", rows as f64), ("DIM", dim as f64), ("SEQ_LEN", seq_len as f64)]
}

fn xsa_consts(rows: usize, heads: usize, kv_heads: usize, head_dim: usize) -> Vec<(&'static str, f64)> {
    vec![("ROWS", rows as f64), ("HEADS", heads as f64), ("KV_HEADS", kv_heads as f64), ("HEAD_DIM", head_dim as f64)]
}

/// A hyperparameter uniform of [`HYPER_LEN`] f32 (AdamW's or Muon's).
fn hyper_block() -> BindingSpec {
    BindingSpec { access: Access::Uniform, dtype: DType::F32, len: HYPER_LEN }
}

/// The overrides every matmul.wgsl call sets (`BATCH` and `ALPHA` keep their defaults unless
/// a batched call adds them).
fn matmul_consts(m: usize, n: usize, k: usize, layout: Layout, accumulate: bool) -> Vec<(&'static str, f64)> {
    vec![
        ("M", m as f64),
        ("N", n as f64),
        ("K", k as f64),
        ("TRANS_A", b(layout.trans_a())),
        ("TRANS_B", b(layout.trans_b())),
        ("ACCUMULATE", b(accumulate)),
    ]
}
