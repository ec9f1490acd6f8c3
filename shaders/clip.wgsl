// Global gradient-norm clipping, as PyTorch's clip_grad_norm_ (record spec section 5: 0.3).
// Deterministic, with no atomics and no read-back: the coefficient stays on the GPU.
//
// grad_sum_sq: norms[SLOT] = sum of g^2. One workgroup of 256 lanes: lane l sums the squares
//   of elements l, l + 256, ... in order, then workgroup_sum's fixed pairwise tree
//   (common/workgroup_sum.wgsl). (overwrites its slot)
//   shapes: g [COUNT]; norms [SLOTS]. dispatch: (1, 1, 1).
// clip_coef: coef[0] = min(1, MAX_NORM / (sqrt(sum of norms) + 1e-6)), the SLOTS partial sums
//   added in slot order by one invocation. (overwrites)
//   shapes: norms [SLOTS]; coef [1]. dispatch: (1, 1, 1).
// scale_by_coef: x *= coef[0]. (in place) shapes: x [COUNT]; coef [1]. dispatch: 1-D grid of
//   64-wide workgroups folded into y.
// CPU reference: src/ops/clip.rs (grad_sum_sq, clip_coef, scale_by_coef).

override COUNT: u32;
override SLOT: u32;
override SLOTS: u32;
override MAX_NORM: f32;

@group(0) @binding(0) var<storage, read_write> norms: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;

@compute @workgroup_size(256)
fn grad_sum_sq(@builtin(local_invocation_index) lane: u32) {
    var acc = 0.0;
    for (var j = lane; j < COUNT; j += 256u) {
        let v = g[j];
        acc += v * v;
    }
    let total = workgroup_sum(lane, acc, 256u);
    if lane == 0u {
        norms[SLOT] = total;
    }
}

@group(0) @binding(0) var<storage, read_write> coef_out: array<f32>;
@group(0) @binding(1) var<storage, read> norms_in: array<f32>;

@compute @workgroup_size(1)
fn clip_coef() {
    var total = 0.0;
    for (var s = 0u; s < SLOTS; s++) {
        total += norms_in[s];
    }
    coef_out[0] = min(1.0, MAX_NORM / (sqrt(total) + 1e-6));
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> coef: array<f32>;

@compute @workgroup_size(64)
fn scale_by_coef(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= COUNT {
        return;
    }
    x[i] = x[i] * coef[0];
}
