// SmearGate: a learned per-channel blend of each token with the previous one.
//
// Rows of DIM values are grouped into sequences of SEQ_LEN rows (row r starts one when
// r % SEQ_LEN == 0; the last may be shorter). sig_c = 1 / (1 + exp(-gate_c)); prev(r) is
// row r - 1, or 0 when row r starts a sequence.
//   smear_fwd:  out_r = (1 - sig) * x_r + sig * prev(r)                        (overwrites out)
//     One invocation per element.
//   smear_bwd:  dx_r += (1 - sig) * dout_r + sig * dout_{r+1}, the second term only when
//     row r + 1 exists and is in the same sequence.                           (accumulates)
//     One invocation per element.
//   smear_grad: dgate_c += sig_c (1 - sig_c) * sum_r dout_{r,c} (prev(r)_c - x_{r,c})
//     (accumulates). One workgroup per channel: lane l sums rows r = l, l + 64, ... in
//     order, then workgroup_sum's fixed pairwise tree over the 64 lanes
//     (common/workgroup_sum.wgsl); lane 0 scales and adds.
// shapes: x, out, dx, dout [ROWS, DIM]; gate, dgate [DIM].
// dispatch: smear_fwd, smear_bwd: 1-D grid of 64-wide workgroups over ROWS * DIM, folded into
//   y beyond 65535 workgroups. smear_grad: (DIM, 1, 1).
// CPU reference: src/ops/smear.rs (smear_fwd, smear_bwd, smear_grad, sigmoid).

override ROWS: u32;
override DIM: u32;
override SEQ_LEN: u32;

fn sigmoid(g: f32) -> f32 {
    return 1.0 / (1.0 + exp(-g));
}

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gate: array<f32>;

@compute @workgroup_size(64)
fn smear_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= ROWS * DIM {
        return;
    }
    let r = i / DIM;
    let s = sigmoid(gate[i % DIM]);
    var prev = 0.0;
    if r % SEQ_LEN != 0u {
        prev = x[i - DIM];
    }
    out[i] = (1.0 - s) * x[i] + s * prev;
}

@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> dout_b: array<f32>;
@group(0) @binding(2) var<storage, read> gate_b: array<f32>;

@compute @workgroup_size(64)
fn smear_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= ROWS * DIM {
        return;
    }
    let r = i / DIM;
    let s = sigmoid(gate_b[i % DIM]);
    var v = (1.0 - s) * dout_b[i];
    if r + 1u < ROWS && (r + 1u) % SEQ_LEN != 0u {
        v += s * dout_b[i + DIM];
    }
    dx[i] += v;
}

@group(0) @binding(0) var<storage, read_write> dgate: array<f32>;
@group(0) @binding(1) var<storage, read> dout_g: array<f32>;
@group(0) @binding(2) var<storage, read> x_g: array<f32>;
@group(0) @binding(3) var<storage, read> gate_g: array<f32>;

@compute @workgroup_size(64)
fn smear_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let c = wid.x;
    var acc = 0.0;
    for (var r = lane; r < ROWS; r += 64u) {
        let i = r * DIM + c;
        var prev = 0.0;
        if r % SEQ_LEN != 0u {
            prev = x_g[i - DIM];
        }
        acc += dout_g[i] * (prev - x_g[i]);
    }
    let total = workgroup_sum(lane, acc, 64u);
    if lane == 0u {
        let s = sigmoid(gate_g[c]);
        dgate[c] += s * (1.0 - s) * total;
    }
}
