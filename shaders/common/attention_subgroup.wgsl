// attention.wgsl's entry points for CPU adapters (needs SUBGROUP, subgroups of at least 8),
// with its reads of staged tiles spread over subgroup lanes: llvmpipe runs every
// workgroup-memory read as a loop over the lanes of its SIMD batch, even where they all read
// one address. So each of a subgroup's lanes 0 .. 7 reads one of the 8 entries a step needs
// for vec4 c of a row (pair_entry), and subgroupBroadcast hands them to every lane: one
// read instead of eight. Same for the lse and delta of a step's 8 queries in bwd_kv.
// staged_a / staged_b (lo, c, sg_lane): chunks lo and lo + 1 of tile_a / tile_b; step_stats
// (b, h, t, sg_lane): lse and delta of queries t .. t + 7 of head h; `sg_lane` is the subgroup
// lane mod 8 (lanes 8 and up of a wider subgroup repeat lanes 0 .. 7's reads).
// Entry points attention_fwd_subgroup, attention_bwd_q_subgroup, attention_bwd_kv_subgroup:
// the same computation as attention_fwd, attention_bwd_q, attention_bwd_kv.

// The 8 vec4s lanes 0 .. 7 hold, as the columns of two matrices.
fn spread8(mine: vec4<f32>) -> ChunkPair {
    return ChunkPair(
        mat4x4<f32>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u)),
        mat4x4<f32>(subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u), subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u)),
    );
}

// The 8 values lanes 0 .. 7 hold, as two vec4s.
fn spread8_scalar(mine: f32) -> array<vec4<f32>, 2> {
    return array(
        vec4<f32>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u)),
        vec4<f32>(subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u), subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u)),
    );
}

fn staged_a(lo: u32, c: u32, sg_lane: u32) -> ChunkPair {
    return spread8(tile_a[pair_entry(lo, c, sg_lane)]);
}

fn staged_b(lo: u32, c: u32, sg_lane: u32) -> ChunkPair {
    return spread8(tile_b[pair_entry(lo, c, sg_lane)]);
}

fn step_stats(b: u32, h: u32, t: u32, sg_lane: u32) -> StepStats {
    let row = stats_row(b, h, t, sg_lane);
    let l = spread8_scalar(klse[row]);
    let d = spread8_scalar(kdelta[row]);
    return StepStats(l[0], l[1], d[0], d[1]);
}

@compute @workgroup_size(WG)
fn attention_fwd_subgroup(ids: WorkgroupIds, @builtin(subgroup_invocation_id) lane: u32) {
    forward(workgroup_index(ids), ids.lid, lane % 8u);
}

@compute @workgroup_size(WG)
fn attention_bwd_q_subgroup(ids: WorkgroupIds, @builtin(subgroup_invocation_id) lane: u32) {
    backward_q(workgroup_index(ids), ids.lid, lane % 8u);
}

@compute @workgroup_size(WG)
fn attention_bwd_kv_subgroup(ids: WorkgroupIds, @builtin(subgroup_invocation_id) lane: u32) {
    backward_kv(workgroup_index(ids), ids.lid, lane % 8u);
}
