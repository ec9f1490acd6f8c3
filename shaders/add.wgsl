// Gradient accumulation of one tensor into another.
//
// add_into: dst += src                          (accumulates)
// Used where one tensor feeds a step through two inputs (the first U-Net skip reads the same
// block output as the stream), so the second gradient is summed in afterwards rather than
// bound twice for writing.
// shapes: dst, src [COUNT]. dispatch: one invocation per element, 1-D grid of 64-wide
//   workgroups folded into y beyond 65535 workgroups.
// CPU reference: src/ops/elementwise.rs (add_into).

override COUNT: u32;

@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> src: array<f32>;

@compute @workgroup_size(64)
fn add_into(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i < COUNT {
        dst[i] += src[i];
    }
}
