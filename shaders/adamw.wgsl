// AdamW with decoupled weight decay and bias correction (PyTorch's AdamW).
//
// g = grad clip[0] (the global-norm clip's coefficient, read here instead of scaling the
// gradient in a pass of its own; a constant 1 without clipping);
// p <- p (1 - lr wd); m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
// p <- p - lr (m / bc1) / (sqrt(v / bc2) + eps)             (updates p, m, v in place)
// The step's hyperparameters come from a uniform written before each optimizer pass.
// shapes: p, m, v, grad [count]; clip [1]. dispatch: one invocation per element, 1-D grid of 64-wide
//   workgroups folded into y beyond 65535 workgroups (the bound check on count stays).
// count is a per-dispatch uniform (`site`, the binding after the tensors; written once when
//   the plan is loaded, KernelCall::params), so one pipeline serves every parameter.
// CPU reference: src/ops/adamw.rs (adamw).

// The element count.
struct Site {
    count: u32,
}

struct Hyper {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    pad: f32,
}

@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read_write> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read> clip: array<f32>;
@group(0) @binding(5) var<uniform> hyper: Hyper;
@group(0) @binding(6) var<uniform> site: Site;

@compute @workgroup_size(64)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= site.count {
        return;
    }
    let grad = g[i] * clip[0];
    let param = p[i] * (1.0 - hyper.lr * hyper.weight_decay);
    let m_new = hyper.beta1 * m[i] + (1.0 - hyper.beta1) * grad;
    let v_new = hyper.beta2 * v[i] + (1.0 - hyper.beta2) * grad * grad;
    m[i] = m_new;
    v[i] = v_new;
    let denom = sqrt(v_new / hyper.bias_correction2) + hyper.eps;
    p[i] = param - hyper.lr * (m_new / hyper.bias_correction1) / denom;
}
