//! Causal softmax attention with grouped-query heads (correct and simple; flash comes later).
//!
//! Shapes: `q`, `out`: `[batch*seq, heads*head_dim]`; `k`, `v`: `[batch*seq, kv_heads*head_dim]`;
//! `lse`, `delta`: `[batch, heads, seq]`. Query head h reads KV head `h / (heads/kv_heads)`.
//!
//! Forward: `s_ts = (q_t . k_s) / sqrt(head_dim)` for s <= t, `p_ts = exp(s_ts - lse_t)` with
//! `lse_t = log sum_s exp(s_ts)`, `out_t = sum_s p_ts v_s`.
//! Backward (recomputing p from the saved lse): `delta_t = dout_t . out_t`,
//! `ds_ts = p_ts (dout_t . v_s - delta_t)`, `dq_t += scale sum_s ds_ts k_s`,
//! `dk_s += scale sum_{t>=s} ds_ts q_t`, `dv_s += sum_{t>=s} p_ts dout_t` (summed over the query
//! heads of the group). The gradients accumulate (`+=`).
use super::Real;

/// The geometry of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttnShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }
    /// Offset of head `h` of token `t` of sequence `b` in a `[batch*seq, n*head_dim]` tensor.
    fn at(&self, b: usize, t: usize, h: usize, n: usize) -> usize {
        ((b * self.seq + t) * n + h) * self.head_dim
    }
    fn kv_of(&self, h: usize) -> usize {
        h / (self.heads / self.kv_heads)
    }
}

fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = T::zero();
    for (&x, &y) in a.iter().zip(b) {
        acc += x * y;
    }
    acc
}

/// Forward: writes `out` and the log-sum-exp of each query row.
pub fn attention_fwd<T: Real>(out: &mut [T], lse: &mut [T], q: &[T], k: &[T], v: &[T], s: AttnShape) {
    let hd = s.head_dim;
    let scale = T::from_f64(s.scale());
    let mut scores = vec![T::zero(); s.seq];
    for b in 0..s.batch {
        for h in 0..s.heads {
            let g = s.kv_of(h);
            for t in 0..s.seq {
                let qt = &q[s.at(b, t, h, s.heads)..][..hd];
                let mut m = T::from_f64(f64::NEG_INFINITY);
                for (j, sc) in scores.iter_mut().enumerate().take(t + 1) {
                    *sc = dot(qt, &k[s.at(b, j, g, s.kv_heads)..][..hd]) * scale;
                    m = m.max(*sc);
                }
                let mut sum = T::zero();
                for sc in scores.iter().take(t + 1) {
                    sum += (*sc - m).exp();
                }
                let l = m + sum.ln();
                lse[(b * s.heads + h) * s.seq + t] = l;
                let o = s.at(b, t, h, s.heads);
                for d in 0..hd {
                    out[o + d] = T::zero();
                }
                for (j, sc) in scores.iter().enumerate().take(t + 1) {
                    let p = (*sc - l).exp();
                    let vj = &v[s.at(b, j, g, s.kv_heads)..][..hd];
                    for d in 0..hd {
                        out[o + d] += p * vj[d];
                    }
                }
            }
        }
    }
}

/// Backward for the queries: writes `delta_t = dout_t . out_t` and accumulates `dq`.
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_q<T: Real>(
    dq: &mut [T],
    delta: &mut [T],
    dout: &[T],
    out: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    lse: &[T],
    s: AttnShape,
) {
    let hd = s.head_dim;
    let scale = T::from_f64(s.scale());
    for b in 0..s.batch {
        for h in 0..s.heads {
            let g = s.kv_of(h);
            for t in 0..s.seq {
                let o = s.at(b, t, h, s.heads);
                let row = (b * s.heads + h) * s.seq + t;
                let dlt = dot(&dout[o..o + hd], &out[o..o + hd]);
                delta[row] = dlt;
                for j in 0..=t {
                    let kj = &k[s.at(b, j, g, s.kv_heads)..][..hd];
                    let vj = &v[s.at(b, j, g, s.kv_heads)..][..hd];
                    let p = (dot(&q[o..o + hd], kj) * scale - lse[row]).exp();
                    let ds = p * (dot(&dout[o..o + hd], vj) - dlt);
                    for d in 0..hd {
                        dq[o + d] += scale * ds * kj[d];
                    }
                }
            }
        }
    }
}

/// Backward for keys and values: accumulates `dk` and `dv`, reading `delta` from
/// [`attention_bwd_q`].
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_kv<T: Real>(
    dk: &mut [T],
    dv: &mut [T],
    dout: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    lse: &[T],
    delta: &[T],
    s: AttnShape,
) {
    let hd = s.head_dim;
    let scale = T::from_f64(s.scale());
    let group = s.heads / s.kv_heads;
    for b in 0..s.batch {
        for g in 0..s.kv_heads {
            for j in 0..s.seq {
                let kv = s.at(b, j, g, s.kv_heads);
                for h in g * group..(g + 1) * group {
                    for t in j..s.seq {
                        let o = s.at(b, t, h, s.heads);
                        let row = (b * s.heads + h) * s.seq + t;
                        let p = (dot(&q[o..o + hd], &k[kv..kv + hd]) * scale - lse[row]).exp();
                        let ds = p * (dot(&dout[o..o + hd], &v[kv..kv + hd]) - delta[row]);
                        for d in 0..hd {
                            dv[kv + d] += p * dout[o + d];
                            dk[kv + d] += scale * ds * q[o + d];
                        }
                    }
                }
            }
        }
    }
}
