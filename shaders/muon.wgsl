// Muon's per-matrix kernels around the batched Newton-Schulz matmuls (record spec section 5).
// A "stack" holds the [a, b] matrices of one shape: [count, a, b] with (a, b) = (rows, cols)
// when rows <= cols, else (cols, rows): a tall matrix is stored transposed.
//
// muon_momentum: g = grad clip[0] (the global-norm clip's coefficient, 1 without clipping);
//   buf <- mu buf + g; stack[index] = g + mu buf (Nesterov), transposed when rows > cols.
//   mu = hyper.momentum. (overwrites matrix index of the stack, updates buf)
//   shapes: buf, grad [rows, cols]; clip [1]; stack [>= (index + 1) rows cols]. dispatch: one invocation per
//   element of g, 1-D grid of 64-wide workgroups folded into y (so the last row of workgroups
//   runs past rows cols: the bound check stays).
// muon_sum_sq: partials[m, k] = the sum of squares of chunk k (4096 elements, the last
//   shorter) of matrix m [a, b] of the stack. One workgroup of 256 lanes per (chunk, matrix):
//   lane l sums the squares of the chunk's elements l, l + 256, ... (16 of them) in order, then
//   workgroup_sum's fixed pairwise tree (common/workgroup_sum.wgsl). (overwrites)
//   shapes: stack [count, a, b]; partials [count, chunks], chunks = ceil(a b / 4096).
//   dispatch: (chunks, count, 1).
// muon_normalize: every matrix X of the stack <- X / (||X||_F + 1e-7). The same grid: the
//   workgroup of (chunk, matrix) adds the matrix's chunks partials (lane l: partials l,
//   l + 256, ... in order, then the tree; every workgroup of the matrix gets the same total),
//   then every lane divides its elements of the chunk. (in place; reads muon_sum_sq's partials)
// scale_copy: out = ALPHA x. (overwrites) shapes: out, x [count]. dispatch: 1-D grid (ALPHA,
//   one of the Newton-Schulz coefficients, stays an override).
// muon_apply: p <- p (1 - lr wd) - lr shape_scale O, O = matrix index of the stack (transposed
//   back when rows > cols); lr, wd from the uniform. (updates p)
//   shapes: p [rows, cols]; stack as above. dispatch: one invocation per element of p, 1-D grid.
// Per-dispatch uniforms (`site_*`, the binding after the tensors; written once when the plan
//   is loaded, KernelCall::params) hold what only picks the data: muon_momentum's and
//   muon_apply's matrix (rows, cols, index in the stack and, for apply, shape_scale), the
//   stack shape of muon_sum_sq and muon_normalize (a, b, chunks), scale_copy's count. So one
//   pipeline serves every matrix of every stack (the record model has 67 matrices in 4 stacks).
// The Newton-Schulz iterations themselves are batched matmuls (matmul.wgsl, BATCH and ALPHA);
// src/optim.rs composes the whole update.
// CPU reference: src/ops/muon.rs (muon_momentum, muon_sum_sq, muon_normalize, scale_copy, muon_apply).

override ALPHA: f32;

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

// muon_momentum's matrix.
struct MomentumSite {
    rows: u32,
    cols: u32,
    index: u32,
}

// muon_apply's matrix and its update's shape factor.
struct ApplySite {
    rows: u32,
    cols: u32,
    index: u32,
    shape_scale: f32,
}

// The offset in the stack of element (r, c) of matrix `index` of shape [rows, cols].
fn stacked(index: u32, rows: u32, cols: u32, r: u32, c: u32) -> u32 {
    let base = index * rows * cols;
    if rows <= cols {
        return base + r * cols + c;
    }
    return base + c * rows + r;
}

@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
@group(0) @binding(1) var<storage, read_write> stack_out: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> clip_m: array<f32>;
@group(0) @binding(4) var<uniform> hyper_m: Hyper;
@group(0) @binding(5) var<uniform> site_m: MomentumSite;

@compute @workgroup_size(64)
fn muon_momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let rows = site_m.rows;
    let cols = site_m.cols;
    if i >= rows * cols {
        return;
    }
    let mu = hyper_m.momentum;
    let g = grad[i] * clip_m[0];
    let b = mu * buf[i] + g;
    buf[i] = b;
    stack_out[stacked(site_m.index, rows, cols, i / cols, i % cols)] = g + mu * b;
}

// muon_sum_sq's and muon_normalize's stack: its matrices' shape and chunks per matrix.
struct StackSite {
    a: u32,
    b: u32,
    chunks: u32,
}

@group(0) @binding(0) var<storage, read_write> sum_sq_out: array<f32>;
@group(0) @binding(1) var<storage, read> sum_sq_stack: array<f32>;
@group(0) @binding(2) var<uniform> site_s: StackSite;

@compute @workgroup_size(256)
fn muon_sum_sq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let size = site_s.a * site_s.b;
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
        sum_sq_out[wid.y * site_s.chunks + wid.x] = total;
    }
}

@group(0) @binding(0) var<storage, read_write> stack: array<f32>;
@group(0) @binding(1) var<storage, read> norm_partials: array<f32>;

@compute @workgroup_size(256)
fn muon_normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let size = site_s.a * site_s.b;
    let chunks = site_s.chunks;
    var acc = 0.0;
    for (var k = lane; k < chunks; k += 256u) {
        acc += norm_partials[wid.y * chunks + k];
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
@group(0) @binding(2) var<uniform> site_c: CopySite;

// scale_copy's element count.
struct CopySite {
    count: u32,
}

@compute @workgroup_size(64)
fn scale_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= site_c.count {
        return;
    }
    out[i] = ALPHA * x[i];
}

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> stack_in: array<f32>;
@group(0) @binding(2) var<uniform> hyper_a: Hyper;
@group(0) @binding(3) var<uniform> site_a: ApplySite;

@compute @workgroup_size(64)
fn muon_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let rows = site_a.rows;
    let cols = site_a.cols;
    if i >= rows * cols {
        return;
    }
    let lr = hyper_a.lr;
    let decay = 1.0 - lr * hyper_a.weight_decay;
    let o = stack_in[stacked(site_a.index, rows, cols, i / cols, i % cols)];
    param[i] = param[i] * decay - (lr * site_a.shape_scale) * o;
}
