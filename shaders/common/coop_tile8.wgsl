// 8x8 cooperative tiles for matmul_coop.wgsl: the tile types and edge its kernel body is
// written against, and its entry point for this tile size (needs TILE = 8). src/kernels.rs
// appends this file to matmul_coop.wgsl for the matmul_coop8 module.
// dispatch, shapes: matmul_coop.wgsl.
// CPU reference: src/ops/matmul.rs (matmul).

alias TileA = coop_mat8x8<f16, A>;
alias TileB = coop_mat8x8<f16, B>;
alias TileC = coop_mat8x8<f32, C>;
const T: u32 = 8u;

@compute @workgroup_size(THREADS)
fn matmul_coop8(ids: CoopIds) {
    matmul_coop(ids);
}
