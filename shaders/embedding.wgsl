// Token embedding: gather forward, deterministic, parallel scatter-add backward.
//
// embedding_fwd: out[t, c] = table[ids[t], c]                      (overwrites out)
//   shapes: out [TOKENS, DIM], table [vocab, DIM], ids [TOKENS] (u32)
//   dispatch: one invocation per element of out, 1-D grid of 64-wide workgroups
//             (folded into y when over 65535 workgroups).
// embedding_bwd: dtable[v, c] += the sum over the positions t of id v, in position order, of
//   dout[t, c]   (accumulates)
//   shapes: dtable [VOCAB, DIM], dout [TOKENS, DIM], index [VOCAB + 1 + TOKENS] (u32: the
//             host's counting sort of the ids, ops::embedding::id_index: id v's positions are
//             index[VOCAB + 1 + p] for p in index[v] .. index[v + 1], ascending)
//   dispatch: (ceil(DIM / 64), VOCAB, 1): workgroup (x, v) owns columns 64 x .. 64 x + 63 of
//             row v, one lane per column summing its positions in order, so the sums do not
//             depend on scheduling (no atomics) and the grid spans vocabulary x columns.
// CPU reference: src/ops/embedding.rs (embedding_fwd, embedding_bwd_indexed).

override TOKENS: u32;
override DIM: u32;
override VOCAB: u32;

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
@group(0) @binding(2) var<storage, read> id_index: array<u32>;

@compute @workgroup_size(64)
fn embedding_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let v = wid.y;
    let c = wid.x * 64u + lane;
    if c >= DIM {
        return;
    }
    let end = id_index[v + 1u];
    var acc = 0.0;
    for (var p = id_index[v]; p < end; p++) {
        let t = id_index[VOCAB + 1u + p];
        acc += dout[t * DIM + c];
    }
    let dst = v * DIM + c;
    dtable[dst] += acc;
}
