// matmul.wgsl's entry point for GPUs (and CPU adapters without subgroups of 8, or a tile
// narrower than 8 invocations), with its reads of the staged slices straight from workgroup
// memory: per k, an invocation reads its SUB vec4s of op(a) and of op(b).
// slice_products (acc, x, y, sg_lane): the BK steps of one staged slice for invocation
// (x, y) (`sg_lane` is unused here).
// Entry point matmul (see matmul.wgsl): invocation (x, y) = local_invocation_id.

fn slice_products(acc: ptr<function, array<vec4<f32>, 16>>, x: u32, y: u32, sg_lane: u32) {
    for (var p = 0u; p < BK; p++) {
        var av: array<vec4<f32>, MAX_SUB>;
        for (var q = 0u; q < SUB; q++) {
            av[q] = tile_a[(p * WG_M + y) * SUB + q];
        }
        block_products(acc, av, p, x);
    }
}

@compute @workgroup_size(WG_N, WG_M)
fn matmul(ids: MatmulIds, @builtin(local_invocation_id) lid: vec3<u32>) {
    matmul_at(ids, lid.x, lid.y, 0u);
}
