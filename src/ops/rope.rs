//! Rotary position embedding, half-split (NeoX) layout.
//!
//! For a row of `heads x head_dim` at position `p` (the row index modulo `seq_len`), each
//! head's first half `x1 = x[0..h/2]` and second half `x2 = x[h/2..h]` become
//! `[x1 cos + x2 sin, -x1 sin + x2 cos]`, with `theta_{p,i} = p * base^(-2i/h)`. This is the
//! reference's sign convention. The backward applies the transpose rotation
//! `[dy1 cos - dy2 sin, dy1 sin + dy2 cos]`.
//!
//! The cos/sin table (`seq_len x head_dim/2` each, f64 math rounded to f32) is computed once
//! on the CPU and shared by the CPU reference and the GPU kernel, so both see the same angles.
use super::Real;

/// Builds the `[cos | sin]` table: `2 x seq_len x half` values, cos first.
pub fn rope_table(seq_len: usize, head_dim: usize, base: f64) -> Vec<f32> {
    let half = head_dim / 2;
    let mut table = vec![0f32; 2 * seq_len * half];
    for p in 0..seq_len {
        for i in 0..half {
            let inv_freq = base.powf(-(2.0 * i as f64) / head_dim as f64);
            // The reference computes inv_freq and the angle in f32.
            let angle = (p as f32) * (inv_freq as f32);
            table[p * half + i] = angle.cos();
            table[seq_len * half + p * half + i] = angle.sin();
        }
    }
    table
}

/// Rotates every head of every row of `x` (`rows x heads*head_dim`, row r at position
/// `r % seq_len`). `inverse` applies the transpose rotation (the backward) and adds the result
/// to `out`, since a backward accumulates; the forward overwrites `out`.
#[allow(clippy::too_many_arguments)]
pub fn rope<T: Real>(
    out: &mut [T],
    x: &[T],
    table: &[f32],
    heads: usize,
    head_dim: usize,
    seq_len: usize,
    inverse: bool,
) {
    let half = head_dim / 2;
    let row_len = heads * head_dim;
    let (cos, sin) = table.split_at(seq_len * half);
    for (r, (orow, xrow)) in out.chunks_mut(row_len).zip(x.chunks(row_len)).enumerate() {
        let p = r % seq_len;
        for (oh, xh) in orow.chunks_mut(head_dim).zip(xrow.chunks(head_dim)) {
            for i in 0..half {
                let c = T::from_f64(cos[p * half + i] as f64);
                let s = T::from_f64(sin[p * half + i] as f64);
                let (x1, x2) = (xh[i], xh[i + half]);
                if inverse {
                    oh[i] += x1 * c - x2 * s;
                    oh[i + half] += x1 * s + x2 * c;
                } else {
                    oh[i] = x1 * c + x2 * s;
                    oh[i + half] = -(x1 * s) + x2 * c;
                }
            }
        }
    }
}
