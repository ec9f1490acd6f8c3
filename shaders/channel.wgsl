// Per-channel scales, scaled residual adds and the residual mix.
//
// Element i belongs to channel ch(i) = S_OFFSET + (i / GROUP) % CHANNELS of the parameter s:
// GROUP = 1, CHANNELS = model dim for per-channel vectors (attn_scale, mlp_scale, a row of
// skip_weights chosen by S_OFFSET); GROUP = head_dim, CHANNELS = heads for q_gain.
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
override S_OFFSET: u32;

fn ch(i: u32) -> u32 {
    return S_OFFSET + (i / GROUP) % CHANNELS;
}

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> s_scale: array<f32>;

@compute @workgroup_size(64)
fn scale_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i < COUNT {
        y[i] = x[i] * s_scale[ch(i)];
    }
}

@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> s_scale_bwd: array<f32>;

@compute @workgroup_size(64)
fn scale_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i < COUNT {
        dx[i] += dy[i] * s_scale_bwd[ch(i)];
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
        out[i] = a[i] + s_add[ch(i)] * b[i];
    }
}

@compute @workgroup_size(64)
fn mix_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i < COUNT {
        let c = ch(i);
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
        db[i] += s_bwd[ch(i)] * g;
    }
}

@compute @workgroup_size(64)
fn mix_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i < COUNT {
        let c = ch(i);
        let g = dout[i];
        da[i] += s_bwd[c] * g;
        db[i] += s_bwd[CHANNELS + c] * g;
    }
}
