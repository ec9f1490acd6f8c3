// Rotary position embedding, half-split (NeoX) layout, with a precomputed cos/sin table.
//
// For row r (position p = r % SEQ_LEN), head h, i < HEAD_DIM/2, with x1 = x[h, i] and
// x2 = x[h, i + HEAD_DIM/2], cos = table[p, i], sin = table[SEQ_LEN*HALF + p*HALF + i]:
//   forward (INVERSE = false, overwrites out): out = [x1 cos + x2 sin, -x1 sin + x2 cos]
//   backward (INVERSE = true, accumulates):    out += [x1 cos - x2 sin, x1 sin + x2 cos]
// shapes: out, x [ROWS, HEADS*HEAD_DIM]; table [2, SEQ_LEN, HEAD_DIM/2] (cos then sin).
// dispatch: one invocation per (row, head, i < HEAD_DIM/2), 1-D grid of 64-wide workgroups
//   folded into y beyond 65535 workgroups.
// CPU reference: src/ops/rope.rs (rope, rope_table).

override ROWS: u32;
override HEADS: u32;
override HEAD_DIM: u32;
override SEQ_LEN: u32;
override INVERSE: bool;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;

@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = HEAD_DIM / 2u;
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= ROWS * HEADS * half {
        return;
    }
    let i = idx % half;
    let rh = idx / half;          // row * HEADS + head
    let r = rh / HEADS;
    let p = r % SEQ_LEN;
    let base = rh * HEAD_DIM;
    let cs = table[p * half + i];
    let sn = table[SEQ_LEN * half + p * half + i];
    let x1 = x[base + i];
    let x2 = x[base + i + half];
    if INVERSE {
        out[base + i] += x1 * cs - x2 * sn;
        out[base + i + half] += x1 * sn + x2 * cs;
    } else {
        out[base + i] = x1 * cs + x2 * sn;
        out[base + i + half] = -x1 * sn + x2 * cs;
    }
}
