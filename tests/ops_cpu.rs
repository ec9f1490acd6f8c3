//! The CPU reference ops on small literals that can be checked by hand. These are the
//! contracts every kernel is held to, so each test reads as a worked example.

use wgolf::ops::adamw::{adamw, AdamHyper};
use wgolf::ops::attention::{attention_fwd, AttnShape};
use wgolf::ops::cross_entropy::{cross_entropy, loss_sum};
use wgolf::ops::elementwise::{
    add_into, channel_blocks, channel_dot, channel_dot_partial, channel_sum, mix_bwd, mix_fwd, relu2_bwd, relu2_fwd,
    scale_bwd, scale_fwd, scaled_add_bwd, scaled_add_fwd, Channels,
};
use wgolf::ops::embedding::{embedding_bwd, embedding_bwd_indexed, embedding_fwd, id_index};
use wgolf::ops::matmul::{matmul, matmul_partial, split_sum, Layout};
use wgolf::ops::rmsnorm::{rmsnorm_bwd, rmsnorm_fwd, RMS_EPS};
use wgolf::ops::rope::{rope, rope_table};

/// Exact comparison for results that involve no rounding at all.
fn assert_exact(got: &[f32], want: &[f32]) {
    assert_eq!(got, want);
}

/// Comparison up to a few f32 ulps, for results computed with divisions, roots or exps.
fn assert_near(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        // 4 ulps of the larger magnitude (or of 1 near zero): hand values are rounded.
        let ulps = 4.0 * f32::EPSILON * g.abs().max(w.abs()).max(1.0);
        assert!((g - w).abs() <= ulps, "element {i}: got {g}, want {w}\n got  {got:?}\n want {want:?}");
    }
}

// ---------------------------------------------------------------- matmul

/// A = [[1,2,3],[4,5,6]] (2x3), B = [[7,8],[9,10],[11,12]] (3x2): A.B = [[58,64],[139,154]].
const A: [f32; 6] = [1., 2., 3., 4., 5., 6.];
const B_KN: [f32; 6] = [7., 8., 9., 10., 11., 12.];
const AB: [f32; 4] = [58., 64., 139., 154.];

fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| x[r * cols + c])).collect()
}

#[test]
fn matmul_nn_is_the_plain_product() {
    let mut c = [0f32; 4];
    matmul(&mut c, &A, &B_KN, 2, 2, 3, Layout::Nn, false);
    assert_exact(&c, &AB);
}

#[test]
fn matmul_nt_reads_b_transposed() {
    // B stored as [N, K] = B^T.
    let b_nk = transpose(&B_KN, 3, 2);
    assert_eq!(b_nk, [7., 9., 11., 8., 10., 12.]);
    let mut c = [0f32; 4];
    matmul(&mut c, &A, &b_nk, 2, 2, 3, Layout::Nt, false);
    assert_exact(&c, &AB);
}

#[test]
fn matmul_tn_reads_a_transposed() {
    // A stored as [K, M] = A^T.
    let a_km = transpose(&A, 2, 3);
    assert_eq!(a_km, [1., 4., 2., 5., 3., 6.]);
    let mut c = [0f32; 4];
    matmul(&mut c, &a_km, &B_KN, 2, 2, 3, Layout::Tn, false);
    assert_exact(&c, &AB);
}

#[test]
fn matmul_accumulate_adds_and_overwrite_replaces() {
    let b_nk = transpose(&B_KN, 3, 2);
    let a_km = transpose(&A, 2, 3);
    for (layout, a, b) in
        [(Layout::Nn, &A[..], &B_KN[..]), (Layout::Nt, &A[..], &b_nk[..]), (Layout::Tn, &a_km[..], &B_KN[..])]
    {
        let mut c = [1f32, 2., 3., 4.];
        matmul(&mut c, a, b, 2, 2, 3, layout, true);
        assert_exact(&c, &[59., 66., 142., 158.]);
        let mut c = [1f32, 2., 3., 4.];
        matmul(&mut c, a, b, 2, 2, 3, layout, false);
        assert_exact(&c, &AB);
    }
}

#[test]
fn matmul_rectangular_3x2_by_2x3() {
    // Nn with M=3, K=2, N=3: [[1,0],[0,1],[1,1]] . [[1,2,3],[4,5,6]].
    let a = [1., 0., 0., 1., 1., 1.];
    let b = [1., 2., 3., 4., 5., 6.];
    let mut c = [0f32; 9];
    matmul(&mut c, &a, &b, 3, 3, 2, Layout::Nn, false);
    assert_exact(&c, &[1., 2., 3., 4., 5., 6., 5., 7., 9.]);
}

#[test]
fn split_k_partials_are_the_k_ranges_and_their_sum_is_the_product() {
    // Nn, M = 1, N = 2, K = 5 in ranges of 2: k in {0, 1}, {2, 3}, {4}.
    let a = [1., 2., 3., 4., 5.];
    let b = [1., 10., 1., 20., 1., 30., 1., 40., 1., 50.];
    let mut p = [0f64; 6];
    matmul_partial(&mut p, &a, &b, 1, 1, 2, 5, 2, Layout::Nn);
    assert_eq!(p, [3., 50., 7., 250., 5., 250.]);
    // Added in split order, scaled once; accumulating onto c.
    let mut c = [1., 1.];
    split_sum(&mut c, &p, 1, 2, 3, 0.5, true);
    assert_eq!(c, [1. + 7.5, 1. + 275.]);
    // Any split and layout sums to the whole product (exact here: small integers).
    let (m, n, k) = (3, 4, 11);
    let a: Vec<f64> = (0..m * k).map(|i| (i % 7) as f64 - 3.0).collect();
    let b: Vec<f64> = (0..k * n).map(|i| (i % 5) as f64 - 2.0).collect();
    for layout in [Layout::Nt, Layout::Nn, Layout::Tn] {
        let mut whole = vec![0.0; m * n];
        matmul(&mut whole, &a, &b, m, n, k, layout, false);
        for k_split in [1, 3, 4, 11] {
            let splits = k.div_ceil(k_split);
            let mut p = vec![f64::NAN; splits * m * n];
            matmul_partial(&mut p, &a, &b, 1, m, n, k, k_split, layout);
            let mut c = vec![f64::NAN; m * n];
            split_sum(&mut c, &p, 1, m * n, splits, 1.0, false);
            assert_eq!(c, whole, "{layout:?} k_split {k_split}");
        }
    }
}

// ---------------------------------------------------------------- rmsnorm

#[test]
fn rmsnorm_of_3_4() {
    // mean of squares = (9 + 16) / 2 = 12.5, rms = 3.5355..., y = [0.8485, 1.1314].
    let mut y = [0f32; 2];
    let mut rstd = [0f32; 1];
    rmsnorm_fwd(&mut y, &mut rstd, &[3., 4.], 2, RMS_EPS);
    let r = 1.0 / (12.5f64 + RMS_EPS).sqrt();
    assert_near(&rstd, &[r as f32]);
    assert_near(&y, &[(3.0 * r) as f32, (4.0 * r) as f32]);
    assert!((y[0] - 0.848_528).abs() < 1e-5 && (y[1] - 1.131_371).abs() < 1e-5, "{y:?}");
}

#[test]
fn rmsnorm_rows_are_independent_and_unit_rms() {
    let x = [1f32, -1., 1., -1., 2., 0., 0., 0.];
    let mut y = [0f32; 8];
    let mut rstd = [0f32; 2];
    rmsnorm_fwd(&mut y, &mut rstd, &x, 4, RMS_EPS);
    // Row 0 already has rms 1; row 1 has rms 1 after dividing by sqrt(4/4) = 1.
    assert_near(&y, &[1., -1., 1., -1., 2., 0., 0., 0.]);
    assert_eq!(RMS_EPS, f32::EPSILON as f64, "PyTorch's default eps for f32 rms_norm");
}

#[test]
fn rmsnorm_bwd_of_a_gradient_along_y_is_zero() {
    // Scaling x does not change y, so a gradient parallel to y (dy = y) has no effect on x.
    let x = [3f32, 4.];
    let (mut y, mut rstd) = ([0f32; 2], [0f32; 1]);
    rmsnorm_fwd(&mut y, &mut rstd, &x, 2, RMS_EPS);
    let mut dx = [0.5f32, -0.5];
    rmsnorm_bwd(&mut dx, &y, &y, &rstd, 2);
    assert_near(&dx, &[0.5, -0.5]);
}

// ---------------------------------------------------------------- relu^2

#[test]
fn relu2_squares_positives_and_zeroes_negatives() {
    let x = [-3f32, -0.5, 0., 0.5, 3.];
    let mut y = [9f32; 5];
    relu2_fwd(&mut y, &x);
    assert_exact(&y, &[0., 0., 0., 0.25, 9.]);
    let mut dx = [1f32; 5];
    relu2_bwd(&mut dx, &[1., 1., 1., 1., 2.], &x);
    // dx += 2 relu(x) dy; the negatives keep their initial 1.
    assert_exact(&dx, &[1., 1., 1., 2., 13.]);
}

// ---------------------------------------------------------------- embedding

#[test]
fn embedding_gathers_rows() {
    let table = [0f32, 1., 10., 11., 20., 21.]; // 3 tokens x dim 2
    let mut out = [0f32; 6];
    embedding_fwd(&mut out, &table, &[2, 0, 2], 2);
    assert_exact(&out, &[20., 21., 0., 1., 20., 21.]);
}

#[test]
fn embedding_bwd_scatter_adds_repeated_ids() {
    let mut dtable = [100f32, 100., 0., 0., 0., 0.];
    let dout = [1f32, 2., 3., 4., 5., 6.];
    embedding_bwd(&mut dtable, &dout, &[2, 0, 2], 2);
    // id 2 appears twice: rows 0 and 2 of dout are summed; id 0 accumulates onto 100;
    // id 1 is untouched.
    assert_exact(&dtable, &[103., 104., 0., 0., 6., 8.]);
}

#[test]
fn id_index_groups_positions_by_id_in_order() {
    // ids 2, 0, 2, 3, 0, 2 over a vocabulary of 5: id 0 at 1, 4; id 1 nowhere; id 2 at 0, 2,
    // 5; id 3 at 3; id 4 nowhere. Offsets (6 of them), then the positions grouped by id.
    let index = id_index(&[2, 0, 2, 3, 0, 2], 5).unwrap();
    assert_eq!(index, [0, 2, 2, 5, 6, 6, 1, 4, 0, 2, 5, 3]);
    // An id outside the vocabulary is an error naming it and its position.
    let err = id_index(&[1, 7], 5).unwrap_err();
    assert!(err.contains("id 7 at position 1") && err.contains("5 rows"), "{err}");
    // The indexed backward is the scatter-add of the literal above.
    let mut dtable = [100f32, 100., 0., 0., 0., 0.];
    let dout = [1f32, 2., 3., 4., 5., 6.];
    embedding_bwd_indexed(&mut dtable, &dout, &id_index(&[2, 0, 2], 3).unwrap(), 3, 2);
    assert_exact(&dtable, &[103., 104., 0., 0., 6., 8.]);
}

// ---------------------------------------------------------------- rope

#[test]
fn rope_table_layout_is_cos_then_sin() {
    let t = rope_table(3, 4, 10000.0);
    assert_eq!(t.len(), 2 * 3 * 2);
    // Position 0: angle 0. Position 2, frequency 0: angle 2; frequency 1: 2 / 100.
    assert_eq!(&t[0..2], &[1., 1.]);
    assert_eq!(&t[6..8], &[0., 0.]);
    assert_near(&t[4..6], &[2f32.cos(), 0.02f32.cos()]);
    assert_near(&t[10..12], &[2f32.sin(), 0.02f32.sin()]);
}

#[test]
fn rope_at_position_zero_is_the_identity() {
    let table = rope_table(4, 4, 10000.0);
    let x = [1f32, 2., 3., 4., 5., 6., 7., 8.]; // one row, 2 heads x 4
    let mut out = [0f32; 8];
    rope(&mut out, &x, &table, 2, 4, 4, false);
    assert_exact(&out, &x);
}

#[test]
fn rope_rotates_each_half_pair_by_the_table_angle() {
    let (seq, hd) = (4, 4);
    let table = rope_table(seq, hd, 10000.0);
    // Rows 0..4 are positions 0..4; row 5 wraps to position 1.
    let x: Vec<f32> = (0..6).flat_map(|_| [1f32, 0., 0., 1.]).collect();
    let mut out = vec![0f32; x.len()];
    rope(&mut out, &x, &table, 1, hd, seq, false);
    for r in 0..6 {
        let p = r % seq;
        let (c0, s0) = (table[p * 2], table[seq * 2 + p * 2]);
        let (c1, s1) = (table[p * 2 + 1], table[seq * 2 + p * 2 + 1]);
        // pair 0: (x1, x2) = (1, 0) -> (cos, -sin); pair 1: (0, 1) -> (sin, cos).
        assert_near(&out[r * 4..r * 4 + 4], &[c0, s1, -s0, c1]);
        let norm: f32 = out[r * 4..r * 4 + 4].iter().map(|v| v * v).sum();
        assert!((norm - 2.0).abs() < 1e-6, "row {r}: rotation changed the norm to {norm}");
    }
    // The angle of pair 0 at position p is p radians.
    assert_near(&[table[3 * 2], table[seq * 2 + 3 * 2]], &[3f32.cos(), 3f32.sin()]);
}

#[test]
fn rope_inverse_undoes_the_forward_and_accumulates() {
    let (seq, hd) = (5, 6);
    let table = rope_table(seq, hd, 10000.0);
    // 3 rows x 2 heads.
    let x: Vec<f32> = (0..3 * 2 * hd).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut y = vec![0f32; x.len()];
    rope(&mut y, &x, &table, 2, hd, seq, false);
    let mut back = vec![1f32; x.len()];
    rope(&mut back, &y, &table, 2, hd, seq, true);
    let want: Vec<f32> = x.iter().map(|v| v + 1.0).collect();
    assert_near(&back, &want);
}

// ---------------------------------------------------------------- attention

#[test]
fn attention_with_one_token_returns_v() {
    let s = AttnShape { batch: 2, seq: 1, heads: 2, kv_heads: 1, head_dim: 2 };
    let q = [0.3f32, -1., 2., 0.5, 1., 1., -2., 4.];
    let k = [5f32, 6., -7., 8.];
    let v = [1f32, 2., 3., 4.];
    let mut out = [0f32; 8];
    let mut lse = [0f32; 4];
    attention_fwd(&mut out, &mut lse, &q, &k, &v, s);
    // Both query heads share the one KV head; a softmax over one key is 1.
    assert_exact(&out, &[1., 2., 1., 2., 3., 4., 3., 4.]);
    // lse is the lone (scaled) score: q.k / sqrt(2).
    let want = |q: &[f32], k: &[f32]| (q[0] * k[0] + q[1] * k[1]) / 2f32.sqrt();
    assert_near(
        &lse,
        &[want(&q[0..2], &k[0..2]), want(&q[2..4], &k[0..2]), want(&q[4..6], &k[2..4]), want(&q[6..8], &k[2..4])],
    );
}

#[test]
fn attention_with_equal_scores_averages_the_visible_values() {
    // q = 0: every score is 0, so token t averages v_0..v_t.
    let s = AttnShape { batch: 1, seq: 3, heads: 1, kv_heads: 1, head_dim: 1 };
    let mut out = [0f32; 3];
    let mut lse = [0f32; 3];
    attention_fwd(&mut out, &mut lse, &[0., 0., 0.], &[1., 2., 3.], &[3., 6., 12.], s);
    assert_near(&out, &[3., 4.5, 7.]);
    assert_near(&lse, &[0., 2f32.ln(), 3f32.ln()]);
}

#[test]
fn attention_is_causal() {
    let s = AttnShape { batch: 1, seq: 4, heads: 2, kv_heads: 1, head_dim: 2 };
    let q: Vec<f32> = (0..16).map(|i| (i as f32 * 0.7).sin()).collect();
    let k: Vec<f32> = (0..8).map(|i| (i as f32 * 1.3).cos()).collect();
    let v: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let run = |k: &[f32], v: &[f32]| {
        let mut out = vec![0f32; 16];
        let mut lse = vec![0f32; 8];
        attention_fwd(&mut out, &mut lse, &q, k, v, s);
        (out, lse)
    };
    let (out, lse) = run(&k, &v);
    // Change the last token's key and value: tokens 0..3 must not see it.
    let (mut k2, mut v2) = (k.clone(), v.clone());
    k2[6] = 9.0;
    v2[7] = -50.0;
    let (out2, lse2) = run(&k2, &v2);
    assert_exact(&out[..12], &out2[..12]);
    assert_ne!(&out[12..], &out2[12..]);
    // lse is [heads, seq]: entries t < 3 of each head unchanged.
    for h in 0..2 {
        assert_exact(&lse[h * 4..h * 4 + 3], &lse2[h * 4..h * 4 + 3]);
    }
}

// ---------------------------------------------------------------- cross-entropy

#[test]
fn cross_entropy_of_uniform_logits_is_ln_vocab() {
    let vocab = 8;
    let logits = vec![0.25f32; 2 * vocab];
    let mut loss = [0f32; 2];
    let mut dl = vec![0f32; 2 * vocab];
    cross_entropy(Some(&mut dl), &mut loss, &logits, &[3, 7], vocab, 30.0, 0.5);
    assert_near(&loss, &[(vocab as f32).ln(); 2]);
    for r in 0..2 {
        let row = &dl[r * vocab..(r + 1) * vocab];
        let sum: f32 = row.iter().sum();
        assert!(sum.abs() < 1e-6, "row {r}: gradient sums to {sum}");
        // The target gets grad_scale * (1/8 - 1) * (1 - tanh^2), the others grad_scale / 8 * ...
        let d = 1.0 - (0.25f32 / 30.0).tanh().powi(2);
        let target = [3, 7][r];
        for (j, &g) in row.iter().enumerate() {
            let p = 1.0 / vocab as f32 - if j == target { 1.0 } else { 0.0 };
            assert_near(&[g], &[0.5 * p * d]);
        }
    }
}

#[test]
fn cross_entropy_softcap_bounds_the_logits() {
    // A huge logit is capped at 30: the loss of another target is about 30 - 0 + ln(1 + ...).
    let logits = [1000f32, 0.];
    let mut loss = [0f32];
    cross_entropy(None, &mut loss, &logits, &[1], 2, 30.0, 1.0);
    let want = (30f32.exp() + 1.0).ln();
    assert_near(&loss, &[want]);
}

#[test]
fn cross_entropy_without_grad_leaves_nothing_else_touched() {
    let logits = [1f32, 2., 3.];
    let mut loss = [0f32];
    cross_entropy(None, &mut loss, &logits, &[2], 3, 30.0, 1.0);
    let z: Vec<f32> = logits.iter().map(|l| 30.0 * (l / 30.0).tanh()).collect();
    let lse = z.iter().map(|v| v.exp()).sum::<f32>().ln();
    assert_near(&loss, &[lse - z[2]]);
}

#[test]
fn loss_sum_accumulates_the_scaled_total() {
    let rows: Vec<f32> = (1..=1000).map(|i| i as f32).collect();
    let mut total = 7f32;
    loss_sum(&mut total, &rows, 0.001);
    // 7 + 0.001 * 500500 = 507.5.
    assert_near(&[total], &[507.5]);
    let mut total = 0f32;
    loss_sum(&mut total, &[], 1.0);
    assert_eq!(total, 0.0);
}

// ---------------------------------------------------------------- adamw

#[test]
fn adamw_first_step_moves_by_lr_against_the_gradient_sign() {
    // From zero moments, step 1: m/bc1 = g, v/bc2 = g^2, so the update is lr * g / (|g| + eps).
    let h = AdamHyper::at_step(0.1, 0.9, 0.95, 1e-8, 0.0, 1);
    let mut p = [1f32, 1., 1., 1.];
    let mut m = [0f32; 4];
    let mut v = [0f32; 4];
    adamw(&mut p, &mut m, &mut v, &[2., -0.5, 1e-2, 0.], &h);
    // A zero gradient does not move p at all (eps keeps 0 / 0 away).
    assert_near(&p, &[0.9, 1.1, 0.9, 1.0]);
    assert_near(&m, &[0.2, -0.05, 1e-3, 0.]);
    assert_near(&v, &[0.2, 0.0125, 5e-6, 0.]);
}

#[test]
fn adamw_weight_decay_is_decoupled() {
    // With zero gradient, only the decay acts: p *= 1 - lr wd.
    let h = AdamHyper::at_step(0.1, 0.9, 0.95, 1e-8, 0.5, 3);
    let mut p = [2f32, -4.];
    let (mut m, mut v) = ([0f32; 2], [0f32; 2]);
    adamw(&mut p, &mut m, &mut v, &[0., 0.], &h);
    assert_near(&p, &[1.9, -3.8]);
}

#[test]
fn adam_hyper_bias_corrections() {
    let h = AdamHyper::at_step(0.01, 0.9, 0.95, 1e-8, 0.0, 2);
    assert_near(&[h.bias_correction1, h.bias_correction2], &[1.0 - 0.81, 1.0 - 0.9025]);
    assert_eq!(std::mem::size_of::<AdamHyper>(), 8 * 4, "the uniform holds 8 f32");
}

// ---------------------------------------------------------------- per-channel helpers

#[test]
fn channels_map_elements_to_parameter_entries() {
    let c = Channels::per_channel(3, 1);
    assert_eq!((0..7).map(|i| c.of(i)).collect::<Vec<_>>(), [3, 4, 5, 3, 4, 5, 3]);
    let h = Channels::per_head(2, 3);
    assert_eq!((0..8).map(|i| h.of(i)).collect::<Vec<_>>(), [0, 0, 0, 1, 1, 1, 0, 0]);
}

#[test]
fn scale_fwd_and_bwd_use_the_head_gain() {
    let ch = Channels::per_head(2, 2); // rows of 2 heads x 2
    let x = [1f32, 2., 3., 4., 5., 6., 7., 8.];
    let s = [10f32, -1.];
    let mut y = [0f32; 8];
    scale_fwd(&mut y, &x, &s, ch);
    assert_exact(&y, &[10., 20., -3., -4., 50., 60., -7., -8.]);
    let mut dx = [1f32; 8];
    scale_bwd(&mut dx, &[1.; 8], &s, ch);
    assert_exact(&dx, &[11., 11., 0., 0., 11., 11., 0., 0.]);
    // d gain = sum over the head's elements of dy * x: head 0 sees 1+2+5+6.
    let mut ds = [0.5f32, 0.];
    channel_dot(&mut ds, &[1.; 8], &x, ch);
    assert_exact(&ds, &[14.5, 22.]);
    // The same in the GPU's two stages: one block per head here, so the partials are the
    // heads' sums [14, 22], then added onto ds.
    assert_eq!(channel_blocks(8, ch), 1);
    let mut partials = [9f32; 2];
    channel_dot_partial(&mut partials, &[1.; 8], &x, ch);
    assert_exact(&partials, &[14., 22.]);
    let mut ds = [0.5f32, 0.];
    channel_sum(&mut ds, &partials, 2, 0);
    assert_exact(&ds, &[14.5, 22.]);
}

#[test]
fn channel_dot_partials_split_each_channel_into_blocks_of_4096() {
    // Two channels (group 1), 4097 rows: each channel's 4097 elements make two blocks, the
    // second of one element (the last row). partials [2 blocks, 2 channels].
    let ch = Channels { group: 1, channels: 2, offset: 1 };
    let count = 2 * 4097;
    assert_eq!(channel_blocks(count, ch), 2);
    let a = vec![1f32; count];
    let b: Vec<f32> = (0..count).map(|i| if i < count - 2 { 1.0 } else { 10.0 + i as f32 % 2.0 }).collect();
    let mut partials = [0f32; 4];
    channel_dot_partial(&mut partials, &a, &b, ch);
    assert_exact(&partials, &[4096., 4096., 10., 11.]);
    // The sum writes at the offset: out[1 + c] += 4096 + 10 (+ 1).
    let mut out = [7f32, 1., 2.];
    channel_sum(&mut out, &partials, 2, 1);
    assert_exact(&out, &[7., 4107., 4109.]);
}

#[test]
fn scaled_add_reads_the_selected_row() {
    // skip_weights [2, 3]: row 1 is [4, 5, 6].
    let ch = Channels::per_channel(3, 1);
    let sw = [1f32, 2., 3., 4., 5., 6.];
    let a = [1f32; 6];
    let b = [1f32, 1., 1., 2., 2., 2.];
    let mut out = [0f32; 6];
    scaled_add_fwd(&mut out, &a, &b, &sw, ch);
    assert_exact(&out, &[5., 6., 7., 9., 11., 13.]);
    let (mut da, mut db) = ([0f32; 6], [1f32; 6]);
    scaled_add_bwd(&mut da, &mut db, &[1., 2., 3., 4., 5., 6.], &sw, ch);
    assert_exact(&da, &[1., 2., 3., 4., 5., 6.]);
    assert_exact(&db, &[5., 11., 19., 17., 26., 37.]);
    // The gradient of row 1 lands at entries 3..6 of the [2, 3] parameter gradient.
    let mut dsw = [0f32; 6];
    channel_dot(&mut dsw, &[1., 2., 3., 4., 5., 6.], &b, ch);
    assert_exact(&dsw, &[0., 0., 0., 9., 12., 15.]);
}

#[test]
fn mix_blends_two_streams_per_channel() {
    let ch = Channels::per_channel(2, 0);
    let mix = [1f32, 0.5, 0., 2.]; // row 0: [1, 0.5], row 1: [0, 2]
    let a = [1f32, 2., 3., 4.];
    let b = [10f32, 20., 30., 40.];
    let mut out = [0f32; 4];
    mix_fwd(&mut out, &a, &b, &mix, ch);
    assert_exact(&out, &[1., 41., 3., 82.]);
    let (mut da, mut db) = ([0f32; 4], [0f32; 4]);
    mix_bwd(&mut da, &mut db, &[1.; 4], &mix, ch);
    assert_exact(&da, &[1., 0.5, 1., 0.5]);
    assert_exact(&db, &[0., 2., 0., 2.]);
    // d mix row 0 = sum dout * a per channel, row 1 = sum dout * b (offset 2).
    let mut dmix = [0f32; 4];
    channel_dot(&mut dmix, &[1.; 4], &a, Channels::per_channel(2, 0));
    channel_dot(&mut dmix, &[1.; 4], &b, Channels::per_channel(2, 1));
    assert_exact(&dmix, &[4., 6., 40., 60.]);
}

#[test]
fn add_into_adds() {
    let mut dst = [1f32, 2., 3.];
    add_into(&mut dst, &[10., 20., 30.]);
    assert_exact(&dst, &[11., 22., 33.]);
}
