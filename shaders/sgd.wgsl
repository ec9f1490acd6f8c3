// SGD with momentum, as PyTorch's SGD with dampening 0, no Nesterov and no weight decay
// (test-time training, record-spec.md section 8).
//
// sgd: g = grad clip[0] (the clip's coefficient, 1 without clipping);
//   buf <- mu buf + g; p <- p - lr buf.                     (updates p and buf in place)
// buf starts at zero, so the first step gives buf = g exactly as PyTorch's lazily created
// buffer does. lr and mu come from a uniform written before each optimizer pass, so a
// schedule (score-first's cosine across chunks) changes them without rebuilding.
// shapes: p, buf, g [COUNT]; clip [1]. dispatch: one invocation per element, 1-D grid of 64-wide
//   workgroups folded into y beyond 65535 workgroups.
// CPU reference: src/ops/sgd.rs (sgd).

override COUNT: u32;

// The 8-float uniform block (src/ops/sgd.rs SgdHyper): lr, momentum, then padding.
struct Hyper {
    lr: f32,
    momentum: f32,
    pad: vec2<f32>,
    pad_tail: vec4<f32>,
}

@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read_write> buf: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> clip: array<f32>;
@group(0) @binding(4) var<uniform> hyper: Hyper;

@compute @workgroup_size(64)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= COUNT {
        return;
    }
    let b = hyper.momentum * buf[i] + g[i] * clip[0];
    buf[i] = b;
    p[i] = p[i] - hyper.lr * b;
}
