//! Post-training quantization of the exported weights (record-spec.md section 6), bit-exact
//! to the record's rules, and the artifact that holds them ([`artifact`]).
//!
//! Per tensor, in this order:
//! 1. at most [`PASSTHROUGH_MAX`] (65,536) elements: fp16 passthrough (bigram.proj has
//!    exactly 65,536, so it passes through);
//! 2. a name containing `.attn.` or `.mlp.`: int6 per row. `scale = f16(max(rowmax/31,
//!    1/31))` (computed in f32, rounded to fp16), `q = clamp(round_half_even(w /
//!    f32(scale)), -32, 31)`, one byte per weight;
//! 3. anything else: int8 per row. `clip` = torch.quantile(|w_row|, 0.9999984) (linear
//!    interpolation, in f32), `s = max(clip/127, 1/127)` in f32, `q = clamp(round_half_even(
//!    clamp(w, -clip, clip) / s), -127, 127)`; only the stored scale is fp16.
//!
//! Dequantization is `q * f32(scale)` per row. A row is the first dimension; a large 1-D
//! tensor (none in the record) is one row.
pub mod artifact;

use half::f16;

/// Tensors with at most this many elements are stored as fp16.
pub const PASSTHROUGH_MAX: usize = 65_536;
/// The int8 clip percentile as a fraction (99.99984%), as the reference's f32 quantile sees it.
pub const INT8_CLIP_Q: f32 = 0.999_998_4;

/// How a tensor is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Fp16,
    Int6,
    Int8,
}

/// The rule that applies to tensor `name` with `numel` elements.
pub fn kind_of(name: &str, numel: usize) -> Kind {
    if numel <= PASSTHROUGH_MAX {
        Kind::Fp16
    } else if name.contains(".attn.") || name.contains(".mlp.") {
        Kind::Int6
    } else {
        Kind::Int8
    }
}

/// A quantized tensor: for fp16, `values` are the fp16 values and `q` is empty; otherwise
/// `q` holds one byte per weight (row-major) and `scales` one fp16 scale per row.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    pub kind: Kind,
    pub rows: usize,
    pub q: Vec<i8>,
    pub scales: Vec<f16>,
    pub values: Vec<f16>,
}

/// Rows of a tensor of `shape`: its first dimension (1 for a scalar or a 1-D tensor).
pub fn rows_of(shape: &[usize]) -> usize {
    if shape.len() >= 2 {
        shape[0]
    } else {
        1
    }
}

/// Quantizes one tensor by the rule for its name and size.
pub fn quantize(name: &str, shape: &[usize], w: &[f32]) -> Quantized {
    let kind = kind_of(name, w.len());
    let rows = rows_of(shape);
    match kind {
        Kind::Fp16 => {
            Quantized { kind, rows, q: vec![], scales: vec![], values: w.iter().map(|&x| f16::from_f32(x)).collect() }
        }
        Kind::Int6 | Kind::Int8 => {
            let cols = w.len().checked_div(rows).unwrap_or(0);
            let mut q = Vec::with_capacity(w.len());
            let mut scales = Vec::with_capacity(rows);
            for row in w.chunks(cols.max(1)) {
                let scale = if kind == Kind::Int6 { int6_row(row, &mut q) } else { int8_row(row, &mut q) };
                scales.push(scale);
            }
            Quantized { kind, rows, q, scales, values: vec![] }
        }
    }
}

/// One int6 row: appends its bytes and returns its fp16 scale.
fn int6_row(row: &[f32], q: &mut Vec<i8>) -> f16 {
    let row_max = row.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    let scale = f16::from_f32((row_max / 31.0).max(1.0 / 31.0));
    let s = scale.to_f32();
    q.extend(row.iter().map(|&x| (x / s).round_ties_even().clamp(-32.0, 31.0) as i8));
    scale
}

/// One int8 row: appends its bytes and returns its fp16 scale (q uses the f32 scale).
fn int8_row(row: &[f32], q: &mut Vec<i8>) -> f16 {
    let mut abs: Vec<f32> = row.iter().map(|x| x.abs()).collect();
    abs.sort_by(f32::total_cmp);
    let clip = quantile_sorted(&abs, INT8_CLIP_Q);
    let s = (clip / 127.0).max(1.0 / 127.0);
    q.extend(row.iter().map(|&x| (x.clamp(-clip, clip) / s).round_ties_even().clamp(-127.0, 127.0) as i8));
    f16::from_f32(s)
}

/// torch.quantile's linear interpolation over ascending `sorted`, in f32 as torch computes
/// it for an f32 tensor: `rank = q * (n - 1)`, then torch.lerp between the values at
/// floor(rank) and ceil(rank) with weight `rank - floor(rank)` (torch.lerp's two-sided form:
/// from the lower end when the weight is below 0.5, else from the upper end).
pub fn quantile_sorted(sorted: &[f32], q: f32) -> f32 {
    let Some(&last) = sorted.last() else { return 0.0 };
    let rank = q * (sorted.len() - 1) as f32;
    let below = (rank.floor() as usize).min(sorted.len() - 1);
    let above = (rank.ceil() as usize).min(sorted.len() - 1);
    let (lo, hi) = (sorted[below], if above < sorted.len() { sorted[above] } else { last });
    let weight = rank - below as f32;
    if weight < 0.5 {
        lo + weight * (hi - lo)
    } else {
        hi - (hi - lo) * (1.0 - weight)
    }
}

/// The f32 values a quantized tensor stands for.
pub fn dequantize(t: &Quantized) -> Vec<f32> {
    match t.kind {
        Kind::Fp16 => t.values.iter().map(|v| v.to_f32()).collect(),
        Kind::Int6 | Kind::Int8 => {
            let cols = t.q.len().checked_div(t.rows).unwrap_or(0);
            t.q.chunks(cols.max(1))
                .zip(&t.scales)
                .flat_map(|(row, s)| row.iter().map(move |&q| q as f32 * s.to_f32()))
                .collect()
        }
    }
}
