// Workgroup sum: one value per lane, added by a fixed pairwise tree (deterministic, no
// atomics). Appended by src/kernels.rs to clip.wgsl, muon.wgsl, reduce.wgsl and smear.wgsl.
//
// workgroup_sum(lane, v, lanes): lane l of a workgroup of `lanes` invocations (a power of two,
//   at most 256) passes its own v; every lane gets back the total, summed in this order: for
//   width = lanes / 2, lanes / 4, ..., 1, lane l < width adds lane l + width's partial sum to
//   its own, with a workgroup barrier after each step. Call it from uniform control flow, at
//   most once per invocation (the lanes' slots are not cleared for a second sum).
// shapes: one slot of workgroup memory per lane (256 in all, whatever `lanes`).
// CPU reference: src/ops/cross_entropy.rs (loss_sum), which sums in the same order.

var<workgroup> workgroup_sum_lanes: array<f32, 256>;

fn workgroup_sum(lane: u32, v: f32, lanes: u32) -> f32 {
    workgroup_sum_lanes[lane] = v;
    workgroupBarrier();
    for (var width = lanes / 2u; width > 0u; width /= 2u) {
        if lane < width {
            workgroup_sum_lanes[lane] += workgroup_sum_lanes[lane + width];
        }
        workgroupBarrier();
    }
    return workgroup_sum_lanes[0];
}
