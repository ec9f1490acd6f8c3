// Causal softmax attention with grouped-query heads, flash style: blocks of queries against
// tiles of keys staged in workgroup memory, an online softmax, no T x T buffer.
//
// shapes: q, out, dq, dout [BATCH*SEQ, HEADS*HEAD_DIM]; k, v, dk, dv [BATCH*SEQ, KV_HEADS*HEAD_DIM];
//   lse, delta [BATCH, HEADS, SEQ]. Query head h reads KV head g = h / GROUP, GROUP = HEADS / KV_HEADS.
//   scale = 1/sqrt(HEAD_DIM); s_ts = scale q_t.k_s for s <= t.
// attention_fwd (overwrites out, lse): lse_t = log sum_s exp(s_ts); out_t = sum_s exp(s_ts - lse_t) v_s,
//   in one pass: per key tile the running max m, sum l and accumulator are rescaled by
//   exp(m_old - m_new) (the online softmax); out_t = acc / l, lse_t = m + log l.
// attention_bwd_q (writes delta, accumulates dq): delta_t = dout_t.out_t;
//   dq_t += scale sum_s p_ts (dout_t.v_s - delta_t) k_s, p_ts = exp(s_ts - lse_t).
// attention_bwd_kv (accumulates dk, dv), after attention_bwd_q: for each KV head g and key s,
//   over the query heads h of g and t >= s: dv_s += p_ts dout_t; dk_s += scale p_ts (dout_t.v_s - delta_t) q_t.
// dispatch (workgroups of 64, the grid folded into y beyond 65535 workgroups):
//   attention_fwd, attention_bwd_q: one workgroup per (b, g, block of Q_BLOCK queries), its 64
//     invocations being (head of the group, query) pairs, Q_BLOCK = 64 / GROUP: the group's
//     heads share every K/V tile, which is loaded once for them all. Tiles of TILE keys run
//     from key 0 to the block's last query; later keys are never loaded (the causal skip).
//   attention_bwd_kv: one workgroup per (b, g, block of 64 keys), one invocation per key; for
//     each head of the group, tiles of TILE queries (q, dout, lse, delta) from the block's
//     first key to the end. Each output row has a single owner: no atomics.
//   TILE = min(64, TILE_VEC4 / D4), set by the host (src/plan/defs/attention.rs).
// Rows are read as vec4s (D4 = ceil(HEAD_DIM / 4), zero-padded): a quarter of the loop trips,
// which also keeps a T = 1024 pass under lavapipe's 65,535 loop iterations per invocation
// (llvmpipe silently ends every loop of an invocation past that). HEAD_DIM <= 128 (the
// per-invocation rows are private arrays of MAX_D4 vec4s); 15.5 KiB of workgroup memory (two
// staged matrices of TILE_VEC4 vec4s and two rows of 64 floats).
// CPU reference: src/ops/attention.rs (attention_fwd, attention_bwd_q, attention_bwd_kv).

override BATCH: u32;
override SEQ: u32;
override HEADS: u32;
override KV_HEADS: u32;
override HEAD_DIM: u32;
// Queries per workgroup in the forward and bwd_q (64 / GROUP) and rows per staged tile.
override Q_BLOCK: u32;
override TILE: u32;
// A head row as vec4s: the last one zero-padded when HEAD_DIM is not a multiple of 4.
override D4: u32 = (HEAD_DIM + 3u) / 4u;

const WG: u32 = 64u;
const MAX_D4: u32 = 32u;
const TILE_VEC4: u32 = 480u;

var<workgroup> tile_a: array<vec4<f32>, TILE_VEC4>;
var<workgroup> tile_b: array<vec4<f32>, TILE_VEC4>;
var<workgroup> row_a: array<f32, WG>;
var<workgroup> row_b: array<f32, WG>;

fn q_at(b: u32, t: u32, h: u32) -> u32 {
    return ((b * SEQ + t) * HEADS + h) * HEAD_DIM;
}

fn kv_at(b: u32, t: u32, g: u32) -> u32 {
    return ((b * SEQ + t) * KV_HEADS + g) * HEAD_DIM;
}

// The indices of the four elements of vec4 `c` of the head row at `o`, clamped to the row;
// `in_row` says which of them are real (the padding is zero).
fn lanes4(o: u32, c: u32) -> vec4<u32> {
    return vec4<u32>(o) + min(vec4<u32>(4u * c) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(HEAD_DIM - 1u));
}

fn in_row(c: u32) -> vec4<bool> {
    return vec4<u32>(4u * c) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(HEAD_DIM);
}

fn scale() -> f32 {
    return 1.0 / sqrt(f32(HEAD_DIM));
}

fn group() -> u32 {
    return HEADS / KV_HEADS;
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The (b, g, query block) of a forward / bwd_q workgroup: uniform across the workgroup (it
// depends on the workgroup id alone), so the tile loops and their barriers are too.
struct QueryBlock {
    b: u32,
    g: u32,
    first: u32,
    last: u32,
}

fn query_block(w: u32) -> QueryBlock {
    let blocks = (SEQ + Q_BLOCK - 1u) / Q_BLOCK;
    var blk: QueryBlock;
    blk.g = (w / blocks) % KV_HEADS;
    blk.b = w / (blocks * KV_HEADS);
    blk.first = (w % blocks) * Q_BLOCK;
    blk.last = min(SEQ, blk.first + Q_BLOCK) - 1u;
    return blk;
}

// Invocation `lid`'s query head and position; `live` is false past the group or the sequence.
struct QueryLane {
    h: u32,
    t: u32,
    live: bool,
}

fn query_lane(blk: QueryBlock, lid: u32) -> QueryLane {
    var lane: QueryLane;
    let head_in_group = lid / Q_BLOCK;
    lane.t = blk.first + lid % Q_BLOCK;
    lane.h = blk.g * group() + head_in_group;
    lane.live = head_in_group < group() && lane.t < SEQ;
    return lane;
}

// The keys of the tile at `k0` (of `n`) at or before query `lane.t`.
fn keys_seen(lane: QueryLane, k0: u32, n: u32) -> u32 {
    if lane.live && lane.t >= k0 {
        return min(n, lane.t + 1u - k0);
    }
    return 0u;
}

// ---- forward ----
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> lse: array<f32>;
@group(0) @binding(2) var<storage, read> fq: array<f32>;
@group(0) @binding(3) var<storage, read> fk: array<f32>;
@group(0) @binding(4) var<storage, read> fv: array<f32>;

@compute @workgroup_size(64)
fn attention_fwd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let w = workgroup_index(wid, nwg);
    if w >= BATCH * KV_HEADS * ((SEQ + Q_BLOCK - 1u) / Q_BLOCK) {
        return;
    }
    let blk = query_block(w);
    let lane = query_lane(blk, lid);
    var qreg: array<vec4<f32>, MAX_D4>;
    var acc: array<vec4<f32>, MAX_D4>;
    var scores: array<f32, WG>;
    let qo = q_at(blk.b, lane.t, lane.h);
    if lane.live {
        for (var c = 0u; c < D4; c++) {
            let e = lanes4(qo, c);
            qreg[c] = select(vec4<f32>(), vec4<f32>(fq[e.x], fq[e.y], fq[e.z], fq[e.w]), in_row(c));
        }
    }
    var m = -3.0e38;
    var l = 0.0;
    for (var k0 = 0u; k0 <= blk.last; k0 += TILE) {
        let n = min(TILE, blk.last + 1u - k0);
        for (var i = lid; i < n * D4; i += WG) {
            let e = lanes4(kv_at(blk.b, k0 + i / D4, blk.g), i % D4);
            let real = in_row(i % D4);
            tile_a[i] = select(vec4<f32>(), vec4<f32>(fk[e.x], fk[e.y], fk[e.z], fk[e.w]), real);
            tile_b[i] = select(vec4<f32>(), vec4<f32>(fv[e.x], fv[e.y], fv[e.z], fv[e.w]), real);
        }
        workgroupBarrier();
        // Every invocation walks the whole tile (j is uniform, so each tile read is one read
        // for the workgroup); keys after the query are masked out of the max and the sums.
        let keys = keys_seen(lane, k0, n);
        var tile_max = m;
        for (var j = 0u; j < n; j++) {
            var dot4 = vec4<f32>();
            for (var c = 0u; c < D4; c++) {
                dot4 += qreg[c] * tile_a[j * D4 + c];
            }
            scores[j] = hsum(dot4) * scale();
            tile_max = select(tile_max, max(tile_max, scores[j]), j < keys);
        }
        let correction = exp(m - tile_max);
        l *= correction;
        for (var c = 0u; c < D4; c++) {
            acc[c] *= correction;
        }
        for (var j = 0u; j < n; j++) {
            let p = select(0.0, exp(scores[j] - tile_max), j < keys);
            l += p;
            for (var c = 0u; c < D4; c++) {
                acc[c] += p * tile_b[j * D4 + c];
            }
        }
        m = tile_max;
        workgroupBarrier();
    }
    if lane.live {
        lse[(blk.b * HEADS + lane.h) * SEQ + lane.t] = m + log(l);
        let inv = 1.0 / l;
        for (var d = 0u; d < HEAD_DIM; d++) {
            out[qo + d] = acc[d / 4u][d % 4u] * inv;
        }
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
fn attention_bwd_q(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let w = workgroup_index(wid, nwg);
    if w >= BATCH * KV_HEADS * ((SEQ + Q_BLOCK - 1u) / Q_BLOCK) {
        return;
    }
    let blk = query_block(w);
    let lane = query_lane(blk, lid);
    var qreg: array<vec4<f32>, MAX_D4>;
    var doreg: array<vec4<f32>, MAX_D4>;
    var acc: array<vec4<f32>, MAX_D4>;
    let qo = q_at(blk.b, lane.t, lane.h);
    let row = (blk.b * HEADS + lane.h) * SEQ + lane.t;
    var dlt = 0.0;
    var l = 0.0;
    if lane.live {
        var dlt4 = vec4<f32>();
        for (var c = 0u; c < D4; c++) {
            let e = lanes4(qo, c);
            let real = in_row(c);
            qreg[c] = select(vec4<f32>(), vec4<f32>(qq[e.x], qq[e.y], qq[e.z], qq[e.w]), real);
            doreg[c] = select(vec4<f32>(), vec4<f32>(qdout[e.x], qdout[e.y], qdout[e.z], qdout[e.w]), real);
            dlt4 += doreg[c] * select(vec4<f32>(), vec4<f32>(qout[e.x], qout[e.y], qout[e.z], qout[e.w]), real);
        }
        dlt = hsum(dlt4);
        delta[row] = dlt;
        l = qlse[row];
    }
    for (var k0 = 0u; k0 <= blk.last; k0 += TILE) {
        let n = min(TILE, blk.last + 1u - k0);
        for (var i = lid; i < n * D4; i += WG) {
            let e = lanes4(kv_at(blk.b, k0 + i / D4, blk.g), i % D4);
            let real = in_row(i % D4);
            tile_a[i] = select(vec4<f32>(), vec4<f32>(qk[e.x], qk[e.y], qk[e.z], qk[e.w]), real);
            tile_b[i] = select(vec4<f32>(), vec4<f32>(qv[e.x], qv[e.y], qv[e.z], qv[e.w]), real);
        }
        workgroupBarrier();
        // The whole tile for every invocation (uniform reads), keys after the query masked.
        let keys = keys_seen(lane, k0, n);
        for (var j = 0u; j < n; j++) {
            var qk4 = vec4<f32>();
            var dv4 = vec4<f32>();
            for (var c = 0u; c < D4; c++) {
                qk4 += qreg[c] * tile_a[j * D4 + c];
                dv4 += doreg[c] * tile_b[j * D4 + c];
            }
            let p = select(0.0, exp(hsum(qk4) * scale() - l), j < keys);
            let ds = p * (hsum(dv4) - dlt);
            for (var c = 0u; c < D4; c++) {
                acc[c] += ds * tile_a[j * D4 + c];
            }
        }
        workgroupBarrier();
    }
    if lane.live {
        for (var d = 0u; d < HEAD_DIM; d++) {
            dq[qo + d] += scale() * acc[d / 4u][d % 4u];
        }
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
fn attention_bwd_kv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let w = workgroup_index(wid, nwg);
    let blocks = (SEQ + WG - 1u) / WG;
    if w >= BATCH * KV_HEADS * blocks {
        return;
    }
    let g = (w / blocks) % KV_HEADS;
    let b = w / (blocks * KV_HEADS);
    let first = (w % blocks) * WG;
    let s = first + lid;
    let live = s < SEQ;
    let ko = kv_at(b, s, g);
    var kreg: array<vec4<f32>, MAX_D4>;
    var vreg: array<vec4<f32>, MAX_D4>;
    var acc_k: array<vec4<f32>, MAX_D4>;
    var acc_v: array<vec4<f32>, MAX_D4>;
    if live {
        for (var c = 0u; c < D4; c++) {
            let e = lanes4(ko, c);
            let real = in_row(c);
            kreg[c] = select(vec4<f32>(), vec4<f32>(kk[e.x], kk[e.y], kk[e.z], kk[e.w]), real);
            vreg[c] = select(vec4<f32>(), vec4<f32>(kv[e.x], kv[e.y], kv[e.z], kv[e.w]), real);
        }
    }
    for (var h = g * group(); h < (g + 1u) * group(); h++) {
        // Queries before the block's first key see none of its keys.
        for (var t0 = first; t0 < SEQ; t0 += TILE) {
            let n = min(TILE, SEQ - t0);
            for (var i = lid; i < n * D4; i += WG) {
                let e = lanes4(q_at(b, t0 + i / D4, h), i % D4);
                let real = in_row(i % D4);
                tile_a[i] = select(vec4<f32>(), vec4<f32>(kq[e.x], kq[e.y], kq[e.z], kq[e.w]), real);
                tile_b[i] = select(vec4<f32>(), vec4<f32>(kdout[e.x], kdout[e.y], kdout[e.z], kdout[e.w]), real);
            }
            if lid < n {
                let r = (b * HEADS + h) * SEQ + t0 + lid;
                row_a[lid] = klse[r];
                row_b[lid] = kdelta[r];
            }
            workgroupBarrier();
            // Software-pipelined by one query: the pass over the row that computes query i's
            // two dot products also adds query i - 1's terms (p, ds known by then), so each
            // causal pair costs one loop over the row, not two. Every invocation walks the
            // whole tile (uniform reads); queries before its key are masked.
            var p_prev = 0.0;
            var ds_prev = 0.0;
            for (var i = 0u; i < n; i++) {
                var qk4 = vec4<f32>();
                var dv4 = vec4<f32>();
                let prev = max(i, 1u) - 1u;
                for (var c = 0u; c < D4; c++) {
                    qk4 += tile_a[i * D4 + c] * kreg[c];
                    dv4 += tile_b[i * D4 + c] * vreg[c];
                    acc_v[c] += p_prev * tile_b[prev * D4 + c];
                    acc_k[c] += ds_prev * tile_a[prev * D4 + c];
                }
                p_prev = select(0.0, exp(hsum(qk4) * scale() - row_a[i]), live && t0 + i >= s);
                ds_prev = p_prev * (hsum(dv4) - row_b[i]);
            }
            for (var c = 0u; c < D4; c++) {
                acc_v[c] += p_prev * tile_b[(n - 1u) * D4 + c];
                acc_k[c] += ds_prev * tile_a[(n - 1u) * D4 + c];
            }
            workgroupBarrier();
        }
    }
    if live {
        for (var d = 0u; d < HEAD_DIM; d++) {
            dv[ko + d] += acc_v[d / 4u][d % 4u];
            dk[ko + d] += scale() * acc_k[d / 4u][d % 4u];
        }
    }
}
