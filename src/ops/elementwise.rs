//! Small per-element and per-channel ops: relu^2, per-channel (or per-head) scales, scaled
//! residual adds and the residual mix, their backward passes, and the channel reduction that
//! gives the gradients of the per-channel parameters.
//!
//! Element i belongs to channel `ch(i) = offset + (i / group) % channels` of a parameter
//! vector `s` (see [`Channels`]). Every backward accumulates (`+=`) into its outputs.
use super::Real;

/// Which entry of a per-channel parameter scales element i:
/// `offset + (i / group) % channels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Channels {
    /// Consecutive elements sharing one value (1 for per-channel, head_dim for per-head).
    pub group: usize,
    /// Distinct values along a row (model dim, or heads).
    pub channels: usize,
    /// First entry used (selects a row of a `[n, channels]` parameter such as skip_weights).
    pub offset: usize,
}

impl Channels {
    /// One value per channel of rows of `dim` values, from row `row` of the parameter.
    pub fn per_channel(dim: usize, row: usize) -> Self {
        Channels { group: 1, channels: dim, offset: row * dim }
    }
    /// One value per head of rows of `heads x head_dim` values.
    pub fn per_head(heads: usize, head_dim: usize) -> Self {
        Channels { group: head_dim, channels: heads, offset: 0 }
    }
    /// The parameter entry that scales element `i`.
    pub fn of(&self, i: usize) -> usize {
        self.offset + (i / self.group) % self.channels
    }
}

/// `y = relu(x)^2`.
pub fn relu2_fwd<T: Real>(y: &mut [T], x: &[T]) {
    for (o, &v) in y.iter_mut().zip(x) {
        let r = v.max(T::zero());
        *o = r * r;
    }
}

/// `dx += 2 relu(x) dy`.
pub fn relu2_bwd<T: Real>(dx: &mut [T], dy: &[T], x: &[T]) {
    for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(x) {
        *d += T::from_f64(2.0) * v.max(T::zero()) * g;
    }
}

/// `y = x * s[ch(i)]` (q_gain per head).
pub fn scale_fwd<T: Real>(y: &mut [T], x: &[T], s: &[T], ch: Channels) {
    for (i, (o, &v)) in y.iter_mut().zip(x).enumerate() {
        *o = v * s[ch.of(i)];
    }
}

/// `dx += dy * s[ch(i)]`.
pub fn scale_bwd<T: Real>(dx: &mut [T], dy: &[T], s: &[T], ch: Channels) {
    for (i, (d, &g)) in dx.iter_mut().zip(dy).enumerate() {
        *d += g * s[ch.of(i)];
    }
}

/// Scaled residual add: `out = a + s[ch(i)] * b` (attn_scale, mlp_scale, skip_weights rows).
pub fn scaled_add_fwd<T: Real>(out: &mut [T], a: &[T], b: &[T], s: &[T], ch: Channels) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = a[i] + s[ch.of(i)] * b[i];
    }
}

/// `da += dout`, `db += s[ch(i)] * dout`.
pub fn scaled_add_bwd<T: Real>(da: &mut [T], db: &mut [T], dout: &[T], s: &[T], ch: Channels) {
    for (i, &g) in dout.iter().enumerate() {
        da[i] += g;
        db[i] += s[ch.of(i)] * g;
    }
}

/// Residual mix: `out = mix[0, c] * a + mix[1, c] * b` with `c = ch(i)` and `mix` of shape
/// `[2, channels]`.
pub fn mix_fwd<T: Real>(out: &mut [T], a: &[T], b: &[T], mix: &[T], ch: Channels) {
    for (i, o) in out.iter_mut().enumerate() {
        let c = ch.of(i);
        *o = mix[c] * a[i] + mix[ch.channels + c] * b[i];
    }
}

/// `da += mix[0, c] * dout`, `db += mix[1, c] * dout`.
pub fn mix_bwd<T: Real>(da: &mut [T], db: &mut [T], dout: &[T], mix: &[T], ch: Channels) {
    for (i, &g) in dout.iter().enumerate() {
        let c = ch.of(i);
        da[i] += mix[c] * g;
        db[i] += mix[ch.channels + c] * g;
    }
}

/// The gradient of a per-channel parameter: `out[ch(i)] += sum_i a[i] * b[i]`.
pub fn channel_dot<T: Real>(out: &mut [T], a: &[T], b: &[T], ch: Channels) {
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        out[ch.of(i)] += x * y;
    }
}

/// Elements of one channel per partial of [`channel_dot_partial`] (one 64-lane workgroup of
/// `shaders/reduce.wgsl`, 64 elements per lane).
pub const CHANNEL_BLOCK: usize = 4096;

/// The partials per channel of [`channel_dot_partial`] over `count` elements.
pub fn channel_blocks(count: usize, ch: Channels) -> usize {
    (count / ch.channels).div_ceil(CHANNEL_BLOCK).max(1)
}

/// The first stage of [`channel_dot`] on the GPU: `partials [blocks, channels]`, entry
/// `(k, c)` the sum, in order, of `a[i] * b[i]` over the elements `j` in
/// `[k CHANNEL_BLOCK, (k + 1) CHANNEL_BLOCK)` of channel `c` (its `j`-th element being
/// `i = (j / group) group channels + c group + j % group`). Overwrites. Channel `c` here is
/// the parameter's entry `ch.offset + c`.
pub fn channel_dot_partial<T: Real>(partials: &mut [T], a: &[T], b: &[T], ch: Channels) {
    let Channels { group, channels, .. } = ch;
    let per_channel = a.len() / channels;
    for c in 0..channels {
        for (k, start) in (0..per_channel).step_by(CHANNEL_BLOCK).enumerate() {
            let mut acc = T::zero();
            for j in start..(start + CHANNEL_BLOCK).min(per_channel) {
                let i = (j / group) * group * channels + c * group + j % group;
                acc += a[i] * b[i];
            }
            partials[k * channels + c] = acc;
        }
    }
}

/// The second stage: `out[offset + c] += sum over k, in order, of partials[k, c]`.
pub fn channel_sum<T: Real>(out: &mut [T], partials: &[T], channels: usize, offset: usize) {
    for c in 0..channels {
        let mut acc = T::zero();
        for row in partials.chunks(channels) {
            acc += row[c];
        }
        out[offset + c] += acc;
    }
}

/// `dst += src`.
pub fn add_into<T: Real>(dst: &mut [T], src: &[T]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}
