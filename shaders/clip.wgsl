// Global gradient-norm clipping, as PyTorch's clip_grad_norm_ (record spec section 5: 0.3).
// Deterministic, with no atomics and no read-back: the coefficient stays on the GPU.
//
// grad_sum_sq: partials[part_offset + w] = the sum of g^2 over chunk w of the gradients bound
//   here, g0 .. g6 (used of them; the rest repeat one and are not read), each cut into chunks
//   of 1024 elements (the last shorter), gradient k's chunks after gradient k - 1's. One
//   workgroup of 256 lanes per chunk: lane l sums the squares of the chunk's elements l,
//   l + 256, l + 512, l + 768 in order, then workgroup_sum's fixed pairwise tree
//   (common/workgroup_sum.wgsl). A few dispatches of up to 7 gradients cover all of them.
//   (overwrites its partials)
//   shapes: gk [countk]; partials [>= part_offset + chunks]. dispatch: one workgroup per chunk,
//   folded into y beyond 65535 (w = x + y * num_workgroups.x; workgroups past the last chunk
//   store nothing).
// clip_coef: coef[0] = min(1, MAX_NORM / (sqrt(sum of partials) + 1e-6)). One workgroup of 256
//   lanes: lane l adds partials l, l + 256, ... in order, then the tree. (overwrites)
//   shapes: partials [PARTS]; coef [1]. dispatch: (1, 1, 1).
// The gradients are not scaled here: AdamW, Muon's momentum and SGD read coef and multiply
//   each gradient element by it as they load it (one pass over the gradients fewer).
// grad_sum_sq's counts and offset are a per-dispatch uniform (`sum_site`, the binding after
//   the tensors; written once when the plan is loaded, KernelCall::params): they only pick
//   the data, so one pipeline serves every group of gradients.
// CPU reference: src/ops/clip.rs (grad_sum_sq, clip_coef).

override PARTS: u32;
override MAX_NORM: f32;

const CHUNK: u32 = 1024u;

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read> g0: array<f32>;
@group(0) @binding(2) var<storage, read> g1: array<f32>;
@group(0) @binding(3) var<storage, read> g2: array<f32>;
@group(0) @binding(4) var<storage, read> g3: array<f32>;
@group(0) @binding(5) var<storage, read> g4: array<f32>;
@group(0) @binding(6) var<storage, read> g5: array<f32>;
@group(0) @binding(7) var<storage, read> g6: array<f32>;
@group(0) @binding(8) var<uniform> sum_site: SumSite;

// grad_sum_sq's gradients: how many are bound, their element counts, and where its partials
// start.
struct SumSite {
    used: u32,
    count0: u32,
    count1: u32,
    count2: u32,
    count3: u32,
    count4: u32,
    count5: u32,
    count6: u32,
    part_offset: u32,
}

// Element j of gradient k (k is the same on every lane of a workgroup).
fn grad_at(k: u32, j: u32) -> f32 {
    switch k {
        case 0u: { return g0[j]; }
        case 1u: { return g1[j]; }
        case 2u: { return g2[j]; }
        case 3u: { return g3[j]; }
        case 4u: { return g4[j]; }
        case 5u: { return g5[j]; }
        default: { return g6[j]; }
    }
}

@compute @workgroup_size(256)
fn grad_sum_sq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let w = wid.x + wid.y * nwg.x;
    let c = sum_site;
    var counts = array<u32, 7>(c.count0, c.count1, c.count2, c.count3, c.count4, c.count5, c.count6);
    let used = c.used;
    // Which gradient chunk w belongs to, and where that gradient's chunks start.
    var k = 0u;
    var first = 0u;
    var chunks = (counts[0] + CHUNK - 1u) / CHUNK;
    while k + 1u < used && w >= first + chunks {
        first += chunks;
        k += 1u;
        chunks = (counts[k] + CHUNK - 1u) / CHUNK;
    }
    let valid = w < first + chunks;
    let count = counts[k];
    let start = (w - first) * CHUNK;
    var acc = 0.0;
    for (var i = 0u; i < CHUNK / 256u; i++) {
        let j = start + lane + i * 256u;
        if valid && j < count {
            let v = grad_at(k, j);
            acc += v * v;
        }
    }
    let total = workgroup_sum(lane, acc, 256u);
    if valid && lane == 0u {
        partials[c.part_offset + w] = total;
    }
}

@group(0) @binding(0) var<storage, read_write> coef_out: array<f32>;
@group(0) @binding(1) var<storage, read> partials_in: array<f32>;

@compute @workgroup_size(256)
fn clip_coef(@builtin(local_invocation_index) lane: u32) {
    var acc = 0.0;
    for (var j = lane; j < PARTS; j += 256u) {
        acc += partials_in[j];
    }
    let total = workgroup_sum(lane, acc, 256u);
    if lane == 0u {
        coef_out[0] = min(1.0, MAX_NORM / (sqrt(total) + 1e-6));
    }
}
