// XSA (exclusive self-attention): removes from each head of the attention output its
// component along the token's own raw value vector.
//
// Query head h uses KV group g = h / (HEADS / KV_HEADS). For row t and group g:
//   n = |v_{t,g}|, s = max(n, EPS) with EPS = 1e-12, vhat = v_{t,g} / s.
// xsa_fwd (overwrites out): out_{t,h} = y_{t,h} - (y_{t,h} . vhat) vhat.
//   One invocation per (row, head); each computes its group's norm in the same order.
// xsa_bwd (accumulates dy, dv): with a_h = dout_h . vhat, b_h = y_h . vhat over the heads h
//   of group g: dy_h += dout_h - a_h vhat; gv = -sum_h (a_h y_h + b_h dout_h);
//   dv += (gv - (gv . vhat) vhat) / n when n >= EPS, else dv += gv / EPS (the clamp is active:
//   vhat = v / EPS is linear in v).
//   One invocation per (row, group): it owns dv_{t,g} and dy of the group's heads, so every
//   output has a single owner (no atomics); gv is a private array.
// shapes: y, out, dy, dout [ROWS, HEADS*HEAD_DIM]; v, dv [ROWS, KV_HEADS*HEAD_DIM].
// dispatch: 1-D grids of 64-wide workgroups (over ROWS*HEADS, resp. ROWS*KV_HEADS), folded
//   into y beyond 65535 workgroups. HEAD_DIM <= MAX_HEAD_DIM (xsa_bwd's private array).
// CPU reference: src/ops/xsa.rs (xsa_fwd, xsa_bwd).

override ROWS: u32;
override HEADS: u32;
override KV_HEADS: u32;
override HEAD_DIM: u32;

const MAX_HEAD_DIM: u32 = 128u;
const EPS: f32 = 1e-12;

// ---- forward ----
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> fy: array<f32>;
@group(0) @binding(2) var<storage, read> fv: array<f32>;

@compute @workgroup_size(64)
fn xsa_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= ROWS * HEADS {
        return;
    }
    let t = idx / HEADS;
    let h = idx % HEADS;
    let g = h / (HEADS / KV_HEADS);
    let yo = idx * HEAD_DIM;
    let vo = (t * KV_HEADS + g) * HEAD_DIM;
    var nn = 0.0;
    for (var d = 0u; d < HEAD_DIM; d++) {
        nn += fv[vo + d] * fv[vo + d];
    }
    let s = max(sqrt(nn), EPS);
    var b = 0.0;
    for (var d = 0u; d < HEAD_DIM; d++) {
        b += fy[yo + d] * (fv[vo + d] / s);
    }
    for (var d = 0u; d < HEAD_DIM; d++) {
        out[yo + d] = fy[yo + d] - b * (fv[vo + d] / s);
    }
}

// ---- backward ----
@group(0) @binding(0) var<storage, read_write> dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> dv: array<f32>;
@group(0) @binding(2) var<storage, read> bdout: array<f32>;
@group(0) @binding(3) var<storage, read> by: array<f32>;
@group(0) @binding(4) var<storage, read> bv: array<f32>;

@compute @workgroup_size(64)
fn xsa_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= ROWS * KV_HEADS {
        return;
    }
    let t = idx / KV_HEADS;
    let g = idx % KV_HEADS;
    let group = HEADS / KV_HEADS;
    let vo = idx * HEAD_DIM;
    var nn = 0.0;
    for (var d = 0u; d < HEAD_DIM; d++) {
        nn += bv[vo + d] * bv[vo + d];
    }
    let n = sqrt(nn);
    let s = max(n, EPS);
    var gacc: array<f32, MAX_HEAD_DIM>;
    for (var d = 0u; d < HEAD_DIM; d++) {
        gacc[d] = 0.0;
    }
    for (var h = g * group; h < (g + 1u) * group; h++) {
        let yo = (t * HEADS + h) * HEAD_DIM;
        var a = 0.0;
        var b = 0.0;
        for (var d = 0u; d < HEAD_DIM; d++) {
            let vh = bv[vo + d] / s;
            a += bdout[yo + d] * vh;
            b += by[yo + d] * vh;
        }
        for (var d = 0u; d < HEAD_DIM; d++) {
            let vh = bv[vo + d] / s;
            let go = bdout[yo + d];
            dy[yo + d] += go - a * vh;
            gacc[d] -= a * by[yo + d] + b * go;
        }
    }
    if n >= EPS {
        var gv = 0.0;
        for (var d = 0u; d < HEAD_DIM; d++) {
            gv += gacc[d] * (bv[vo + d] / s);
        }
        for (var d = 0u; d < HEAD_DIM; d++) {
            dv[vo + d] += (gacc[d] - gv * (bv[vo + d] / s)) / n;
        }
    } else {
        for (var d = 0u; d < HEAD_DIM; d++) {
            dv[vo + d] += gacc[d] / EPS;
        }
    }
}
