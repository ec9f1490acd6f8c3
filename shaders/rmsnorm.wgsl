// RMSNorm without gain over rows of DIM values.
//
// rmsnorm_fwd: rstd[r] = 1 / sqrt(mean_c x[r,c]^2 + EPS); y[r,c] = x[r,c] * rstd[r]
//   (overwrites y and rstd). shapes: y, x [ROWS, DIM]; rstd [ROWS].
// rmsnorm_bwd: dx[r,c] += rstd[r] * (dy[r,c] - y[r,c] * mean_c(dy[r,:] * y[r,:]))
//   (accumulates into dx). shapes: dx, dy, y [ROWS, DIM]; rstd [ROWS].
// dispatch: one invocation per row, 1-D grid of 64-wide workgroups (folded into y beyond
//   65535 workgroups). Simple first: a workgroup-per-row variant comes with the speed work.
// CPU reference: src/ops/rmsnorm.rs (rmsnorm_fwd, rmsnorm_bwd).

override ROWS: u32;
override DIM: u32;
override EPS: f32;

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(64)
fn rmsnorm_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * 64u;
    if r >= ROWS {
        return;
    }
    let base = r * DIM;
    var ss = 0.0;
    for (var c = 0u; c < DIM; c++) {
        let v = x[base + c];
        ss += v * v;
    }
    let s = 1.0 / sqrt(ss / f32(DIM) + EPS);
    rstd[r] = s;
    for (var c = 0u; c < DIM; c++) {
        y[base + c] = x[base + c] * s;
    }
}

@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> y_in: array<f32>;
@group(0) @binding(3) var<storage, read> rstd_in: array<f32>;

@compute @workgroup_size(64)
fn rmsnorm_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * 64u;
    if r >= ROWS {
        return;
    }
    let base = r * DIM;
    var dot = 0.0;
    for (var c = 0u; c < DIM; c++) {
        dot += dy[base + c] * y_in[base + c];
    }
    let mean = dot / f32(DIM);
    let s = rstd_in[r];
    for (var c = 0u; c < DIM; c++) {
        dx[base + c] += s * (dy[base + c] - y_in[base + c] * mean);
    }
}
