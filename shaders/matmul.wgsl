// Tiled f32 matrix product in the three layouts training needs (row-major storage).
//
// c[M,N] (= or +=) opA(a) . opB(b), summing over K in order:
//   TRANS_A = false: a is [M,K]; true: a is [K,M] (the weight-gradient layout, C = A^T B)
//   TRANS_B = false: b is [K,N]; true: b is [N,K] (the linear-forward layout, C = A B^T)
//   ACCUMULATE = true adds to c (gradients), false overwrites it.
// Batched and scaled (Muon's Newton-Schulz iterations): c[z] (= or +=) ALPHA opA(a[z]) opB(b[z])
//   for z < BATCH, each operand strided by its matrix size (a: M*K, b: K*N, c: M*N), z = gid.z.
//   The defaults (BATCH = 1, ALPHA = 1.0) are the plain product: scaling by 1.0 is exact.
// dispatch: workgroups of 8x8 invocations, each computing a 4x4 block of c held in
//   registers, so one workgroup covers a 32x32 tile: grid (ceil(N/32), ceil(M/32), BATCH).
//   Ragged edges clamp their loads and guard their stores. No workgroup memory: on lavapipe a register-blocked kernel
//   beats a shared-memory tile (see the wgpu notes); the fast GPU variants come later.
// CPU reference: src/ops/matmul.rs (matmul, matmul_batched).

override M: u32;
override N: u32;
override K: u32;
override TRANS_A: bool;
override TRANS_B: bool;
override ACCUMULATE: bool;
override BATCH: u32 = 1u;
override ALPHA: f32 = 1.0;

@group(0) @binding(0) var<storage, read_write> c: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

@compute @workgroup_size(8, 8)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 4u;
    let col0 = gid.x * 4u;
    let z = gid.z;
    if row0 >= M || col0 >= N || z >= BATCH {
        return;
    }
    // Element (i, p) of op(a) is at a0 + i * a_row + p * a_k; element (p, j) of op(b) at
    // b0 + j * b_col + p * b_k.
    let a_row = select(K, 1u, TRANS_A);
    let a_k = select(1u, M, TRANS_A);
    let b_col = select(1u, K, TRANS_B);
    let b_k = select(N, 1u, TRANS_B);
    // Edge blocks clamp their rows and columns into range: the duplicates they compute are
    // never stored, and the k loop needs no bounds checks (3x faster on lavapipe).
    let lanes = vec4<u32>(0u, 1u, 2u, 3u);
    let rows = min(vec4<u32>(row0) + lanes, vec4<u32>(M - 1u));
    let cols = min(vec4<u32>(col0) + lanes, vec4<u32>(N - 1u));
    let ai = vec4<u32>(z * M * K) + rows * a_row;
    let bj = vec4<u32>(z * K * N) + cols * b_col;
    let c0 = z * M * N;
    var acc: array<vec4<f32>, 4>;
    for (var p = 0u; p < K; p++) {
        let pa = p * a_k;
        let pb = p * b_k;
        let av = vec4<f32>(a[ai.x + pa], a[ai.y + pa], a[ai.z + pa], a[ai.w + pa]);
        let bv = vec4<f32>(b[bj.x + pb], b[bj.y + pb], b[bj.z + pb], b[bj.w + pb]);
        acc[0] += av.x * bv;
        acc[1] += av.y * bv;
        acc[2] += av.z * bv;
        acc[3] += av.w * bv;
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + i;
        if row >= M {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + j;
            if col < N {
                let dst = c0 + row * N + col;
                if ACCUMULATE {
                    c[dst] += ALPHA * acc[i][j];
                } else {
                    c[dst] = ALPHA * acc[i][j];
                }
            }
        }
    }
}
