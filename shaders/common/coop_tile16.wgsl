// 16x16 cooperative tiles for matmul_coop.wgsl: the tile types and edge its kernel body is
// written against, and its entry point for this tile size (needs TILE = 16). src/kernels.rs
// appends this file to matmul_coop.wgsl for the matmul_coop16 module.
// dispatch, shapes: matmul_coop.wgsl.
// CPU reference: src/ops/matmul.rs (matmul).

alias TileA = coop_mat16x16<f16, A>;
alias TileB = coop_mat16x16<f16, B>;
alias TileC = coop_mat16x16<f32, C>;
const T: u32 = 16u;

@compute @workgroup_size(THREADS)
fn matmul_coop16(ids: CoopIds) {
    matmul_coop(ids);
}
