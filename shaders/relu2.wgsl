// relu^2 activation.
//
// relu2_fwd: y = max(x, 0)^2                 (overwrites y)
// relu2_bwd: dx += 2 max(x, 0) dy            (accumulates into dx)
// shapes: all [COUNT]. dispatch: one invocation per element, 1-D grid of 64-wide workgroups
//   folded into y beyond 65535 workgroups.
// CPU reference: src/ops/elementwise.rs (relu2_fwd, relu2_bwd).

override COUNT: u32;

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;

@compute @workgroup_size(64)
fn relu2_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= COUNT {
        return;
    }
    let r = max(x[i], 0.0);
    y[i] = r * r;
}

@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x_in: array<f32>;

@compute @workgroup_size(64)
fn relu2_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= COUNT {
        return;
    }
    dx[i] += 2.0 * max(x_in[i], 0.0) * dy[i];
}
