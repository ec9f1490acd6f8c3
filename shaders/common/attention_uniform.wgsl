// attention.wgsl's entry points for GPUs, with its reads of staged tiles straight from
// workgroup memory: in a step every invocation reads the same entries, which a GPU serves
// as one broadcast read per warp.
// staged_a / staged_b (lo, c, sg_lane): chunks lo and lo + 1 of tile_a / tile_b for vec4 c of
// a row (see pair_entry); step_stats (b, h, t, sg_lane): lse and delta of queries t .. t + 7
// of head h. `sg_lane` is unused here.
// Entry points attention_fwd, attention_bwd_q, attention_bwd_kv (see attention.wgsl).

fn staged_a(lo: u32, c: u32, sg_lane: u32) -> ChunkPair {
    let e = pair_entry(lo, c, 0u);
    let f = pair_entry(lo, c, 4u);
    return ChunkPair(
        mat4x4<f32>(tile_a[e], tile_a[e + 1u], tile_a[e + 2u], tile_a[e + 3u]),
        mat4x4<f32>(tile_a[f], tile_a[f + 1u], tile_a[f + 2u], tile_a[f + 3u]),
    );
}

fn staged_b(lo: u32, c: u32, sg_lane: u32) -> ChunkPair {
    let e = pair_entry(lo, c, 0u);
    let f = pair_entry(lo, c, 4u);
    return ChunkPair(
        mat4x4<f32>(tile_b[e], tile_b[e + 1u], tile_b[e + 2u], tile_b[e + 3u]),
        mat4x4<f32>(tile_b[f], tile_b[f + 1u], tile_b[f + 2u], tile_b[f + 3u]),
    );
}

fn stats4(b: u32, h: u32, t: u32) -> array<vec4<f32>, 2> {
    let x = vec4<u32>(stats_row(b, h, t, 0u), stats_row(b, h, t, 1u), stats_row(b, h, t, 2u), stats_row(b, h, t, 3u));
    return array(vec4<f32>(klse[x.x], klse[x.y], klse[x.z], klse[x.w]), vec4<f32>(kdelta[x.x], kdelta[x.y], kdelta[x.z], kdelta[x.w]));
}

fn step_stats(b: u32, h: u32, t: u32, sg_lane: u32) -> StepStats {
    let lo = stats4(b, h, t);
    let hi = stats4(b, h, t + 4u);
    return StepStats(lo[0], hi[0], lo[1], hi[1]);
}

@compute @workgroup_size(WG)
fn attention_fwd(ids: WorkgroupIds) {
    forward(workgroup_index(ids), ids.lid, 0u);
}

@compute @workgroup_size(WG)
fn attention_bwd_q(ids: WorkgroupIds) {
    backward_q(workgroup_index(ids), ids.lid, 0u);
}

@compute @workgroup_size(WG)
fn attention_bwd_kv(ids: WorkgroupIds) {
    backward_kv(workgroup_index(ids), ids.lid, 0u);
}
