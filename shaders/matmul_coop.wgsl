// Cooperative-matrix (tensor core) matrix product in the three layouts training needs:
// f16 operands, f32 accumulation, row-major f32 buffers.
//
// c[M,N] (= or +=) opA(a) . opB(b), the formula and layouts of matmul.wgsl:
//   TRANS_A = false: a is [M,K]; true: a is [K,M] (the weight-gradient layout, C = A^T B)
//   TRANS_B = false: b is [K,N]; true: b is [N,K] (the linear-forward layout, C = A B^T)
//   ACCUMULATE = true adds to c (gradients), false overwrites it.
// The buffers stay f32: each BK-deep slice of a and b is read from memory, rounded to f16 and
//   staged in workgroup memory, zero outside the matrices (so ragged M, N and K need no case
//   of their own in the product); products accumulate in f32 cooperative matrices. Values
//   beyond f16's range (65504) become infinities.
// A_EXP (a power-of-two exponent, 0 by default): a is staged as ldexp(a, A_EXP) and every
//   product stored as ldexp(product, -A_EXP), exact in f32. The backward sets it for the
//   gradient operands, which carry the loss's 1/tokens factor (1.3e-6 at the record's
//   786,432 tokens per step, below f16's smallest normal 6.1e-5): staged near 1 they keep
//   f16's precision instead of flushing to zero. A cooperative matrix cannot be scaled, so
//   with A_EXP != 0 every tile takes the scratch path below, where the scaling is scalar.
// Entry points: matmul_coop16 (coop_mat16x16, needs TILE = 16) and matmul_coop8 (coop_mat8x8,
//   needs TILE = 8). The kernel body below is written once against the tile types TileA,
//   TileB, TileC and the tile edge T; common/coop_tile16.wgsl and common/coop_tile8.wgsl each
//   supply those (a matrix type cannot depend on an override) and their entry point, and
//   src/kernels.rs builds one module per tile from this file and one of them, so a device is
//   only shown the matrix type it reported (src/gpu/coop.rs checks the adapter's list).
// dispatch: 1-D workgroups of SG_M x SG_N subgroups of SG_SIZE invocations each (SG_SIZE must
//   be the adapter's one subgroup size, so that there are exactly SG_M * SG_N subgroups).
//   Subgroup s owns a SUB_M x SUB_N block of TILE x TILE output tiles at block row s / SG_N,
//   block column s % SG_N, so a workgroup covers BM = SG_M*SUB_M*TILE rows by
//   BN = SG_N*SUB_N*TILE columns of c: grid (ceil(N/BN), ceil(M/BM), 1).
// Split-K (the first stage of a split product, src/plan/defs/matmul.rs's MatmulPartial; called
//   with ACCUMULATE = false): grid z = split s sums k in [s K_SPLIT, min(K, (s+1) K_SPLIT)) into
//   slice s of c, the partial buffer [SPLITS, M, N]. K_SPLIT = K (the default) is the plain
//   product.
// K loop: two staging buffers; slice k+1 is read into registers while slice k is multiplied,
//   then written to the other buffer: one barrier per slice.
// Stores: a workgroup whose whole tile lies inside c (and N % 4 == 0, for the 16-byte row
//   alignment coopStore needs, and A_EXP == 0) stores its accumulators straight to c, after
//   loading them from c when accumulating. An edge workgroup goes tile by tile through a per-subgroup f32 scratch
//   tile in workgroup memory with guarded scalar stores (coopStore cannot be masked).
// Control flow around every cooperative op is uniform: it branches only on override
//   constants and on the workgroup id.
// CPU reference: src/ops/matmul.rs (matmul).

enable f16;
enable wgpu_cooperative_matrix;

override M: u32;
override N: u32;
override K: u32;
override TRANS_A: bool;
override TRANS_B: bool;
override ACCUMULATE: bool;
// a is staged times 2^A_EXP and the product stored times 2^-A_EXP (see above).
override A_EXP: i32 = 0;
override K_SPLIT: u32 = K;
// Cooperative tile edge: 16 for matmul_coop16, 8 for matmul_coop8.
override TILE: u32;
// Invocations per subgroup on the adapter.
override SG_SIZE: u32;
// Subgroup grid of a workgroup, and the depth of one staged K slice (a multiple of TILE).
override SG_M: u32 = 2u;
override SG_N: u32 = 4u;
override BK: u32 = 32u;

// Output tiles per subgroup (the accumulators c00..c31 below).
const SUB_M: u32 = 4u;
const SUB_N: u32 = 2u;
// Staged rows are padded by 8 halves (16 bytes): aligned for coopLoad, fewer bank conflicts.
const PAD: u32 = 8u;
// Most staged elements one invocation carries in registers per operand and slice.
const MAX_PER: u32 = 32u;

override SUBGROUPS: u32 = SG_M * SG_N;
override THREADS: u32 = SUBGROUPS * SG_SIZE;
override BM: u32 = SG_M * SUB_M * TILE;
override BN: u32 = SG_N * SUB_N * TILE;
// A slice is staged as it lies in memory: [BM][BK] (row stride LDA = BK + PAD), or [BK][BM]
// when TRANS_A (LDA = BM + PAD); B as [BK][BN] (LDB = BN + PAD), or [BN][BK] when TRANS_B.
override LDA: u32 = select(BK, BM, TRANS_A) + PAD;
override LDB: u32 = select(BN, BK, TRANS_B) + PAD;
override A_STAGE: u32 = select(BM, BK, TRANS_A) * LDA;
override B_STAGE: u32 = select(BK, BN, TRANS_B) * LDB;
override A_LEN: u32 = 2u * A_STAGE;
override B_LEN: u32 = 2u * B_STAGE;
override SCRATCH_LEN: u32 = SUBGROUPS * TILE * TILE;
override A_PER: u32 = (BM * BK + THREADS - 1u) / THREADS;
override B_PER: u32 = (BN * BK + THREADS - 1u) / THREADS;
// Row stride of c in the direct loads and stores, which only run when N % 4 == 0 (a stand-in
// multiple of 4 otherwise, so that no cooperative access is ever compiled misaligned).
override LDC: u32 = select(16u, N, N % 4u == 0u);

@group(0) @binding(0) var<storage, read_write> c: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

var<workgroup> stage_a: array<f16, A_LEN>;
var<workgroup> stage_b: array<f16, B_LEN>;
var<workgroup> scratch: array<f32, SCRATCH_LEN>;
// This workgroup's split: the end of its K range, and where its slice of c starts.
var<private> k_end: u32;
var<private> c_base: u32;

// ---- staging (no cooperative types) ----

// Element e of the A slice whose first k is k0 (0 outside a). Consecutive e are consecutive
// in memory, so consecutive invocations read coalesced.
fn a_value(e: u32, row0: u32, k0: u32) -> f32 {
    var i: u32;
    var p: u32;
    if TRANS_A {
        p = k0 + e / BM;
        i = row0 + e % BM;
    } else {
        i = row0 + e / BK;
        p = k0 + e % BK;
    }
    if i >= M || p >= k_end {
        return 0.0;
    }
    if TRANS_A {
        return a[p * M + i];
    }
    return a[i * K + p];
}

// Element e of the B slice whose first k is k0 (0 outside b).
fn b_value(e: u32, col0: u32, k0: u32) -> f32 {
    var j: u32;
    var p: u32;
    if TRANS_B {
        j = col0 + e / BK;
        p = k0 + e % BK;
    } else {
        p = k0 + e / BN;
        j = col0 + e % BN;
    }
    if j >= N || p >= k_end {
        return 0.0;
    }
    if TRANS_B {
        return b[j * K + p];
    }
    return b[p * N + j];
}

// Where element e of a slice goes in its staging buffer.
fn a_slot(e: u32) -> u32 {
    let cols = select(BK, BM, TRANS_A);
    return (e / cols) * LDA + e % cols;
}

fn b_slot(e: u32) -> u32 {
    let cols = select(BN, BK, TRANS_B);
    return (e / cols) * LDB + e % cols;
}

// Reads this invocation's share of the slice at k0 into registers.
fn fetch(ra: ptr<function, array<f32, MAX_PER>>, rb: ptr<function, array<f32, MAX_PER>>, lid: u32, row0: u32, col0: u32, k0: u32) {
    for (var i = 0u; i < A_PER; i++) {
        (*ra)[i] = a_value(lid + i * THREADS, row0, k0);
    }
    for (var i = 0u; i < B_PER; i++) {
        (*rb)[i] = b_value(lid + i * THREADS, col0, k0);
    }
}

// Writes the registers, rounded to f16, into staging buffer `buf` (0 or 1).
fn put(ra: ptr<function, array<f32, MAX_PER>>, rb: ptr<function, array<f32, MAX_PER>>, lid: u32, buf: u32) {
    for (var i = 0u; i < A_PER; i++) {
        let e = lid + i * THREADS;
        if e < BM * BK {
            stage_a[buf * A_STAGE + a_slot(e)] = f16(ldexp((*ra)[i], A_EXP));
        }
    }
    for (var i = 0u; i < B_PER; i++) {
        let e = lid + i * THREADS;
        if e < BN * BK {
            stage_b[buf * B_STAGE + b_slot(e)] = f16((*rb)[i]);
        }
    }
}

// Whether this workgroup's whole output tile lies inside c, rows are 16-byte aligned and the
// products need no scaling back: then accumulators load from and store to c directly.
// Uniform (workgroup id, overrides).
fn inside(row0: u32, col0: u32) -> bool {
    return row0 + BM <= M && col0 + BN <= N && N % 4u == 0u && A_EXP == 0;
}

// Guarded copy of this subgroup's scratch tile (rows r0.., columns c0.. of c) into c, scaled
// back by 2^-A_EXP.
fn drain(slot: u32, r0: u32, c0: u32, lane: u32, sg_size: u32) {
    for (var e = lane; e < TILE * TILE; e += sg_size) {
        let r = r0 + e / TILE;
        let col = c0 + e % TILE;
        if r < M && col < N {
            let v = ldexp(scratch[slot + e], -A_EXP);
            if ACCUMULATE {
                c[c_base + r * N + col] += v;
            } else {
                c[c_base + r * N + col] = v;
            }
        }
    }
}

// ---- the kernel body, for both tile sizes ----

// A fragment: rows m.. of the workgroup tile, columns k.. of the slice in buffer base.
fn a_tile(base: u32, m: u32, k: u32) -> TileA {
    if TRANS_A {
        return coopLoad<TileA>(&stage_a[base + k * LDA + m], LDA);
    }
    return coopLoadT<TileA>(&stage_a[base + m * LDA + k], LDA);
}

// B fragment: rows k.. of the slice, columns n.. of the workgroup tile.
fn b_tile(base: u32, n: u32, k: u32) -> TileB {
    if TRANS_B {
        return coopLoad<TileB>(&stage_b[base + n * LDB + k], LDB);
    }
    return coopLoadT<TileB>(&stage_b[base + k * LDB + n], LDB);
}

fn load_c(r: u32, col: u32) -> TileC {
    return coopLoadT<TileC>(&c[c_base + r * LDC + col], LDC);
}

// Edge store of one tile: through the subgroup's scratch tile, then guarded.
fn spill(acc: TileC, slot: u32, r0: u32, c0: u32, lane: u32, sg_size: u32) {
    coopStoreT(acc, &scratch[slot], TILE);
    workgroupBarrier();
    drain(slot, r0, c0, lane, sg_size);
    workgroupBarrier();
}

// The built-ins an entry point passes to the body.
struct CoopIds {
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
}

fn matmul_coop(ids: CoopIds) {
    let wg = ids.wg;
    let lid = ids.lid;
    let lane = ids.lane;
    let sg_size = ids.sg_size;
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let sg = min(ids.sg_id, SUBGROUPS - 1u);
    // This subgroup's block, relative to the workgroup tile and absolute.
    let bm = (sg / SG_N) * (SUB_M * T);
    let bn = (sg % SG_N) * (SUB_N * T);
    let r = row0 + bm;
    let q = col0 + bn;
    let direct = inside(row0, col0);
    // The split's range; the loop bound is computed here, where it is visibly uniform.
    let k_begin = wg.z * K_SPLIT;
    let k_stop = min(K, k_begin + K_SPLIT);
    k_end = k_stop;
    c_base = wg.z * M * N;

    var c00 = TileC();
    var c01 = TileC();
    var c10 = TileC();
    var c11 = TileC();
    var c20 = TileC();
    var c21 = TileC();
    var c30 = TileC();
    var c31 = TileC();
    if ACCUMULATE && direct {
        c00 = load_c(r, q);
        c01 = load_c(r, q + T);
        c10 = load_c(r + T, q);
        c11 = load_c(r + T, q + T);
        c20 = load_c(r + 2u * T, q);
        c21 = load_c(r + 2u * T, q + T);
        c30 = load_c(r + 3u * T, q);
        c31 = load_c(r + 3u * T, q + T);
    }

    var ra: array<f32, MAX_PER>;
    var rb: array<f32, MAX_PER>;
    let slices = (k_stop - k_begin + BK - 1u) / BK;
    fetch(&ra, &rb, lid, row0, col0, k_begin);
    put(&ra, &rb, lid, 0u);
    workgroupBarrier();
    for (var s = 0u; s < slices; s++) {
        let cur = s % 2u;
        let more = s + 1u < slices;
        if more {
            fetch(&ra, &rb, lid, row0, col0, k_begin + (s + 1u) * BK);
        }
        let abase = cur * A_STAGE;
        let bbase = cur * B_STAGE;
        for (var k = 0u; k < BK; k += T) {
            let a0 = a_tile(abase, bm, k);
            let a1 = a_tile(abase, bm + T, k);
            let a2 = a_tile(abase, bm + 2u * T, k);
            let a3 = a_tile(abase, bm + 3u * T, k);
            let b0 = b_tile(bbase, bn, k);
            let b1 = b_tile(bbase, bn + T, k);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
        }
        if more {
            put(&ra, &rb, lid, 1u - cur);
        }
        workgroupBarrier();
    }

    if direct {
        coopStoreT(c00, &c[c_base + r * LDC + q], LDC);
        coopStoreT(c01, &c[c_base + r * LDC + q + T], LDC);
        coopStoreT(c10, &c[c_base + (r + T) * LDC + q], LDC);
        coopStoreT(c11, &c[c_base + (r + T) * LDC + q + T], LDC);
        coopStoreT(c20, &c[c_base + (r + 2u * T) * LDC + q], LDC);
        coopStoreT(c21, &c[c_base + (r + 2u * T) * LDC + q + T], LDC);
        coopStoreT(c30, &c[c_base + (r + 3u * T) * LDC + q], LDC);
        coopStoreT(c31, &c[c_base + (r + 3u * T) * LDC + q + T], LDC);
    } else {
        let slot = sg * T * T;
        spill(c00, slot, r, q, lane, sg_size);
        spill(c01, slot, r, q + T, lane, sg_size);
        spill(c10, slot, r + T, q, lane, sg_size);
        spill(c11, slot, r + T, q + T, lane, sg_size);
        spill(c20, slot, r + 2u * T, q, lane, sg_size);
        spill(c21, slot, r + 2u * T, q + T, lane, sg_size);
        spill(c30, slot, r + 3u * T, q, lane, sg_size);
        spill(c31, slot, r + 3u * T, q + T, lane, sg_size);
    }
}
