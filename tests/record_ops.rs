//! The record model's extra ops (spec section 4): SmearGate (4.1) and XSA (4.3 item 6).
//!
//! - CPU literals: hand-computed values and the properties the ops exist for.
//! - Finite differences in f64 (`Check::FiniteDiff`) of every backward, from random nonzero
//!   gradient buffers (so accumulation is checked), on ragged shapes.
//! - GPU kernels against the CPU reference (`Check::KernelF32`) on several shapes, ragged
//!   ones included; read-write bindings start random, as in `gpu_kernels.rs`.
//!
//! `naga_validate.rs` validates these kernels through `Op::examples()`.

mod common;

use common::{check_gpu_vs_cpu, increment, numeric_grad, random_inputs, uniform, uniform_f64, weighted, Data};
use wgolf::ops::smear::{sigmoid, smear_bwd, smear_fwd, smear_grad};
use wgolf::ops::xsa::{xsa_bwd, xsa_fwd, XsaShape, XSA_EPS};
use wgolf::plan::defs::*;
use wgolf::plan::{Op, Plan};
use wgolf::tolerance::{first_mismatch, tolerance, Check};

fn assert_near(what: &str, got: &[f32], want: &[f32]) {
    let tol = tolerance(Check::KernelF32);
    if let Some((i, g, w)) = first_mismatch(got, want, tol) {
        panic!("{what}: [{i}] = {g}, want {w} (got {got:?}, want {want:?})");
    }
}

// ---------------------------------------------------------------- literals: SmearGate

#[test]
fn smear_at_zero_gate_averages_each_token_with_the_previous_one() {
    // sigma(0) = 0.5; the first row has no predecessor (x_{-1} = 0).
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let mut out = [9.0f32; 4];
    smear_fwd(&mut out, &x, &[0.0, 0.0], 2, 2);
    assert_eq!(out, [0.5, 1.0, 2.0, 3.0]);
    assert_eq!(sigmoid(0.0f32), 0.5);
}

#[test]
fn smear_resets_at_sequence_boundaries() {
    // 5 rows of dim 1 in sequences of 2: rows 0, 2, 4 start a sequence.
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0];
    let mut out = [0.0f32; 5];
    smear_fwd(&mut out, &x, &[0.0], 1, 2);
    assert_eq!(out, [0.5, 1.5, 1.5, 3.5, 2.5]);
    // The backward sends dout_{t+1} back to row t only inside a sequence, and accumulates.
    let dout = [1.0f32, 2.0, 3.0, 4.0, 5.0];
    let mut dx = [1.0f32; 5];
    smear_bwd(&mut dx, &dout, &[0.0], 1, 2);
    assert_eq!(dx, [1.0 + 1.5, 1.0 + 1.0, 1.0 + 3.5, 1.0 + 2.0, 1.0 + 2.5]);
    // seq_len 1: no row has a predecessor, so the op is a plain scale by 1 - sigma.
    smear_fwd(&mut out, &x, &[0.0], 1, 1);
    assert_eq!(out, [0.5, 1.0, 1.5, 2.0, 2.5]);
}

#[test]
fn smear_gate_is_per_channel() {
    // Channel 0 keeps the token (sigma ~ 0), channel 1 takes the previous one (sigma ~ 1).
    let x = [1.0f32, 10.0, 2.0, 20.0, 3.0, 30.0];
    let mut out = [0.0f32; 6];
    smear_fwd(&mut out, &x, &[-40.0, 40.0], 2, 3);
    assert_near("smear per channel", &out, &[1.0, 0.0, 2.0, 10.0, 3.0, 20.0]);
}

#[test]
fn smear_grad_literal() {
    // gate 0: sigma (1 - sigma) = 0.25. dgate = 0.25 sum_t dout_t (x_{t-1} - x_t).
    // Rows (dim 1, one sequence of 3): x = [1, 3, 6], dout = [1, 2, -1]:
    //   1 (0 - 1) + 2 (1 - 3) + -1 (3 - 6) = -1 - 4 + 3 = -2 -> -0.5, added to 1.
    let mut dgate = [1.0f32];
    smear_grad(&mut dgate, &[1.0, 2.0, -1.0], &[1.0, 3.0, 6.0], &[0.0], 1, 3);
    assert_eq!(dgate, [0.5]);
}

// ---------------------------------------------------------------- literals: XSA

fn xsa(y: &[f32], v: &[f32], s: XsaShape) -> Vec<f32> {
    let mut out = vec![f32::NAN; y.len()];
    xsa_fwd(&mut out, y, v, s);
    out
}

#[test]
fn xsa_output_is_orthogonal_to_the_unit_value_of_each_head() {
    let s = XsaShape { heads: 4, kv_heads: 2, head_dim: 8 };
    let rows = 3;
    let y = uniform(1, rows * 4 * 8, -1.0, 1.0);
    let v = uniform(2, rows * 2 * 8, -1.0, 1.0);
    let out = xsa(&y, &v, s);
    for t in 0..rows {
        for h in 0..4 {
            let g = h / 2;
            let vg = &v[(t * 2 + g) * 8..][..8];
            let n = vg.iter().map(|x| x * x).sum::<f32>().sqrt();
            let oh = &out[(t * 4 + h) * 8..][..8];
            let yh = &y[(t * 4 + h) * 8..][..8];
            let dot: f32 = oh.iter().zip(vg).map(|(a, b)| a * b / n).sum();
            assert!(dot.abs() < 1e-5, "row {t} head {h}: out . vhat = {dot}");
            // Only the component along vhat is removed: out - y is parallel to v.
            let diff: Vec<f32> = oh.iter().zip(yh).map(|(a, b)| a - b).collect();
            let along: f32 = diff.iter().zip(vg).map(|(a, b)| a * b / n).sum();
            let dn = diff.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((along.abs() - dn).abs() < 1e-5, "row {t} head {h}: out - y not along v");
        }
    }
}

#[test]
fn xsa_of_y_parallel_to_v_is_zero() {
    let s = XsaShape { heads: 2, kv_heads: 1, head_dim: 4 };
    let v = [1.0f32, -2.0, 0.5, 3.0];
    let y: Vec<f32> = [2.0f32, -0.7].iter().flat_map(|c| v.iter().map(move |x| c * x)).collect();
    let out = xsa(&y, &v, s);
    assert_near("xsa of y || v", &out, &[0.0; 8]);
}

#[test]
fn xsa_query_heads_use_their_kv_group() {
    // 4 heads, 2 KV heads: heads 0, 1 use v group 0 = e0; heads 2, 3 use group 1 = 3 e1.
    let s = XsaShape { heads: 4, kv_heads: 2, head_dim: 2 };
    let v = [1.0f32, 0.0, 0.0, 3.0];
    let y = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let out = xsa(&y, &v, s);
    assert_eq!(out, [0.0, 2.0, 0.0, 4.0, 5.0, 0.0, 7.0, 0.0]);
    // One KV head shared by all: every head loses its e0 component.
    let s1 = XsaShape { heads: 4, kv_heads: 1, head_dim: 2 };
    let out = xsa(&y, &[2.0, 0.0], s1);
    assert_eq!(out, [0.0, 2.0, 0.0, 4.0, 0.0, 6.0, 0.0, 8.0]);
    // As many KV heads as query heads: head h uses v head h.
    let s4 = XsaShape { heads: 4, kv_heads: 4, head_dim: 2 };
    let v4 = [1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
    let out = xsa(&y, &v4, s4);
    assert_eq!(out, [0.0, 2.0, 3.0, 0.0, 0.0, 6.0, 7.0, 0.0]);
}

#[test]
fn xsa_of_a_zero_value_passes_y_and_gets_no_value_gradient() {
    let s = XsaShape { heads: 2, kv_heads: 1, head_dim: 3 };
    let y = [1.0f32, 2.0, 3.0, -1.0, 0.5, 2.0];
    let v = [0.0f32; 3];
    assert_eq!(xsa(&y, &v, s), y);
    let dout = [0.3f32, -0.2, 0.1, 1.0, 2.0, 3.0];
    let (mut dy, mut dv) = ([1.0f32; 6], [1.0f32; 3]);
    xsa_bwd(&mut dy, &mut dv, &dout, &y, &v, s);
    let want: Vec<f32> = dout.iter().map(|g| 1.0 + g).collect();
    assert_eq!(dy.to_vec(), want);
    assert_eq!(dv, [1.0; 3]);
}

#[test]
fn op_checks_reject_bad_shapes() {
    let bad = [
        Op::SmearFwd(SmearFwd { rows: 4, dim: 2, seq_len: 0 }),
        Op::SmearGrad(SmearGrad { rows: 4, dim: 70_000, seq_len: 2 }),
        Op::XsaFwd(XsaFwd { rows: 2, heads: 3, kv_heads: 2, head_dim: 4 }),
        Op::XsaBwd(XsaBwd { rows: 2, heads: 2, kv_heads: 1, head_dim: 129 }),
    ];
    for op in bad {
        assert!(op.check().is_err(), "{op:?} should be rejected");
        assert!(Plan::single_op(op).is_err(), "{op:?} should not plan");
    }
    let ok = Op::XsaBwd(XsaBwd { rows: 2, heads: 8, kv_heads: 4, head_dim: 128 });
    assert!(ok.check().is_ok());
}

// ---------------------------------------------------------------- finite differences

/// Compares an analytic gradient with central differences (steps `1e-6 * scale`) under
/// `tolerance(Check::FiniteDiff)`, and rules out an all-zero gradient.
fn check(what: &str, analytic: &[f64], x: &[f64], scale: &[f64], f: impl Fn(&[f64]) -> f64) {
    let numeric = numeric_grad(x, scale, f);
    assert_eq!(analytic.len(), numeric.len(), "{what}: gradient length");
    let got: Vec<f32> = analytic.iter().map(|&v| v as f32).collect();
    let want: Vec<f32> = numeric.iter().map(|&v| v as f32).collect();
    let tol = tolerance(Check::FiniteDiff);
    if let Some((i, g, w)) = first_mismatch(&got, &want, tol) {
        panic!(
            "{what}: analytic gradient [{i}] = {g:e}, finite differences give {w:e} \
             (tolerance {tol:?})"
        );
    }
    assert!(analytic.iter().any(|&v| v.abs() > 1e-3), "{what}: the gradient is (nearly) zero everywhere");
}

#[test]
fn smear_bwd_and_grad_are_the_gradients_of_smear() {
    // (rows, dim, seq_len): a partial last sequence, one whole sequence, seq_len 1 (no
    // predecessors), and a sequence longer than the rows.
    for (rows, dim, seq_len) in [(7, 4, 3), (6, 3, 6), (5, 2, 1), (4, 3, 10)] {
        let n = rows * dim;
        let seed = (rows * 100 + dim * 10 + seq_len) as u64;
        let x = uniform_f64(seed, n, -1.0, 1.0);
        let gate = uniform_f64(seed + 1, dim, -2.0, 2.0);
        let w = uniform_f64(seed + 2, n, -1.0, 1.0);
        let loss = |x: &[f64], gate: &[f64]| {
            let mut out = vec![0.0; n];
            smear_fwd(&mut out, x, gate, dim, seq_len);
            weighted(&w, &out)
        };
        let what = format!("rows {rows} dim {dim} seq_len {seq_len}");
        let dx = increment(n, seed + 3, |d| smear_bwd(d, &w, &gate, dim, seq_len));
        check(&format!("smear_bwd dx ({what})"), &dx, &x, &vec![1.0; n], |x| loss(x, &gate));
        let dg = increment(dim, seed + 4, |d| smear_grad(d, &w, &x, &gate, dim, seq_len));
        check(&format!("smear_grad dgate ({what})"), &dg, &gate, &vec![1.0; dim], |g| loss(&x, g));
    }
}

/// Checks xsa_bwd's dy and dv against finite differences of xsa_fwd at (y, v); `v_scale` is
/// the finite-difference step scale of each v coordinate.
fn xsa_fd_case(rows: usize, s: XsaShape, y: &[f64], v: &[f64], v_scale: &[f64], seed: u64) {
    let (ny, nv) = (y.len(), v.len());
    let w = uniform_f64(seed, ny, -1.0, 1.0);
    let loss = |y: &[f64], v: &[f64]| {
        let mut out = vec![0.0; ny];
        xsa_fwd(&mut out, y, v, s);
        weighted(&w, &out)
    };
    let what = format!("rows {rows} {s:?}");
    let dy = increment(ny, seed + 1, |d| {
        let mut dv = vec![0.0; nv];
        xsa_bwd(d, &mut dv, &w, y, v, s)
    });
    check(&format!("xsa_bwd dy ({what})"), &dy, y, &vec![1.0; ny], |y| loss(y, v));
    let dv = increment(nv, seed + 2, |d| {
        let mut dy = vec![0.0; ny];
        xsa_bwd(&mut dy, d, &w, y, v, s)
    });
    check(&format!("xsa_bwd dv ({what})"), &dv, v, v_scale, |v| loss(y, v));
}

#[test]
fn xsa_bwd_is_the_gradient_of_xsa() {
    for (rows, heads, kv_heads, head_dim) in [(3, 4, 2, 8), (2, 3, 1, 5), (2, 2, 2, 3)] {
        let s = XsaShape { heads, kv_heads, head_dim };
        let seed = (rows * 1000 + heads * 100 + kv_heads * 10 + head_dim) as u64;
        let y = uniform_f64(seed, rows * heads * head_dim, -1.0, 1.0);
        // Values of mixed scale: the gradient through vhat divides by |v|.
        let mut v = uniform_f64(seed + 1, rows * kv_heads * head_dim, -1.0, 1.0);
        for x in &mut v[..head_dim] {
            *x *= 0.05;
        }
        let scale: Vec<f64> = v.iter().map(|x| x.abs().max(0.05)).collect();
        xsa_fd_case(rows, s, &y, &v, &scale, seed + 2);
    }
}

#[test]
fn xsa_bwd_is_the_gradient_where_the_norm_clamp_is_active() {
    // |v| < 1e-12 on the first row (vhat = v / 1e-12, linear in v), normal on the second:
    // both branches of the value gradient in one check.
    let s = XsaShape { heads: 4, kv_heads: 2, head_dim: 8 };
    let rows = 2;
    let y = uniform_f64(70, rows * 4 * 8, -1.0, 1.0);
    let mut v = uniform_f64(71, rows * 2 * 8, -1.0, 1.0);
    let tiny = 0.1 * XSA_EPS; // |v| of a clamped row is then below 0.1 * sqrt(8) * eps < eps
    for x in &mut v[..2 * 8] {
        *x *= tiny;
    }
    for g in 0..2 {
        let n: f64 = v[g * 8..][..8].iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(n < XSA_EPS && n > 0.1 * XSA_EPS, "row 0 group {g}: |v| = {n:e}");
    }
    let scale: Vec<f64> = (0..v.len()).map(|i| if i < 16 { tiny } else { v[i].abs().max(0.05) }).collect();
    xsa_fd_case(rows, s, &y, &v, &scale, 72);
}

// ---------------------------------------------------------------- GPU vs CPU

fn kernel_tol() -> wgolf::tolerance::Tolerance {
    tolerance(Check::KernelF32)
}

#[test]
fn smear_fwd_bwd_grad_gpu_vs_cpu() {
    // (rows, dim, seq_len): single element, ragged sequences, rows above a 64-lane stride,
    // dim not a multiple of 64, seq_len 1, one long sequence.
    for (rows, dim, seq_len) in [(1, 1, 1), (7, 5, 3), (130, 70, 64), (200, 3, 7), (65, 64, 1), (33, 9, 100)] {
        let seed = (rows * 1000 + dim * 10 + seq_len) as u64;
        for (i, op) in [
            Op::SmearFwd(SmearFwd { rows, dim, seq_len }),
            Op::SmearBwd(SmearBwd { rows, dim, seq_len }),
            Op::SmearGrad(SmearGrad { rows, dim, seq_len }),
        ]
        .into_iter()
        .enumerate()
        {
            check_gpu_vs_cpu(&op, &random_inputs(&op, seed + i as u64), kernel_tol());
        }
    }
}

#[test]
fn xsa_fwd_bwd_gpu_vs_cpu() {
    for (rows, heads, kv_heads, head_dim) in [(1, 1, 1, 1), (5, 4, 2, 6), (33, 8, 4, 64), (7, 3, 1, 128), (70, 2, 2, 5)]
    {
        let seed = (rows * 1000 + heads * 100 + kv_heads * 10 + head_dim) as u64;
        let fwd = Op::XsaFwd(XsaFwd { rows, heads, kv_heads, head_dim });
        let bwd = Op::XsaBwd(XsaBwd { rows, heads, kv_heads, head_dim });
        check_gpu_vs_cpu(&fwd, &random_inputs(&fwd, seed), kernel_tol());
        check_gpu_vs_cpu(&bwd, &random_inputs(&bwd, seed + 1), kernel_tol());
    }
}

#[test]
fn xsa_gpu_vs_cpu_with_zero_and_clamped_values() {
    // Row 0: v = 0 (vhat = 0); row 1: |v| ~ 0.3e-12 < eps (the clamp branch, dv ~ 1e12);
    // rows 2, 3: ordinary values.
    let (rows, heads, kv_heads, head_dim) = (4, 4, 2, 8);
    let fwd = Op::XsaFwd(XsaFwd { rows, heads, kv_heads, head_dim });
    let bwd = Op::XsaBwd(XsaBwd { rows, heads, kv_heads, head_dim });
    let row_v = kv_heads * head_dim;
    let mut v = uniform(80, rows * row_v, -1.0, 1.0);
    v[..row_v].iter_mut().for_each(|x| *x = 0.0);
    v[row_v..2 * row_v].iter_mut().for_each(|x| *x *= 1e-13);
    let mut inputs = random_inputs(&fwd, 81);
    inputs[2] = Data::F32(v.clone());
    check_gpu_vs_cpu(&fwd, &inputs, kernel_tol());
    let mut inputs = random_inputs(&bwd, 82);
    inputs[4] = Data::F32(v);
    check_gpu_vs_cpu(&bwd, &inputs, kernel_tol());
}
