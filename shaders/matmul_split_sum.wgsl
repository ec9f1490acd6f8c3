// The combine of a split-K matrix product (matmul.wgsl with SPLITS > 1): the partial
// products added in split order, so the result does not depend on scheduling.
//
// c[z, i] (= or +=) ALPHA * (partials[z, 0, i] + partials[z, 1, i] + ... + partials[z, SPLITS-1, i])
//   for z < BATCH, i < MN (= M N), the sum starting from 0 and adding the splits in order.
//   ACCUMULATE = true adds to c, false overwrites it.
// shapes: partials [BATCH, SPLITS, MN]; c [BATCH, MN].
// dispatch: one invocation per element of c, 1-D workgroups of 64 folded into y past 65,535
//   workgroups (element = x + y * groups_x * 64): grid_1d(BATCH * MN).
// CPU reference: src/ops/matmul.rs (split_sum).

override MN: u32;
override SPLITS: u32;
override ACCUMULATE: bool;
override BATCH: u32 = 1u;
override ALPHA: f32 = 1.0;

@group(0) @binding(0) var<storage, read_write> c: array<f32>;
@group(0) @binding(1) var<storage, read> partials: array<f32>;

@compute @workgroup_size(64)
fn matmul_split_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = gid.x + gid.y * groups.x * 64u;
    if idx >= BATCH * MN {
        return;
    }
    let z = idx / MN;
    let i = idx % MN;
    var sum = 0.0;
    for (var s = 0u; s < SPLITS; s++) {
        sum += partials[(z * SPLITS + s) * MN + i];
    }
    if ACCUMULATE {
        c[idx] += ALPHA * sum;
    } else {
        c[idx] = ALPHA * sum;
    }
}
