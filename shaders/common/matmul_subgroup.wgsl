// matmul.wgsl's entry point for CPU adapters with subgroups of exactly 8 invocations
// (lavapipe's), for tiles WG_N a multiple of 8 wide: the 8 lanes of a subgroup are 8
// consecutive invocations of one row y of the grid, so they need the same op(a) vec4s at
// every k. llvmpipe runs each workgroup-memory read as a loop over the lanes, even where
// they all read one address; so per 8 steps of k, lane i reads the op(a) vec4s of step
// i and subgroupBroadcast hands each step's to every lane: one read where there were 8.
// The op(b) reads differ per lane and stay as they are.
// slice_products (acc, x, y, sg_lane): the BK steps of one staged slice (BK a multiple of 8).
// Entry point matmul_subgroup: the same computation and grid as matmul (see matmul.wgsl), in
// workgroups of THREADS x 1 invocations; invocation subgroup_id 8 + lane is (x, y) =
// (its index mod WG_N, its index / WG_N).

fn slice_products(acc: ptr<function, array<vec4<f32>, 16>>, x: u32, y: u32, sg_lane: u32) {
    for (var p0 = 0u; p0 < BK; p0 += 8u) {
        var mine: array<vec4<f32>, MAX_SUB>;
        for (var q = 0u; q < SUB; q++) {
            mine[q] = tile_a[((p0 + sg_lane) * WG_M + y) * SUB + q];
        }
        block_products(acc, array(subgroupBroadcast(mine[0], 0u), subgroupBroadcast(mine[1], 0u)), p0, x);
        block_products(acc, array(subgroupBroadcast(mine[0], 1u), subgroupBroadcast(mine[1], 1u)), p0 + 1u, x);
        block_products(acc, array(subgroupBroadcast(mine[0], 2u), subgroupBroadcast(mine[1], 2u)), p0 + 2u, x);
        block_products(acc, array(subgroupBroadcast(mine[0], 3u), subgroupBroadcast(mine[1], 3u)), p0 + 3u, x);
        block_products(acc, array(subgroupBroadcast(mine[0], 4u), subgroupBroadcast(mine[1], 4u)), p0 + 4u, x);
        block_products(acc, array(subgroupBroadcast(mine[0], 5u), subgroupBroadcast(mine[1], 5u)), p0 + 5u, x);
        block_products(acc, array(subgroupBroadcast(mine[0], 6u), subgroupBroadcast(mine[1], 6u)), p0 + 6u, x);
        block_products(acc, array(subgroupBroadcast(mine[0], 7u), subgroupBroadcast(mine[1], 7u)), p0 + 7u, x);
    }
}

// A one-dimensional workgroup of the same THREADS invocations: naga allows subgroup
// built-ins only there.
@compute @workgroup_size(THREADS)
fn matmul_subgroup(ids: MatmulIds, @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let inv = sg * 8u + lane;
    matmul_at(ids, inv % WG_N, inv / WG_N, lane);
}
