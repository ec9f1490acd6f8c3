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
//     invocations being (head of the group, query) pairs, each owning ROWS queries of its head
//     (register blocking: every staged value read serves ROWS queries), Q_BLOCK = ROWS (64 /
//     GROUP): the group's heads share every K/V tile, which is loaded once for them all.
//     Tiles of TILE keys run from key 0 to the block's last query; later keys are never
//     loaded (the causal skip).
//   attention_bwd_kv: one workgroup per (b, g, block of 64 ROWS keys), each invocation owning
//     ROWS keys; for each head of the group, tiles of TILE queries (q, dout) from the block's
//     first key to the end. Each output row has a single owner: no atomics.
//   Tiles are staged transposed in chunks of 4 rows (see chunk_entry) and walked in steps of
//   8 rows; a step's scores stay in registers, and each vec4 of a row's accumulator is read
//   and written once per step.
//   ROWS and TILE are set by the host (src/plan/defs/attention.rs): ROWS = 1 on GPUs (a row
//   and its accumulator already take ~128 registers at head_dim 64), 4 on CPU adapters
//   (llvmpipe runs a workgroup-memory read lane by lane, ~40 instructions per lane and vec4,
//   so reuse per read is what counts there). TILE = min(64, TILE_VEC4 / D4), a multiple of 8.
// entry points: this file holds the kernels' bodies (forward, backward_q, backward_kv); the
//   entry points, and the reads of a step's staged entries that differ by adapter kind, are
//   in an entry file appended to it (src/kernels.rs): common/attention_uniform.wgsl for GPUs
//   (attention_fwd, attention_bwd_q, attention_bwd_kv), common/attention_subgroup.wgsl for CPU
//   adapters with subgroups of at least 8 (the same names with _subgroup: each of 8 lanes
//   reads one entry and broadcasts it). Both compute the same values.
// Rows are read as vec4s (D4 = ceil(HEAD_DIM / 4), zero-padded). Loop trips per invocation
// stay far below lavapipe's 65,535 (llvmpipe silently ends every loop of an invocation past
// that): about 2 D4 + 1 per step of 8 rows. HEAD_DIM <= 128 and ROWS D4 <= MAX_RD4 (the
// per-invocation rows are private arrays); 16 KiB of workgroup memory (two staged matrices
// of TILE_VEC4 vec4s).
// CPU reference: src/ops/attention.rs (attention_fwd, attention_bwd_q, attention_bwd_kv).

override BATCH: u32;
override SEQ: u32;
override HEADS: u32;
override KV_HEADS: u32;
override HEAD_DIM: u32;
// Rows per invocation: queries in the forward and bwd_q, keys in bwd_kv (1 to MAX_ROWS).
override ROWS: u32 = 1u;
// Queries per forward / bwd_q workgroup (ROWS (64 / GROUP)) and rows per staged tile (a
// multiple of 8).
override Q_BLOCK: u32;
override TILE: u32;
// A head row as vec4s: the last one zero-padded when HEAD_DIM is not a multiple of 4.
override D4: u32 = (HEAD_DIM + 3u) / 4u;

const WG: u32 = 64u;
const MAX_D4: u32 = 32u;
const MAX_ROWS: u32 = 4u;
const MAX_RD4: u32 = MAX_ROWS * MAX_D4;
const TILE_VEC4: u32 = 512u;

var<workgroup> tile_a: array<vec4<f32>, TILE_VEC4>;
var<workgroup> tile_b: array<vec4<f32>, TILE_VEC4>;

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

// The built-ins every entry point takes (the entry points are in the files named above).
struct WorkgroupIds {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
}

fn workgroup_index(ids: WorkgroupIds) -> u32 {
    return ids.wid.x + ids.wid.y * ids.nwg.x;
}

// A staged tile of `n` rows is padded with zero rows to a multiple of 8 (a step).
fn padded(n: u32) -> u32 {
    return (n + 7u) / 8u * 8u;
}

fn query_blocks() -> u32 {
    return (SEQ + Q_BLOCK - 1u) / Q_BLOCK;
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
    var blk: QueryBlock;
    blk.g = (w / query_blocks()) % KV_HEADS;
    blk.b = w / (query_blocks() * KV_HEADS);
    blk.first = (w % query_blocks()) * Q_BLOCK;
    blk.last = min(SEQ, blk.first + Q_BLOCK) - 1u;
    return blk;
}

// Invocation `lid`'s query head and first query: its row r is query t + r (Q_BLOCK / ROWS),
// so consecutive invocations read consecutive rows. `live` is false past the group.
struct QueryLane {
    h: u32,
    t: u32,
    live: bool,
}

fn query_lane(blk: QueryBlock, lid: u32) -> QueryLane {
    var lane: QueryLane;
    let per_head = Q_BLOCK / ROWS;
    let head_in_group = lid / per_head;
    lane.t = blk.first + lid % per_head;
    lane.h = blk.g * group() + head_in_group;
    lane.live = head_in_group < group();
    return lane;
}

fn row_t(lane: QueryLane, r: u32) -> u32 {
    return lane.t + r * (Q_BLOCK / ROWS);
}

fn row_live(lane: QueryLane, r: u32) -> bool {
    return lane.live && row_t(lane, r) < SEQ;
}

// Which of keys key0 .. key0 + 3 the query of row r sees (the causal mask).
fn chunk_seen(lane: QueryLane, r: u32, key0: u32) -> vec4<bool> {
    let keys = vec4<u32>(key0) + vec4<u32>(0u, 1u, 2u, 3u);
    return (keys <= vec4<u32>(row_t(lane, r))) & vec4<bool>(row_live(lane, r));
}

// Staged tiles hold their rows in chunks of 4, transposed: entry (chunk, dim) of a tile is
// the vec4 of element `dim` of the chunk's four rows, so one read serves four rows and a
// query row's vec4 c pairs with the chunk's entries 4c .. 4c + 3. Rows past `n` and dims past
// HEAD_DIM are zero.
fn chunk_entry(chunk: u32, dim: u32) -> u32 {
    return chunk * 4u * D4 + dim;
}

// Staging entry i of a tile of `n` rows starting at row `row0`: the four rows (clamped into
// the tile), the dim (clamped into the head) and which of the four values are real.
struct StagedEntry {
    rows: vec4<u32>,
    dim: u32,
    real: vec4<bool>,
}

fn staged_entry(i: u32, row0: u32, n: u32) -> StagedEntry {
    var e: StagedEntry;
    let chunk = i / (4u * D4);
    let dim = i % (4u * D4);
    let rows = vec4<u32>(4u * chunk) + vec4<u32>(0u, 1u, 2u, 3u);
    e.real = (rows < vec4<u32>(n)) & vec4<bool>(dim < HEAD_DIM);
    e.rows = vec4<u32>(row0) + min(rows, vec4<u32>(n - 1u));
    e.dim = min(dim, HEAD_DIM - 1u);
    return e;
}

// The element indices of a staged entry's four K / V rows, and four q / dout rows of head h.
fn kv_rows4(b: u32, e: StagedEntry, g: u32) -> vec4<u32> {
    return ((vec4<u32>(b * SEQ) + e.rows) * KV_HEADS + vec4<u32>(g)) * HEAD_DIM + vec4<u32>(e.dim);
}

fn q_rows4(b: u32, e: StagedEntry, h: u32) -> vec4<u32> {
    return ((vec4<u32>(b * SEQ) + e.rows) * HEADS + vec4<u32>(h)) * HEAD_DIM + vec4<u32>(e.dim);
}

// Entries 4c .. 4c + 3 of a staged chunk as the columns of a matrix M: M x is the vec4 of
// the dot products of the chunk's four rows with x over dims 4c .. 4c + 3, and w M the vec4
// of those dims of the rows' combination with weights w. A step's two chunks lo and lo + 1
// are read together, by `staged_a` / `staged_b` (tile_a / tile_b) of the entry points' file:
// common/attention_uniform.wgsl reads them straight from workgroup memory (GPUs: a read at
// one address for every invocation is a broadcast), common/attention_subgroup.wgsl has each
// of 8 subgroup lanes read one of the 8 entries and broadcasts them (llvmpipe: every
// workgroup-memory read is a loop over the lanes, so 8 reads become 1).
struct ChunkPair {
    lo: mat4x4<f32>,
    hi: mat4x4<f32>,
}

// The entry of staged chunk lo + (i / 4) with dim 4c + i % 4, i = 0 .. 7: the step's 8
// entries for vec4 c of a row.
fn pair_entry(lo: u32, c: u32, i: u32) -> u32 {
    return chunk_entry(lo + i / 4u, 4u * c + i % 4u);
}

// A step's dot products for every row of an invocation: a_lo / a_hi[r] are the products of
// staged chunks lo and lo + 1 of tile_a with row r of `a_rows`, b_lo / b_hi[r] those of
// tile_b with `b_rows` (bwd_q: keys and values against q and dout; bwd_kv: queries and
// dout against k and v).
struct StepDots {
    a_lo: array<vec4<f32>, MAX_ROWS>,
    a_hi: array<vec4<f32>, MAX_ROWS>,
    b_lo: array<vec4<f32>, MAX_ROWS>,
    b_hi: array<vec4<f32>, MAX_ROWS>,
}

fn step_dots(
    lo: u32,
    sg_lane: u32,
    a_rows: ptr<function, array<vec4<f32>, MAX_RD4>>,
    b_rows: ptr<function, array<vec4<f32>, MAX_RD4>>,
) -> StepDots {
    var dots: StepDots;
    for (var c = 0u; c < D4; c++) {
        let a = staged_a(lo, c, sg_lane);
        let b = staged_b(lo, c, sg_lane);
        for (var r = 0u; r < ROWS; r++) {
            let x = (*a_rows)[r * D4 + c];
            let y = (*b_rows)[r * D4 + c];
            dots.a_lo[r] += a.lo * x;
            dots.a_hi[r] += a.hi * x;
            dots.b_lo[r] += b.lo * y;
            dots.b_hi[r] += b.hi * y;
        }
    }
    return dots;
}

// ---- forward ----
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> lse: array<f32>;
@group(0) @binding(2) var<storage, read> fq: array<f32>;
@group(0) @binding(3) var<storage, read> fk: array<f32>;
@group(0) @binding(4) var<storage, read> fv: array<f32>;

// Workgroup w's invocation lid (sg_lane: its subgroup lane mod 8, for the reads).
fn forward(w: u32, lid: u32, sg_lane: u32) {
    if w >= BATCH * KV_HEADS * query_blocks() {
        return;
    }
    let blk = query_block(w);
    let lane = query_lane(blk, lid);
    var qreg: array<vec4<f32>, MAX_RD4>;
    var acc: array<vec4<f32>, MAX_RD4>;
    var m: array<f32, MAX_ROWS>;
    var l: array<f32, MAX_ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        m[r] = -3.0e38;
        if row_live(lane, r) {
            let qo = q_at(blk.b, row_t(lane, r), lane.h);
            for (var c = 0u; c < D4; c++) {
                let e = lanes4(qo, c);
                qreg[r * D4 + c] = select(vec4<f32>(), vec4<f32>(fq[e.x], fq[e.y], fq[e.z], fq[e.w]), in_row(c));
            }
        }
    }
    for (var k0 = 0u; k0 <= blk.last; k0 += TILE) {
        let n = min(TILE, blk.last + 1u - k0);
        for (var i = lid; i < padded(n) * D4; i += WG) {
            let e = staged_entry(i, k0, n);
            let x = kv_rows4(blk.b, e, blk.g);
            tile_a[i] = select(vec4<f32>(), vec4<f32>(fk[x.x], fk[x.y], fk[x.z], fk[x.w]), e.real);
            tile_b[i] = select(vec4<f32>(), vec4<f32>(fv[x.x], fv[x.y], fv[x.z], fv[x.w]), e.real);
        }
        workgroupBarrier();
        // Steps of 8 keys, two chunks (uniform: each tile read is one read for the workgroup
        // and serves ROWS queries); keys after a query are masked.
        for (var j = 0u; j < n; j += 8u) {
            let lo = j / 4u;
            var s_lo: array<vec4<f32>, MAX_ROWS>;
            var s_hi: array<vec4<f32>, MAX_ROWS>;
            for (var c = 0u; c < D4; c++) {
                let k = staged_a(lo, c, sg_lane);
                for (var r = 0u; r < ROWS; r++) {
                    let q = qreg[r * D4 + c];
                    s_lo[r] += k.lo * q;
                    s_hi[r] += k.hi * q;
                }
            }
            // The online softmax: the accumulator is rescaled by exp(m_old - m_new) as the
            // step's values are added.
            var corrections: array<f32, MAX_ROWS>;
            for (var r = 0u; r < ROWS; r++) {
                let seen_lo = chunk_seen(lane, r, k0 + j);
                let seen_hi = chunk_seen(lane, r, k0 + j + 4u);
                let a = select(vec4<f32>(-3.0e38), s_lo[r] * scale(), seen_lo);
                let b = select(vec4<f32>(-3.0e38), s_hi[r] * scale(), seen_hi);
                let top = max(a, b);
                let new_max = max(m[r], max(max(top.x, top.y), max(top.z, top.w)));
                corrections[r] = exp(m[r] - new_max);
                m[r] = new_max;
                s_lo[r] = select(vec4<f32>(), exp(a - new_max), seen_lo);
                s_hi[r] = select(vec4<f32>(), exp(b - new_max), seen_hi);
                l[r] = l[r] * corrections[r] + hsum(s_lo[r] + s_hi[r]);
            }
            for (var c = 0u; c < D4; c++) {
                let v = staged_b(lo, c, sg_lane);
                for (var r = 0u; r < ROWS; r++) {
                    acc[r * D4 + c] = acc[r * D4 + c] * corrections[r] + s_lo[r] * v.lo + s_hi[r] * v.hi;
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < ROWS; r++) {
        if row_live(lane, r) {
            let t = row_t(lane, r);
            let qo = q_at(blk.b, t, lane.h);
            lse[(blk.b * HEADS + lane.h) * SEQ + t] = m[r] + log(l[r]);
            let inv = 1.0 / l[r];
            for (var d = 0u; d < HEAD_DIM; d++) {
                out[qo + d] = acc[r * D4 + d / 4u][d % 4u] * inv;
            }
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

fn backward_q(w: u32, lid: u32, sg_lane: u32) {
    if w >= BATCH * KV_HEADS * query_blocks() {
        return;
    }
    let blk = query_block(w);
    let lane = query_lane(blk, lid);
    var qreg: array<vec4<f32>, MAX_RD4>;
    var doreg: array<vec4<f32>, MAX_RD4>;
    var acc: array<vec4<f32>, MAX_RD4>;
    var dlt: array<f32, MAX_ROWS>;
    var l: array<f32, MAX_ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        if row_live(lane, r) {
            let t = row_t(lane, r);
            let qo = q_at(blk.b, t, lane.h);
            var dlt4 = vec4<f32>();
            for (var c = 0u; c < D4; c++) {
                let e = lanes4(qo, c);
                let real = in_row(c);
                qreg[r * D4 + c] = select(vec4<f32>(), vec4<f32>(qq[e.x], qq[e.y], qq[e.z], qq[e.w]), real);
                let d = select(vec4<f32>(), vec4<f32>(qdout[e.x], qdout[e.y], qdout[e.z], qdout[e.w]), real);
                doreg[r * D4 + c] = d;
                dlt4 += d * select(vec4<f32>(), vec4<f32>(qout[e.x], qout[e.y], qout[e.z], qout[e.w]), real);
            }
            let row = (blk.b * HEADS + lane.h) * SEQ + t;
            dlt[r] = hsum(dlt4);
            delta[row] = dlt[r];
            l[r] = qlse[row];
        }
    }
    for (var k0 = 0u; k0 <= blk.last; k0 += TILE) {
        let n = min(TILE, blk.last + 1u - k0);
        for (var i = lid; i < padded(n) * D4; i += WG) {
            let e = staged_entry(i, k0, n);
            let x = kv_rows4(blk.b, e, blk.g);
            tile_a[i] = select(vec4<f32>(), vec4<f32>(qk[x.x], qk[x.y], qk[x.z], qk[x.w]), e.real);
            tile_b[i] = select(vec4<f32>(), vec4<f32>(qv[x.x], qv[x.y], qv[x.z], qv[x.w]), e.real);
        }
        workgroupBarrier();
        // Steps of 8 keys (uniform reads, each serving ROWS queries), masked past the query.
        for (var j = 0u; j < n; j += 8u) {
            let lo = j / 4u;
            // q . k and dout . v; then ds = p (dout . v - delta), p = exp(s - lse).
            let dots = step_dots(lo, sg_lane, &qreg, &doreg);
            var ds_lo: array<vec4<f32>, MAX_ROWS>;
            var ds_hi: array<vec4<f32>, MAX_ROWS>;
            for (var r = 0u; r < ROWS; r++) {
                let p_lo = select(vec4<f32>(), exp(dots.a_lo[r] * scale() - l[r]), chunk_seen(lane, r, k0 + j));
                let p_hi = select(vec4<f32>(), exp(dots.a_hi[r] * scale() - l[r]), chunk_seen(lane, r, k0 + j + 4u));
                ds_lo[r] = p_lo * (dots.b_lo[r] - dlt[r]);
                ds_hi[r] = p_hi * (dots.b_hi[r] - dlt[r]);
            }
            for (var c = 0u; c < D4; c++) {
                let k = staged_a(lo, c, sg_lane);
                for (var r = 0u; r < ROWS; r++) {
                    acc[r * D4 + c] += ds_lo[r] * k.lo + ds_hi[r] * k.hi;
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < ROWS; r++) {
        if row_live(lane, r) {
            let qo = q_at(blk.b, row_t(lane, r), lane.h);
            for (var d = 0u; d < HEAD_DIM; d++) {
                dq[qo + d] += scale() * acc[r * D4 + d / 4u][d % 4u];
            }
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

// lse and delta of a step's 8 queries (clamped into the sequence; masked by the caller), as
// read by `step_stats` of the entry points' file.
struct StepStats {
    lse_lo: vec4<f32>,
    lse_hi: vec4<f32>,
    delta_lo: vec4<f32>,
    delta_hi: vec4<f32>,
}

// The lse / delta row of query t + i (clamped into the sequence) of head h.
fn stats_row(b: u32, h: u32, t: u32, i: u32) -> u32 {
    return (b * HEADS + h) * SEQ + min(t + i, SEQ - 1u);
}

fn backward_kv(w: u32, lid: u32, sg_lane: u32) {
    let keys_per_block = WG * ROWS;
    let blocks = (SEQ + keys_per_block - 1u) / keys_per_block;
    if w >= BATCH * KV_HEADS * blocks {
        return;
    }
    let g = (w / blocks) % KV_HEADS;
    let b = w / (blocks * KV_HEADS);
    let first = (w % blocks) * keys_per_block;
    // Row r of this invocation is key first + r WG + lid.
    var kreg: array<vec4<f32>, MAX_RD4>;
    var vreg: array<vec4<f32>, MAX_RD4>;
    var acc_k: array<vec4<f32>, MAX_RD4>;
    var acc_v: array<vec4<f32>, MAX_RD4>;
    var key: array<u32, MAX_ROWS>;
    var live: array<bool, MAX_ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        key[r] = first + r * WG + lid;
        live[r] = key[r] < SEQ;
        if live[r] {
            let ko = kv_at(b, key[r], g);
            for (var c = 0u; c < D4; c++) {
                let e = lanes4(ko, c);
                let real = in_row(c);
                kreg[r * D4 + c] = select(vec4<f32>(), vec4<f32>(kk[e.x], kk[e.y], kk[e.z], kk[e.w]), real);
                vreg[r * D4 + c] = select(vec4<f32>(), vec4<f32>(kv[e.x], kv[e.y], kv[e.z], kv[e.w]), real);
            }
        }
    }
    for (var h = g * group(); h < (g + 1u) * group(); h++) {
        // Queries before the block's first key see none of its keys.
        for (var t0 = first; t0 < SEQ; t0 += TILE) {
            let n = min(TILE, SEQ - t0);
            for (var i = lid; i < padded(n) * D4; i += WG) {
                let e = staged_entry(i, t0, n);
                let x = q_rows4(b, e, h);
                tile_a[i] = select(vec4<f32>(), vec4<f32>(kq[x.x], kq[x.y], kq[x.z], kq[x.w]), e.real);
                tile_b[i] = select(vec4<f32>(), vec4<f32>(kdout[x.x], kdout[x.y], kdout[x.z], kdout[x.w]), e.real);
            }
            workgroupBarrier();
            // Steps of 8 queries (uniform reads, each serving ROWS keys); queries before a
            // key, and past the sequence, are masked.
            for (var j = 0u; j < n; j += 8u) {
                let lo = j / 4u;
                // k . q and v . dout; then p = exp(s - lse) and ds = p (v . dout - delta).
                let dots = step_dots(lo, sg_lane, &kreg, &vreg);
                var p_lo: array<vec4<f32>, MAX_ROWS>;
                var p_hi: array<vec4<f32>, MAX_ROWS>;
                var ds_lo: array<vec4<f32>, MAX_ROWS>;
                var ds_hi: array<vec4<f32>, MAX_ROWS>;
                let t_lo = vec4<u32>(t0 + j) + vec4<u32>(0u, 1u, 2u, 3u);
                let t_hi = t_lo + vec4<u32>(4u);
                let stats = step_stats(b, h, t0 + j, sg_lane);
                for (var r = 0u; r < ROWS; r++) {
                    let seen_lo = (t_lo >= vec4<u32>(key[r])) & (t_lo < vec4<u32>(SEQ)) & vec4<bool>(live[r]);
                    let seen_hi = (t_hi >= vec4<u32>(key[r])) & (t_hi < vec4<u32>(SEQ)) & vec4<bool>(live[r]);
                    p_lo[r] = select(vec4<f32>(), exp(dots.a_lo[r] * scale() - stats.lse_lo), seen_lo);
                    p_hi[r] = select(vec4<f32>(), exp(dots.a_hi[r] * scale() - stats.lse_hi), seen_hi);
                    ds_lo[r] = p_lo[r] * (dots.b_lo[r] - stats.delta_lo);
                    ds_hi[r] = p_hi[r] * (dots.b_hi[r] - stats.delta_hi);
                }
                for (var c = 0u; c < D4; c++) {
                    let q = staged_a(lo, c, sg_lane);
                    let d = staged_b(lo, c, sg_lane);
                    for (var r = 0u; r < ROWS; r++) {
                        acc_v[r * D4 + c] += p_lo[r] * d.lo + p_hi[r] * d.hi;
                        acc_k[r * D4 + c] += ds_lo[r] * q.lo + ds_hi[r] * q.hi;
                    }
                }
            }
            workgroupBarrier();
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        if live[r] {
            let ko = kv_at(b, key[r], g);
            for (var d = 0u; d < HEAD_DIM; d++) {
                dv[ko + d] += acc_v[r * D4 + d / 4u][d % 4u];
                dk[ko + d] += scale() * acc_k[r * D4 + d / 4u][d % 4u];
            }
        }
    }
}
