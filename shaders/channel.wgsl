// Per-channel scales, scaled residual adds and the residual mix.
//
// Element i belongs to channel ch(i) = s_offset + (i / GROUP) % CHANNELS of the parameter s:
// GROUP = 1, CHANNELS = model dim for per-channel vectors (attn_scale, mlp_scale, a row of
// skip_weights chosen by s_offset); GROUP = head_dim, CHANNELS = heads for q_gain. s_offset
// only picks the row, so it is a per-dispatch uniform (`site3`, `site4`: the binding after the
// tensors; written once when the plan is loaded, KernelCall::params) and one pipeline serves
// every row; the layout (COUNT, GROUP, CHANNELS) stays in override constants.
//   scale_fwd:        y = x * s[ch]                                   (overwrites y)
//   scale_bwd:        dx += dy * s[ch]                                (accumulates)
//   scaled_add_fwd:   out = a + s[ch] * b                             (overwrites out)
//   scaled_add_bwd:   da += dout; db += s[ch] * dout                  (accumulates)
//   mix_fwd:          out = s[ch] * a + s[CHANNELS + ch] * b           (s = resid_mix [2, CHANNELS])
//   mix_bwd:          da += s[ch] * dout; db += s[CHANNELS + ch] * dout
// The parameter gradients are channel reductions: see reduce.wgsl (channel_dot).
// shapes: element tensors [COUNT]. dispatch: one invocation per element, 1-D grid of
//   64-wide workgroups folded into y beyond 65535 workgroups.
// CPU reference: src/ops/elementwise.rs (same names).

override COUNT: u32;
override GROUP: u32;
override CHANNELS: u32;

// The row of s a dispatch reads.
struct Site {
    s_offset: u32,
}

// The channel of element i, in s from `offset`.
fn ch(offset: u32, i: u32) -> u32 {
    return offset + (i / GROUP) % CHANNELS;
}

// The site of the entry points with three tensors (scale_*), and with four (the rest).
@group(0) @binding(3) var<uniform> site3: Site;
@group(0) @binding(4) var<uniform> site4: Site;

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> s_scale: array<f32>;

@compute @workgroup_size(64)
fn scale_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i < COUNT {
        y[i] = x[i] * s_scale[ch(site3.s_offset, i)];
    }
}

@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> s_scale_bwd: array<f32>;

@compute @workgroup_size(64)
fn scale_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i < COUNT {
        dx[i] += dy[i] * s_scale_bwd[ch(site3.s_offset, i)];
    }
}

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> s_add: array<f32>;

@compute @workgroup_size(64)
fn scaled_add_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i < COUNT {
        out[i] = a[i] + s_add[ch(site4.s_offset, i)] * b[i];
    }
}

@compute @workgroup_size(64)
fn mix_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i < COUNT {
        let c = ch(site4.s_offset, i);
        out[i] = s_add[c] * a[i] + s_add[CHANNELS + c] * b[i];
    }
}

@group(0) @binding(0) var<storage, read_write> da: array<f32>;
@group(0) @binding(1) var<storage, read_write> db: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> s_bwd: array<f32>;

@compute @workgroup_size(64)
fn scaled_add_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i < COUNT {
        let g = dout[i];
        da[i] += g;
        db[i] += s_bwd[ch(site4.s_offset, i)] * g;
    }
}

@compute @workgroup_size(64)
fn mix_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i < COUNT {
        let c = ch(site4.s_offset, i);
        let g = dout[i];
        da[i] += s_bwd[c] * g;
        db[i] += s_bwd[CHANNELS + c] * g;
    }
}
