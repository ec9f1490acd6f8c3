// Exponential moving average of the weights (record spec section 5: decay 0.997).
//
// ema: e <- DECAY e + (1 - DECAY) w. (updates e in place)
// shapes: e, w [count]. dispatch: one invocation per element, 1-D grid of 64-wide
//   workgroups folded into y beyond 65535 workgroups (the bound check on count stays).
// count is a per-dispatch uniform (`site`, the binding after the tensors; written once when
//   the plan is loaded, KernelCall::params), so one pipeline serves every parameter; DECAY,
//   the same for all of them, stays an override so that 1 - DECAY folds.
// CPU reference: src/ops/ema.rs (ema).

override DECAY: f32;

// The element count.
struct Site {
    count: u32,
}

@group(0) @binding(0) var<storage, read_write> e: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<uniform> site: Site;

@compute @workgroup_size(64)
fn ema(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= site.count {
        return;
    }
    e[i] = DECAY * e[i] + (1.0 - DECAY) * w[i];
}
