// Token embedding: gather forward, deterministic scatter-add backward.
//
// embedding_fwd: out[t, c] = table[ids[t], c]                      (overwrites out)
//   shapes: out [TOKENS, DIM], table [vocab, DIM], ids [TOKENS] (u32)
//   dispatch: one invocation per element of out, 1-D grid of 64-wide workgroups
//             (folded into y when over 65535 workgroups).
// embedding_bwd: dtable[ids[t], c] += dout[t, c], t = 0, 1, ... in order   (accumulates)
//   shapes: dtable [vocab, DIM], dout [TOKENS, DIM], ids [TOKENS]
//   dispatch: one invocation per channel c; each walks the tokens in order, so the sums do
//             not depend on scheduling (no atomics).
// CPU reference: src/ops/embedding.rs (embedding_fwd, embedding_bwd).

override TOKENS: u32;
override DIM: u32;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;

@compute @workgroup_size(64)
fn embedding_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= TOKENS * DIM {
        return;
    }
    let t = i / DIM;
    let c = i % DIM;
    out[i] = table[ids[t] * DIM + c];
}

@group(0) @binding(0) var<storage, read_write> dtable: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_ids: array<u32>;

@compute @workgroup_size(64)
fn embedding_bwd(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= DIM {
        return;
    }
    for (var t = 0u; t < TOKENS; t++) {
        let dst = bwd_ids[t] * DIM + c;
        dtable[dst] += dout[t * DIM + c];
    }
}
