// Exponential moving average of the weights (record spec section 5: decay 0.997).
//
// ema: e <- DECAY e + (1 - DECAY) w. (updates e in place)
// shapes: e, w [count]. dispatch: one invocation per element, 1-D grid of 64-wide
//   workgroups folded into y beyond 65535 workgroups (the bound check on count stays).
// count is a per-dispatch uniform (`site`, the binding after the tensors; written once when
//   the plan is loaded, KernelCall::params), so one pipeline serves every parameter; DECAY,
//   the same for all of them, stays an override so that 1 - DECAY folds.
// ema4: the same for four weights at once (e0 from w0, ..., e3 from w3), so that the model's
//   weights take a quarter of the dispatches: invocation i updates element i of the first
//   weight, the next ones those of the second, and so on, by the counts in `site4`.
//   shapes: ek, wk [countk]. dispatch: one invocation per element of the four, 1-D grid.
//   emit_ema sends the weights four at a time and the last one to three through `ema`; the
//   CPU runs ema for each of the four.
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

// ema4's element counts.
struct Site4 {
    count0: u32,
    count1: u32,
    count2: u32,
    count3: u32,
}

@group(0) @binding(0) var<storage, read_write> e0: array<f32>;
@group(0) @binding(1) var<storage, read_write> e1: array<f32>;
@group(0) @binding(2) var<storage, read_write> e2: array<f32>;
@group(0) @binding(3) var<storage, read_write> e3: array<f32>;
@group(0) @binding(4) var<storage, read> w0: array<f32>;
@group(0) @binding(5) var<storage, read> w1: array<f32>;
@group(0) @binding(6) var<storage, read> w2: array<f32>;
@group(0) @binding(7) var<storage, read> w3: array<f32>;
@group(0) @binding(8) var<uniform> site4: Site4;

@compute @workgroup_size(64)
fn ema4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let end0 = site4.count0;
    let end1 = end0 + site4.count1;
    let end2 = end1 + site4.count2;
    let end3 = end2 + site4.count3;
    if i < end0 {
        e0[i] = DECAY * e0[i] + (1.0 - DECAY) * w0[i];
    } else if i < end1 {
        let j = i - end0;
        e1[j] = DECAY * e1[j] + (1.0 - DECAY) * w1[j];
    } else if i < end2 {
        let j = i - end1;
        e2[j] = DECAY * e2[j] + (1.0 - DECAY) * w2[j];
    } else if i < end3 {
        let j = i - end2;
        e3[j] = DECAY * e3[j] + (1.0 - DECAY) * w3[j];
    }
}
