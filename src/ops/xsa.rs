//! XSA (exclusive self-attention): removes from each head of an attention output its
//! component along the token's own (raw) value vector.
//!
//! Shapes: `y`, `out` are `[rows, heads * head_dim]`, `v` is `[rows, kv_heads * head_dim]`;
//! query head h uses KV group `g = h / (heads / kv_heads)`. For each row t and group g, with
//! `n = ‖v_{t,g}‖`, `s = max(n, ε)` (`ε = 1e−12`, as `F.normalize`) and `v̂ = v_{t,g} / s`:
//!
//! `out_{t,h} = y_{t,h} − (y_{t,h}·v̂) v̂` for every head h of group g.
//!
//! Backward, with `a_h = dout_h·v̂`, `b_h = y_h·v̂` over the heads h of the group:
//! - `dy_h += dout_h − a_h v̂` (the map `y ↦ (I − v̂v̂ᵀ) y` is symmetric);
//! - `g = ∂L/∂v̂ = −Σ_h (a_h y_h + b_h dout_h)`;
//! - if `n ≥ ε` (then `s = n` and `∂v̂/∂v = (I − v̂v̂ᵀ)/n`): `dv += (g − (g·v̂) v̂) / n`;
//! - if `n < ε` (the clamp is active, `s = ε` is a constant, so `v̂ = v/ε` is linear in v):
//!   `dv += g / ε`. At `v = 0` this is 0, since `g` is then 0.
//!
//! The branch at `n = ε` follows PyTorch's `clamp_min` gradient (it passes the gradient when
//! `n ≥ ε`). The forward overwrites `out`; the backward accumulates into `dy` and `dv`.
use super::Real;

/// The norm floor of `v̂ = v / max(‖v‖, ε)`.
pub const XSA_EPS: f64 = 1e-12;

/// The shape of an XSA op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XsaShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl XsaShape {
    /// Query heads per KV group.
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// `(n, s) = (‖v‖, max(‖v‖, ε))`.
fn norm<T: Real>(v: &[T]) -> (T, T) {
    let mut nn = T::zero();
    for &x in v {
        nn += x * x;
    }
    let n = nn.sqrt();
    (n, n.max(T::from_f64(XSA_EPS)))
}

fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = T::zero();
    for (&x, &y) in a.iter().zip(b) {
        acc += x * y;
    }
    acc
}

/// `out_{t,h} = y_{t,h} − (y_{t,h}·v̂) v̂` with `v̂ = v_{t,g} / max(‖v_{t,g}‖, ε)`, g the KV
/// group of head h (overwrites `out`).
pub fn xsa_fwd<T: Real>(out: &mut [T], y: &[T], v: &[T], s: XsaShape) {
    let (hd, group) = (s.head_dim, s.group());
    let rows = y.len() / (s.heads * hd);
    for t in 0..rows {
        for g in 0..s.kv_heads {
            let vo = (t * s.kv_heads + g) * hd;
            let vrow = &v[vo..vo + hd];
            let (_, sc) = norm(vrow);
            let vhat: Vec<T> = vrow.iter().map(|&x| x / sc).collect();
            for h in g * group..(g + 1) * group {
                let yo = (t * s.heads + h) * hd;
                let b = dot(&y[yo..yo + hd], &vhat);
                for d in 0..hd {
                    out[yo + d] = y[yo + d] - b * vhat[d];
                }
            }
        }
    }
}

/// The backward of [`xsa_fwd`] (see the module doc): `dy += dout − (dout·v̂) v̂`, and `dv +=`
/// the gradient through `v̂` (projected and divided by `‖v‖`, or divided by `ε` when the norm
/// clamp is active). Accumulates into `dy` and `dv`.
pub fn xsa_bwd<T: Real>(dy: &mut [T], dv: &mut [T], dout: &[T], y: &[T], v: &[T], s: XsaShape) {
    let (hd, group) = (s.head_dim, s.group());
    let rows = y.len() / (s.heads * hd);
    let eps = T::from_f64(XSA_EPS);
    let mut gacc = vec![T::zero(); hd];
    for t in 0..rows {
        for g in 0..s.kv_heads {
            let vo = (t * s.kv_heads + g) * hd;
            let vrow = &v[vo..vo + hd];
            let (n, sc) = norm(vrow);
            let vhat: Vec<T> = vrow.iter().map(|&x| x / sc).collect();
            gacc.iter_mut().for_each(|x| *x = T::zero());
            for h in g * group..(g + 1) * group {
                let yo = (t * s.heads + h) * hd;
                let (yh, gh) = (&y[yo..yo + hd], &dout[yo..yo + hd]);
                let a = dot(gh, &vhat);
                let b = dot(yh, &vhat);
                for d in 0..hd {
                    dy[yo + d] += gh[d] - a * vhat[d];
                    gacc[d] -= a * yh[d] + b * gh[d];
                }
            }
            if n >= eps {
                let gv = dot(&gacc, &vhat);
                for d in 0..hd {
                    dv[vo + d] += (gacc[d] - gv * vhat[d]) / n;
                }
            } else {
                for d in 0..hd {
                    dv[vo + d] += gacc[d] / eps;
                }
            }
        }
    }
}
