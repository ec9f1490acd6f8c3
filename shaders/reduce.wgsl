// Deterministic reductions: the gradients of per-channel parameters, and the loss total.
//
// channel_dot: out[OUT_OFFSET + c] += sum over elements i of channel c of a[i] * b[i], where
//   element i = r * GROUP * CHANNELS + c * GROUP + u (r < COUNT / (GROUP * CHANNELS), u < GROUP).
//   One workgroup per channel: lane l sums the channel's elements j = l, l + 64, ... in order,
//   then workgroup_sum's fixed pairwise tree (common/workgroup_sum.wgsl) over the 64 lanes.
//   (accumulates)
//   shapes: a, b [COUNT]; out [>= OUT_OFFSET + CHANNELS]. dispatch: (CHANNELS, 1, 1).
// sum_rows: total[0] += SCALE * sum(rows): one workgroup of 256 lanes, lane l sums rows
//   l, l + 256, ... in order, then workgroup_sum's pairwise tree over the 256 lanes.
//   (accumulates)
//   shapes: rows [COUNT]; total [1]. dispatch: (1, 1, 1).
// CPU reference: src/ops/elementwise.rs (channel_dot), src/ops/cross_entropy.rs (loss_sum).

override COUNT: u32;
override GROUP: u32 = 1u;
override CHANNELS: u32 = 1u;
override OUT_OFFSET: u32 = 0u;
override SCALE: f32 = 1.0;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

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
        out[OUT_OFFSET + c] += sum;
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
