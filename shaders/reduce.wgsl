// Deterministic reductions: the gradients of per-channel parameters, and the loss total.
//
// The gradient of a per-channel parameter, out[out_offset + c] += sum over the elements i of
// channel c of a[i] b[i], where the j-th element of channel c is
// i = (j / GROUP) GROUP CHANNELS + c GROUP + j % GROUP, each sum in a fixed order:
// channel_dot: one stage, for many channels: one workgroup of 64 lanes per channel, lane l
//   sums the channel's elements j = l, l + 64, ... in order, then workgroup_sum's fixed
//   pairwise tree (common/workgroup_sum.wgsl) over the 64 lanes. (accumulates)
//   shapes: a, b [COUNT]; out [>= out_offset + CHANNELS]. dispatch: (CHANNELS, 1, 1).
// Two stages, for few channels over millions of elements, so the GPU still fills:
// channel_dot_partial: partials[k, c] = the sum over the elements j in [4096 k, 4096 (k + 1))
//   of channel c. One workgroup of 64 lanes per (channel, block): lane l sums the block's
//   elements l, l + 64, ... (64 of them) in order, then workgroup_sum's fixed pairwise tree
//   (common/workgroup_sum.wgsl). (overwrites)
//   shapes: a, b [COUNT]; partials [BLOCKS, CHANNELS], BLOCKS = ceil(COUNT / CHANNELS / 4096).
//   dispatch: (CHANNELS, BLOCKS, 1).
// channel_sum: out[out_offset + c] += sum over k of partials[k, c]: one workgroup of 64 lanes
//   per channel, lane l adds blocks l, l + 64, ... in order, then the tree. (accumulates)
//   shapes: partials [BLOCKS, CHANNELS]; out [>= out_offset + CHANNELS].
//   dispatch: (CHANNELS, 1, 1).
// channel_dot's and channel_sum's out_offset (which parameter of a stacked output, such as a
//   row of skip_weights) is a per-dispatch uniform (`dot_site`, `sum_site`, the binding after
//   the tensors; written once when the plan is loaded, KernelCall::params), so one pipeline
//   serves every row.
// sum_rows: total[0] += SCALE * sum(rows): one workgroup of 256 lanes, lane l sums rows
//   l, l + 256, ... in order, then workgroup_sum's pairwise tree over the 256 lanes.
//   (accumulates)
//   shapes: rows [COUNT]; total [1]. dispatch: (1, 1, 1).
// CPU reference: src/ops/elementwise.rs (channel_dot, channel_dot_partial, channel_sum), src/ops/cross_entropy.rs (loss_sum).

override COUNT: u32;
override GROUP: u32 = 1u;
override CHANNELS: u32 = 1u;
override BLOCKS: u32 = 1u;
override SCALE: f32 = 1.0;

// Elements of one channel per block of channel_dot_partial (ops::elementwise::CHANNEL_BLOCK).
const BLOCK: u32 = 4096u;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<uniform> dot_site: Site;

// Where a channel gradient's sums go in its output.
struct Site {
    out_offset: u32,
}

@compute @workgroup_size(64)
fn channel_dot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let c = wid.x;
    let per_channel = COUNT / CHANNELS;
    var acc = 0.0;
    for (var j = lane; j < per_channel; j += 64u) {
        let i = (j / GROUP) * GROUP * CHANNELS + c * GROUP + j % GROUP;
        acc += a[i] * b[i];
    }
    let sum = workgroup_sum(lane, acc, 64u);
    if lane == 0u {
        out[dot_site.out_offset + c] += sum;
    }
}

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(64)
fn channel_dot_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let c = wid.x;
    let per_channel = COUNT / CHANNELS;
    let start = wid.y * BLOCK;
    var acc = 0.0;
    for (var s = 0u; s < BLOCK / 64u; s++) {
        let j = start + lane + s * 64u;
        if j < per_channel {
            let i = (j / GROUP) * GROUP * CHANNELS + c * GROUP + j % GROUP;
            acc += a[i] * b[i];
        }
    }
    let sum = workgroup_sum(lane, acc, 64u);
    if lane == 0u {
        partials[wid.y * CHANNELS + c] = sum;
    }
}

@group(0) @binding(1) var<storage, read> partials_in: array<f32>;
@group(0) @binding(2) var<uniform> sum_site: Site;

@compute @workgroup_size(64)
fn channel_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let c = wid.x;
    var acc = 0.0;
    for (var k = lane; k < BLOCKS; k += 64u) {
        acc += partials_in[k * CHANNELS + c];
    }
    let sum = workgroup_sum(lane, acc, 64u);
    if lane == 0u {
        out[sum_site.out_offset + c] += sum;
    }
}

@group(0) @binding(0) var<storage, read_write> total: array<f32>;
@group(0) @binding(1) var<storage, read> rows: array<f32>;

@compute @workgroup_size(256)
fn sum_rows(@builtin(local_invocation_index) lane: u32) {
    var acc = 0.0;
    for (var j = lane; j < COUNT; j += 256u) {
        acc += rows[j];
    }
    let sum = workgroup_sum(lane, acc, 256u);
    if lane == 0u {
        total[0] += SCALE * sum;
    }
}
