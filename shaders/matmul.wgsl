// Tiled f32 matrix product in the three layouts training needs (row-major storage), staged
// through workgroup memory, with optional batching, scaling and split-K.
//
// c[M,N] (= or +=) ALPHA opA(a) . opB(b), summing over K in order:
//   TRANS_A = false: a is [M,K]; true: a is [K,M] (the weight-gradient layout, C = A^T B)
//   TRANS_B = false: b is [K,N]; true: b is [N,K] (the linear-forward layout, C = A B^T)
//   ACCUMULATE = true adds to c (gradients), false overwrites it.
// Batched and scaled (Muon's Newton-Schulz iterations): BATCH products, each operand strided
//   by its matrix size (a: M*K, b: K*N, c: M*N). The defaults (BATCH = 1, ALPHA = 1.0) are the
//   plain product: scaling by 1.0 is exact.
// Split-K (SPLITS > 1, the weight gradients): matrix z of the batch is cut along K into
//   SPLITS ranges of K_SPLIT (the last one ragged); c is then the partial buffer
//   [BATCH, SPLITS, M, N], slice (z, s) = the sum over k in [s K_SPLIT, min(K, (s+1) K_SPLIT))
//   in order (called with ACCUMULATE = false, ALPHA = 1); matmul_split_sum.wgsl adds the
//   slices in split order.
// dispatch: workgroups of WG_N x WG_M invocations, each computing a 4 SUB x 4 SUB block of c
//   held in registers (SUB = 1 on GPUs; 2 on CPU adapters, where each workgroup-memory read
//   runs lane by lane and so should serve more multiply-adds), so one workgroup covers a
//   BM x BN = 4 SUB WG_M x 4 SUB WG_N tile:
//   grid (ceil(N/BN), ceil(M/BM), BATCH * SPLITS), z = batch index * SPLITS + split.
//   Per BK-deep slice of k, the workgroup stages op(a)'s BM x BK and op(b)'s BK x BN block in
//   workgroup memory (each element loaded from memory once per workgroup tile, consecutive
//   invocations reading consecutive addresses in either layout), then every invocation runs
//   BK steps of SUB vec4s of a and SUB of b from workgroup memory and 16 SUB^2 multiply-adds.
//   Loads clamp their indices into the matrices (so every load is in range and issued); k
//   beyond the split's range contributes zero; rows and columns beyond M, N are computed
//   from clamped values and never stored.
//   Tile sizes come from the override constants; src/plan/defs/matmul.rs picks them per shape
//   (`tile_edge`; `tiling_for` on CPU adapters) and sets SPLITS / K_SPLIT (`split_k`). The per-invocation loops run
//   about (A_PER + B_PER + BK) times per slice: split-K also keeps them under llvmpipe's
//   65,535-iteration limit.
// entry points: this file holds the kernel's body (matmul_at, block_products); the entry
//   point and its slice_products (the BK steps over a staged slice) are in an entry file
//   appended to it (src/kernels.rs): common/matmul_uniform.wgsl (matmul: every read from
//   workgroup memory) on GPUs, and on CPU adapters for tiles narrower than 8 invocations;
//   common/matmul_subgroup.wgsl (matmul_subgroup, needs subgroups of exactly 8: a row of 8
//   invocations is one subgroup, whose lanes read 8 steps' op(a) vec4s at once and
//   broadcast them) on CPU adapters otherwise. Both compute the same values.
// CPU reference: src/ops/matmul.rs (matmul, matmul_batched, matmul_partial).

override M: u32;
override N: u32;
override K: u32;
override TRANS_A: bool;
override TRANS_B: bool;
override ACCUMULATE: bool;
override BATCH: u32 = 1u;
override ALPHA: f32 = 1.0;
override SPLITS: u32 = 1u;
override K_SPLIT: u32 = K;
// Invocations per workgroup along M and N, and the slice depth. SUB BK must be a multiple of
// WG_M and of WG_N (each invocation stages a whole number of vec4s of each operand).
override WG_M: u32 = 8u;
override WG_N: u32 = 8u;
override BK: u32 = 16u;
// Register blocking: each invocation computes a 4 SUB x 4 SUB block of c (SUB = 1 or 2).
override SUB: u32 = 1u;

override BM: u32 = 4u * SUB * WG_M;
override BN: u32 = 4u * SUB * WG_N;
override THREADS: u32 = WG_M * WG_N;
override A_PER: u32 = BM * BK / THREADS;
override B_PER: u32 = BN * BK / THREADS;

@group(0) @binding(0) var<storage, read_write> c: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

// Staged slices, k-major: tile_a[p * WG_M SUB + r] holds op(a) rows 4r..4r+3 of the tile at
// k p, tile_b[p * WG_N SUB + q] op(b) columns 4q..4q+3; so each step reads SUB vec4s of each.
var<workgroup> tile_a: array<vec4<f32>, BK * WG_M * SUB>;
var<workgroup> tile_b: array<vec4<f32>, BK * WG_N * SUB>;
const MAX_SUB: u32 = 2u;

// The built-ins every entry point takes (the entry points are in the files named above).
struct MatmulIds {
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
}

// c += op(a) op(b) of staged k p for one invocation's block, given its SUB vec4s of op(a)
// (rows 4 sa .. 4 sa + 3 of the block, sa < SUB): reads its SUB vec4s of op(b) (columns of
// block x) and does the 16 SUB^2 multiply-adds.
fn block_products(acc: ptr<function, array<vec4<f32>, 16>>, av: array<vec4<f32>, MAX_SUB>, p: u32, x: u32) {
    var bv: array<vec4<f32>, MAX_SUB>;
    for (var q = 0u; q < SUB; q++) {
        bv[q] = tile_b[(p * WG_N + x) * SUB + q];
    }
    for (var sa = 0u; sa < SUB; sa++) {
        for (var sb = 0u; sb < SUB; sb++) {
            (*acc)[(sa * 4u) * MAX_SUB + sb] += av[sa].x * bv[sb];
            (*acc)[(sa * 4u + 1u) * MAX_SUB + sb] += av[sa].y * bv[sb];
            (*acc)[(sa * 4u + 2u) * MAX_SUB + sb] += av[sa].z * bv[sb];
            (*acc)[(sa * 4u + 3u) * MAX_SUB + sb] += av[sa].w * bv[sb];
        }
    }
}

// Workgroup ids.wg's invocation (x, y) of the WG_N x WG_M grid (its block of c: rows
// 4 SUB y .., columns 4 SUB x .. of the tile); ids.li stages; sg_lane is its subgroup lane
// for slice_products.
fn matmul_at(ids: MatmulIds, x: u32, y: u32, sg_lane: u32) {
    let wg = ids.wg;
    let li = ids.li;
    let tile_row = wg.y * BM;
    let tile_col = wg.x * BN;
    let mat = wg.z / SPLITS;
    let k_begin = (wg.z % SPLITS) * K_SPLIT;
    let k_end = min(K, k_begin + K_SPLIT);
    let a0 = mat * M * K;
    let b0 = mat * K * N;
    // acc[(sa 4 + i) MAX_SUB + sb]: row 4 sa + i of the invocation's block, columns
    // 4 sb .. 4 sb + 3.
    var acc: array<vec4<f32>, 16>;
    let slices = (k_end - k_begin + BK - 1u) / BK;
    for (var s = 0u; s < slices; s++) {
        let kb = k_begin + s * BK;
        // Group g of each block is one staged vec4: four rows (columns of b) at one k.
        // Consecutive g step along the block's rows when TRANS_A, along k otherwise (likewise
        // for b), which is contiguous in memory, so the loads coalesce; each group is one
        // store to workgroup memory.
        for (var r = 0u; r < A_PER / 4u; r++) {
            let g = li + r * THREADS;
            let q = select(g / BK, g % (BM / 4u), TRANS_A);
            let p = select(g % BK, g / (BM / 4u), TRANS_A);
            let rows = min(vec4<u32>(tile_row + 4u * q) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(M - 1u));
            let kk = kb + p;
            let kc = min(kk, K - 1u);
            let x = vec4<u32>(a0) + select(rows * K + vec4<u32>(kc), vec4<u32>(kc * M) + rows, TRANS_A);
            tile_a[p * WG_M * SUB + q] = select(vec4<f32>(), vec4<f32>(a[x.x], a[x.y], a[x.z], a[x.w]), kk < k_end);
        }
        for (var r = 0u; r < B_PER / 4u; r++) {
            let g = li + r * THREADS;
            let q = select(g % (BN / 4u), g / BK, TRANS_B);
            let p = select(g / (BN / 4u), g % BK, TRANS_B);
            let cols = min(vec4<u32>(tile_col + 4u * q) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(N - 1u));
            let kk = kb + p;
            let kc = min(kk, K - 1u);
            let x = vec4<u32>(b0) + select(vec4<u32>(kc * N) + cols, cols * K + vec4<u32>(kc), TRANS_B);
            tile_b[p * WG_N * SUB + q] = select(vec4<f32>(), vec4<f32>(b[x.x], b[x.y], b[x.z], b[x.w]), kk < k_end);
        }
        workgroupBarrier();
        slice_products(&acc, x, y, sg_lane);
        workgroupBarrier();
    }
    let row0 = tile_row + y * 4u * SUB;
    let col0 = tile_col + x * 4u * SUB;
    let c0 = wg.z * M * N;
    for (var i = 0u; i < 4u * SUB; i++) {
        let row = row0 + i;
        if row >= M {
            break;
        }
        for (var j = 0u; j < 4u * SUB; j++) {
            let col = col0 + j;
            if col < N {
                let dst = c0 + row * N + col;
                let v = acc[i * MAX_SUB + j / 4u][j % 4u];
                if ACCUMULATE {
                    c[dst] += ALPHA * v;
                } else {
                    c[dst] = ALPHA * v;
                }
            }
        }
    }
}
