// Logit softcap and fused cross-entropy over rows of VOCAB raw logits.
//
// z = SOFTCAP * tanh(l / SOFTCAP); loss[r] = logsumexp(z) - z[target[r]]   (overwrites loss)
// with WRITE_GRAD: dlogits[r, j] = GRAD_SCALE * (softmax(z)_j - [j == target]) * (1 - tanh(l_j / SOFTCAP)^2)
//   (overwrites dlogits; the gradient of GRAD_SCALE * sum(loss) with respect to the raw logits)
// shapes: logits [ROWS, VOCAB]; loss [ROWS]; targets [ROWS] (u32); dlogits [ROWS, VOCAB] with
//   WRITE_GRAD, else a one-element placeholder that is never touched (forward-only plans).
// dispatch: one invocation per row, 1-D grid of 64-wide workgroups folded into y beyond
//   65535 workgroups. The loss total is reduced by reduce.wgsl (sum_rows).
// CPU reference: src/ops/cross_entropy.rs (cross_entropy).

override ROWS: u32;
override VOCAB: u32;
override SOFTCAP: f32;
override GRAD_SCALE: f32;
override WRITE_GRAD: bool;

@group(0) @binding(0) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(1) var<storage, read_write> loss: array<f32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<u32>;

fn capped(l: f32) -> f32 {
    return SOFTCAP * tanh(l / SOFTCAP);
}

@compute @workgroup_size(64)
fn cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * 64u;
    if r >= ROWS {
        return;
    }
    let base = r * VOCAB;
    var m = -3.0e38;
    for (var j = 0u; j < VOCAB; j++) {
        m = max(m, capped(logits[base + j]));
    }
    var sum = 0.0;
    for (var j = 0u; j < VOCAB; j++) {
        sum += exp(capped(logits[base + j]) - m);
    }
    let lse = m + log(sum);
    let y = targets[r];
    loss[r] = lse - capped(logits[base + y]);
    if WRITE_GRAD {
        for (var j = 0u; j < VOCAB; j++) {
            let th = tanh(logits[base + j] / SOFTCAP);
            let p = exp(SOFTCAP * th - lse);
            let onehot = select(0.0, 1.0, j == y);
            dlogits[base + j] = GRAD_SCALE * (p - onehot) * (1.0 - th * th);
        }
    }
}
