// Muon's per-matrix kernels around the batched Newton-Schulz matmuls (record spec section 5).
// A "stack" holds the [a, b] matrices of one shape: [count, a, b] with (a, b) = (ROWS, COLS)
// when ROWS <= COLS, else (COLS, ROWS): a tall matrix is stored transposed.
//
// muon_momentum: buf <- mu buf + g; stack[INDEX] = g + mu buf (Nesterov), transposed when
//   ROWS > COLS. mu = hyper.momentum. (overwrites matrix INDEX of the stack, updates buf)
//   shapes: buf, g [ROWS, COLS]; stack [>= (INDEX + 1) ROWS COLS]. dispatch: one invocation per
//   element of g, 1-D grid of 64-wide workgroups folded into y.
// muon_sum_sq: partials[m, k] = the sum of squares of chunk k (4096 elements, the last
//   shorter) of matrix m [A, B] of the stack. One workgroup of 256 lanes per (chunk, matrix):
//   lane l sums the squares of the chunk's elements l, l + 256, ... (16 of them) in order, then
//   workgroup_sum's fixed pairwise tree (common/workgroup_sum.wgsl). (overwrites)
//   shapes: stack [count, A, B]; partials [count, CHUNKS], CHUNKS = ceil(A B / 4096).
//   dispatch: (CHUNKS, count, 1).
// muon_normalize: every matrix X of the stack <- X / (||X||_F + 1e-7). The same grid: the
//   workgroup of (chunk, matrix) adds the matrix's CHUNKS partials (lane l: partials l,
//   l + 256, ... in order, then the tree; every workgroup of the matrix gets the same total),
//   then every lane divides its elements of the chunk. (in place; reads muon_sum_sq's partials)
// scale_copy: out = ALPHA x. (overwrites) shapes: out, x [COUNT]. dispatch: 1-D grid.
// muon_apply: p <- p (1 - lr wd) - lr SHAPE_SCALE O, O = matrix INDEX of the stack (transposed
//   back when ROWS > COLS); lr, wd from the uniform. (updates p)
//   shapes: p [ROWS, COLS]; stack as above. dispatch: one invocation per element of p, 1-D grid.
// The Newton-Schulz iterations themselves are batched matmuls (matmul.wgsl, BATCH and ALPHA);
// src/optim.rs composes the whole update.
// CPU reference: src/ops/muon.rs (muon_momentum, muon_sum_sq, muon_normalize, scale_copy, muon_apply).

override ROWS: u32;
override COLS: u32;
override INDEX: u32;
override A: u32;
override B: u32;
override COUNT: u32;
override ALPHA: f32;
override SHAPE_SCALE: f32;
override CHUNKS: u32;

// Elements per chunk of muon_sum_sq and muon_normalize (ops::muon::MUON_CHUNK).
const CHUNK: u32 = 4096u;

struct Hyper {
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    pad0: f32,
    pad1: f32,
    pad2: f32,
    pad3: f32,
    pad4: f32,
}

// The offset in the stack of element (r, c) of matrix INDEX.
fn stacked(r: u32, c: u32) -> u32 {
    let base = INDEX * ROWS * COLS;
    if ROWS <= COLS {
        return base + r * COLS + c;
    }
    return base + c * ROWS + r;
}

@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
@group(0) @binding(1) var<storage, read_write> stack_out: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<uniform> hyper_m: Hyper;

@compute @workgroup_size(64)
fn muon_momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= ROWS * COLS {
        return;
    }
    let mu = hyper_m.momentum;
    let g = grad[i];
    let b = mu * buf[i] + g;
    buf[i] = b;
    stack_out[stacked(i / COLS, i % COLS)] = g + mu * b;
}

@group(0) @binding(0) var<storage, read_write> sum_sq_out: array<f32>;
@group(0) @binding(1) var<storage, read> sum_sq_stack: array<f32>;

@compute @workgroup_size(256)
fn muon_sum_sq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let size = A * B;
    let start = wid.x * CHUNK;
    let base = wid.y * size;
    var acc = 0.0;
    for (var i = 0u; i < CHUNK / 256u; i++) {
        let j = start + lane + i * 256u;
        if j < size {
            let v = sum_sq_stack[base + j];
            acc += v * v;
        }
    }
    let total = workgroup_sum(lane, acc, 256u);
    if lane == 0u {
        sum_sq_out[wid.y * CHUNKS + wid.x] = total;
    }
}

@group(0) @binding(0) var<storage, read_write> stack: array<f32>;
@group(0) @binding(1) var<storage, read> norm_partials: array<f32>;

@compute @workgroup_size(256)
fn muon_normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let size = A * B;
    var acc = 0.0;
    for (var k = lane; k < CHUNKS; k += 256u) {
        acc += norm_partials[wid.y * CHUNKS + k];
    }
    let denom = sqrt(workgroup_sum(lane, acc, 256u)) + 1e-7;
    let start = wid.x * CHUNK;
    let base = wid.y * size;
    for (var i = 0u; i < CHUNK / 256u; i++) {
        let j = start + lane + i * 256u;
        if j < size {
            stack[base + j] = stack[base + j] / denom;
        }
    }
}

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;

@compute @workgroup_size(64)
fn scale_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= COUNT {
        return;
    }
    out[i] = ALPHA * x[i];
}

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> stack_in: array<f32>;
@group(0) @binding(2) var<uniform> hyper_a: Hyper;

@compute @workgroup_size(64)
fn muon_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= ROWS * COLS {
        return;
    }
    let lr = hyper_a.lr;
    let decay = 1.0 - lr * hyper_a.weight_decay;
    let o = stack_in[stacked(i / COLS, i % COLS)];
    param[i] = param[i] * decay - (lr * SHAPE_SCALE) * o;
}
