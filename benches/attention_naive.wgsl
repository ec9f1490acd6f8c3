// Causal softmax attention with grouped-query heads (simple, correct first; flash later).
//
// shapes: q, out, dq, dout [BATCH*SEQ, HEADS*HEAD_DIM]; k, v, dk, dv [BATCH*SEQ, KV_HEADS*HEAD_DIM];
//   lse, delta [BATCH, HEADS, SEQ]. Query head h reads KV head h / (HEADS / KV_HEADS).
//   scale = 1/sqrt(HEAD_DIM); s_ts = scale q_t.k_s for s <= t.
// attention_fwd (overwrites out, lse): lse_t = log sum_s exp(s_ts); out_t = sum_s exp(s_ts - lse_t) v_s.
//   One invocation per (b, h, t); two passes over the keys (the log-sum-exp, then the sum).
// attention_bwd_q (writes delta, accumulates dq): delta_t = dout_t.out_t;
//   dq_t += scale sum_s p_ts (dout_t.v_s - delta_t) k_s. One invocation per (b, h, t).
// attention_bwd_kv (accumulates dk, dv), after attention_bwd_q: for each KV head g and key s,
//   over the query heads h of g and t >= s: dv_s += p_ts dout_t; dk_s += scale p_ts (dout_t.v_s - delta_t) q_t.
//   One invocation per (b, g, s): each output has a single owner, so no atomics.
// dispatch: 1-D grids of 64-wide workgroups, folded into y beyond 65535 workgroups.
// HEAD_DIM <= MAX_HEAD_DIM (the per-invocation accumulators are private arrays).
// CPU reference: src/ops/attention.rs (attention_fwd, attention_bwd_q, attention_bwd_kv).

override BATCH: u32;
override SEQ: u32;
override HEADS: u32;
override KV_HEADS: u32;
override HEAD_DIM: u32;

const MAX_HEAD_DIM: u32 = 128u;

fn q_at(b: u32, t: u32, h: u32) -> u32 {
    return ((b * SEQ + t) * HEADS + h) * HEAD_DIM;
}

fn kv_at(b: u32, t: u32, g: u32) -> u32 {
    return ((b * SEQ + t) * KV_HEADS + g) * HEAD_DIM;
}

fn scale() -> f32 {
    return 1.0 / sqrt(f32(HEAD_DIM));
}

// ---- forward ----
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> lse: array<f32>;
@group(0) @binding(2) var<storage, read> fq: array<f32>;
@group(0) @binding(3) var<storage, read> fk: array<f32>;
@group(0) @binding(4) var<storage, read> fv: array<f32>;

fn fwd_score(qo: u32, ko: u32) -> f32 {
    var acc = 0.0;
    for (var d = 0u; d < HEAD_DIM; d++) {
        acc += fq[qo + d] * fk[ko + d];
    }
    return acc * scale();
}

@compute @workgroup_size(64)
fn attention_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= BATCH * HEADS * SEQ {
        return;
    }
    let t = idx % SEQ;
    let h = (idx / SEQ) % HEADS;
    let b = idx / (SEQ * HEADS);
    let g = h / (HEADS / KV_HEADS);
    let qo = q_at(b, t, h);
    var m = -3.0e38;
    for (var s = 0u; s <= t; s++) {
        m = max(m, fwd_score(qo, kv_at(b, s, g)));
    }
    var sum = 0.0;
    for (var s = 0u; s <= t; s++) {
        sum += exp(fwd_score(qo, kv_at(b, s, g)) - m);
    }
    let l = m + log(sum);
    lse[idx] = l;
    var acc: array<f32, MAX_HEAD_DIM>;
    for (var s = 0u; s <= t; s++) {
        let ko = kv_at(b, s, g);
        let p = exp(fwd_score(qo, ko) - l);
        for (var d = 0u; d < HEAD_DIM; d++) {
            acc[d] += p * fv[ko + d];
        }
    }
    for (var d = 0u; d < HEAD_DIM; d++) {
        out[qo + d] = acc[d];
    }
}

// ---- backward for q ----
@group(0) @binding(0) var<storage, read_write> dq: array<f32>;
@group(0) @binding(1) var<storage, read_write> delta: array<f32>;
@group(0) @binding(2) var<storage, read> qdout: array<f32>;
@group(0) @binding(3) var<storage, read> qout: array<f32>;
@group(0) @binding(4) var<storage, read> qq: array<f32>;
@group(0) @binding(5) var<storage, read> qk: array<f32>;
@group(0) @binding(6) var<storage, read> qv: array<f32>;
@group(0) @binding(7) var<storage, read> qlse: array<f32>;

@compute @workgroup_size(64)
fn attention_bwd_q(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= BATCH * HEADS * SEQ {
        return;
    }
    let t = idx % SEQ;
    let h = (idx / SEQ) % HEADS;
    let b = idx / (SEQ * HEADS);
    let g = h / (HEADS / KV_HEADS);
    let qo = q_at(b, t, h);
    var dlt = 0.0;
    for (var d = 0u; d < HEAD_DIM; d++) {
        dlt += qdout[qo + d] * qout[qo + d];
    }
    delta[idx] = dlt;
    let l = qlse[idx];
    var acc: array<f32, MAX_HEAD_DIM>;
    for (var s = 0u; s <= t; s++) {
        let ko = kv_at(b, s, g);
        var qk_dot = 0.0;
        var dv_dot = 0.0;
        for (var d = 0u; d < HEAD_DIM; d++) {
            qk_dot += qq[qo + d] * qk[ko + d];
            dv_dot += qdout[qo + d] * qv[ko + d];
        }
        let p = exp(qk_dot * scale() - l);
        let ds = p * (dv_dot - dlt);
        for (var d = 0u; d < HEAD_DIM; d++) {
            acc[d] += ds * qk[ko + d];
        }
    }
    for (var d = 0u; d < HEAD_DIM; d++) {
        dq[qo + d] += scale() * acc[d];
    }
}

// ---- backward for k and v ----
@group(0) @binding(0) var<storage, read_write> dk: array<f32>;
@group(0) @binding(1) var<storage, read_write> dv: array<f32>;
@group(0) @binding(2) var<storage, read> kdout: array<f32>;
@group(0) @binding(3) var<storage, read> kq: array<f32>;
@group(0) @binding(4) var<storage, read> kk: array<f32>;
@group(0) @binding(5) var<storage, read> kv: array<f32>;
@group(0) @binding(6) var<storage, read> klse: array<f32>;
@group(0) @binding(7) var<storage, read> kdelta: array<f32>;

@compute @workgroup_size(64)
fn attention_bwd_kv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= BATCH * KV_HEADS * SEQ {
        return;
    }
    let s = idx % SEQ;
    let g = (idx / SEQ) % KV_HEADS;
    let b = idx / (SEQ * KV_HEADS);
    let group = HEADS / KV_HEADS;
    let ko = kv_at(b, s, g);
    var acc_k: array<f32, MAX_HEAD_DIM>;
    var acc_v: array<f32, MAX_HEAD_DIM>;
    for (var h = g * group; h < (g + 1u) * group; h++) {
        for (var t = s; t < SEQ; t++) {
            let qo = q_at(b, t, h);
            let row = (b * HEADS + h) * SEQ + t;
            var qk_dot = 0.0;
            var dv_dot = 0.0;
            for (var d = 0u; d < HEAD_DIM; d++) {
                qk_dot += kq[qo + d] * kk[ko + d];
                dv_dot += kdout[qo + d] * kv[ko + d];
            }
            let p = exp(qk_dot * scale() - klse[row]);
            let ds = p * (dv_dot - kdelta[row]);
            for (var d = 0u; d < HEAD_DIM; d++) {
                acc_v[d] += p * kdout[qo + d];
                acc_k[d] += ds * kq[qo + d];
            }
        }
    }
    for (var d = 0u; d < HEAD_DIM; d++) {
        dv[ko + d] += acc_v[d];
        dk[ko + d] += scale() * acc_k[d];
    }
}
