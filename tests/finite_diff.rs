//! Every analytic backward of the CPU reference against central finite differences of its
//! forward, in f64.
//!
//! Each check builds a scalar objective `L = sum(w * forward(x))` with fixed random weights
//! `w` (so the output gradient fed to the backward is `w`), differentiates `L` numerically in
//! every input coordinate, and compares with the backward's result. Backwards accumulate, so
//! each one starts from random (nonzero) gradient buffers and the check reads the increment.
//! The comparison uses `tolerance(Check::FiniteDiff)`.
//!
//! The last test does the same for the whole model: the plan's hand-written backward against
//! directional finite differences of its loss, through the CPU executor in f64.

mod common;

use common::{ids, increment, numeric_grad, uniform_f64, weighted};
use wgolf::config::Config;
use wgolf::exec::cpu::CpuExecutor;
use wgolf::exec::Executor;
use wgolf::init::init_params;
use wgolf::model::build_plan;
use wgolf::ops::attention::{attention_bwd_kv, attention_bwd_q, attention_fwd, AttnShape};
use wgolf::ops::cross_entropy::cross_entropy;
use wgolf::ops::elementwise::{
    add_into, channel_blocks, channel_dot, channel_dot_partial, channel_sum, mix_bwd, mix_fwd, relu2_bwd, relu2_fwd,
    scale_bwd, scale_fwd, scaled_add_bwd, scaled_add_fwd, Channels,
};
use wgolf::ops::embedding::{embedding_bwd, embedding_bwd_indexed, embedding_fwd, id_index};
use wgolf::ops::matmul::{matmul, Layout};
use wgolf::ops::rmsnorm::{rmsnorm_bwd, rmsnorm_fwd, RMS_EPS};
use wgolf::ops::rope::{rope, rope_table};
use wgolf::plan::{Phase, Plan, TensorId};
use wgolf::tolerance::{first_mismatch, tolerance, Check};

/// Compares an analytic gradient with the numeric one of `f` at `x`.
fn check(what: &str, analytic: &[f64], x: &[f64], f: impl Fn(&[f64]) -> f64) {
    let scale: Vec<f64> = x.iter().map(|v| v.abs().max(1.0)).collect();
    let numeric = numeric_grad(x, &scale, f);
    assert_eq!(analytic.len(), numeric.len(), "{what}: gradient length");
    let got: Vec<f32> = analytic.iter().map(|&v| v as f32).collect();
    let want: Vec<f32> = numeric.iter().map(|&v| v as f32).collect();
    let tol = tolerance(Check::FiniteDiff);
    if let Some((i, g, w)) = first_mismatch(&got, &want, tol) {
        panic!(
            "{what}: analytic gradient [{i}] = {g:e}, finite differences give {w:e} \
             (analytic {:e}, numeric {:e}, tolerance {tol:?})",
            analytic[i], numeric[i]
        );
    }
    // Guard against a vacuous pass: the gradient must not be all zeros.
    assert!(analytic.iter().any(|&v| v.abs() > 1e-3), "{what}: the gradient is (nearly) zero everywhere");
}

#[test]
fn embedding_bwd_is_the_gradient_of_the_table() {
    let (vocab, dim) = (6, 3);
    // Repeated ids (2 three times), and ids 1, 3 never used (zero gradient rows).
    let tok = [2u32, 0, 2, 4, 2, 5];
    let table = uniform_f64(1, vocab * dim, -1.0, 1.0);
    let w = uniform_f64(2, tok.len() * dim, -1.0, 1.0);
    let f = |table: &[f64]| {
        let mut out = vec![0.0; tok.len() * dim];
        embedding_fwd(&mut out, table, &tok, dim);
        weighted(&w, &out)
    };
    let dtable = increment(vocab * dim, 3, |d| embedding_bwd(d, &w, &tok, dim));
    check("embedding_bwd dtable", &dtable, &table, f);
    // Also with random ids over a larger vocabulary.
    let tok = ids(4, 20, 9);
    let table = uniform_f64(5, 9 * dim, -1.0, 1.0);
    let w = uniform_f64(6, 20 * dim, -1.0, 1.0);
    let f = |table: &[f64]| {
        let mut out = vec![0.0; 20 * dim];
        embedding_fwd(&mut out, table, &tok, dim);
        weighted(&w, &out)
    };
    let dtable = increment(9 * dim, 7, |d| embedding_bwd(d, &w, &tok, dim));
    check("embedding_bwd dtable (random ids)", &dtable, &table, f);
    // The kernel's form, from the host's index of the ids' positions.
    let index = id_index(&tok, 9).unwrap();
    let dtable = increment(9 * dim, 7, |d| embedding_bwd_indexed(d, &w, &index, 9, dim));
    check("embedding_bwd_indexed dtable", &dtable, &table, f);
}

#[test]
fn rmsnorm_bwd_is_the_gradient_of_rmsnorm() {
    let (rows, dim) = (4, 5);
    let mut x = uniform_f64(10, rows * dim, -2.0, 2.0);
    // One row with a tiny scale, where eps matters.
    for v in &mut x[dim..2 * dim] {
        *v *= 1e-3;
    }
    let w = uniform_f64(11, rows * dim, -1.0, 1.0);
    let fwd = |x: &[f64]| {
        let (mut y, mut rstd) = (vec![0.0; rows * dim], vec![0.0; rows]);
        rmsnorm_fwd(&mut y, &mut rstd, x, dim, RMS_EPS);
        (y, rstd)
    };
    let (y, rstd) = fwd(&x);
    let dx = increment(rows * dim, 12, |d| rmsnorm_bwd(d, &w, &y, &rstd, dim));
    check("rmsnorm_bwd dx", &dx, &x, |x| weighted(&w, &fwd(x).0));
}

#[test]
fn matmul_gradients_of_an_nt_product_are_the_nn_and_tn_products() {
    // C[M,N] = A[M,K] . B[N,K]^T (a linear layer's forward, y = x W^T).
    let (m, n, k) = (3, 4, 5);
    let a = uniform_f64(20, m * k, -1.0, 1.0);
    let b = uniform_f64(21, n * k, -1.0, 1.0);
    let w = uniform_f64(22, m * n, -1.0, 1.0);
    let fwd = |a: &[f64], b: &[f64]| {
        let mut c = vec![0.0; m * n];
        matmul(&mut c, a, b, m, n, k, Layout::Nt, false);
        weighted(&w, &c)
    };
    // dA = dC . B: Nn with (m, n, k) = (M, K, N), as the model's input gradients.
    let da = increment(m * k, 23, |d| matmul(d, &w, &b, m, k, n, Layout::Nn, true));
    check("matmul dA = dC . B (nn)", &da, &a, |a| fwd(a, &b));
    // dB = dC^T . A: Tn with (m, n, k) = (N, K, M), as the model's weight gradients.
    let db = increment(n * k, 24, |d| matmul(d, &w, &a, n, k, m, Layout::Tn, true));
    check("matmul dB = dC^T . A (tn)", &db, &b, |b| fwd(&a, b));
}

#[test]
fn rope_inverse_is_the_gradient_of_rope() {
    let (rows, heads, hd, seq) = (5, 2, 6, 3); // rows wrap around the positions
    let table = rope_table(seq, hd, 10000.0);
    let x = uniform_f64(30, rows * heads * hd, -1.0, 1.0);
    let w = uniform_f64(31, rows * heads * hd, -1.0, 1.0);
    let f = |x: &[f64]| {
        let mut y = vec![0.0; x.len()];
        rope(&mut y, x, &table, heads, hd, seq, false);
        weighted(&w, &y)
    };
    let dx = increment(x.len(), 32, |d| rope(d, &w, &table, heads, hd, seq, true));
    check("rope inverse dx", &dx, &x, f);
}

#[test]
fn attention_bwd_q_and_kv_are_the_gradients_of_attention() {
    for s in [
        AttnShape { batch: 2, seq: 5, heads: 4, kv_heads: 2, head_dim: 4 },
        AttnShape { batch: 1, seq: 3, heads: 2, kv_heads: 2, head_dim: 2 },
        AttnShape { batch: 1, seq: 4, heads: 3, kv_heads: 1, head_dim: 6 },
    ] {
        let rows = s.batch * s.seq;
        let (nq, nkv, nl) = (rows * s.heads * s.head_dim, rows * s.kv_heads * s.head_dim, s.batch * s.heads * s.seq);
        // Scores of order 1 so that the softmax is neither flat nor one-hot.
        let q = uniform_f64(40, nq, -1.5, 1.5);
        let k = uniform_f64(41, nkv, -1.5, 1.5);
        let v = uniform_f64(42, nkv, -1.0, 1.0);
        let w = uniform_f64(43, nq, -1.0, 1.0);
        let fwd = |q: &[f64], k: &[f64], v: &[f64]| {
            let (mut out, mut lse) = (vec![0.0; nq], vec![0.0; nl]);
            attention_fwd(&mut out, &mut lse, q, k, v, s);
            (out, lse)
        };
        let (out, lse) = fwd(&q, &k, &v);
        let mut delta = vec![0.0; nl];
        let dq = increment(nq, 44, |d| attention_bwd_q(d, &mut delta, &w, &out, &q, &k, &v, &lse, s));
        // delta_t = dout_t . out_t per (b, h, t).
        for b in 0..s.batch {
            for h in 0..s.heads {
                for t in 0..s.seq {
                    let o = ((b * s.seq + t) * s.heads + h) * s.head_dim;
                    let want = weighted(&w[o..o + s.head_dim], &out[o..o + s.head_dim]);
                    let got = delta[(b * s.heads + h) * s.seq + t];
                    assert!((got - want).abs() < 1e-12, "{s:?}: delta[{b},{h},{t}] = {got}, want {want}");
                }
            }
        }
        let mut dv = Vec::new();
        let dk = increment(nkv, 45, |dk_buf| {
            dv = increment(nkv, 46, |dv_buf| attention_bwd_kv(dk_buf, dv_buf, &w, &q, &k, &v, &lse, &delta, s));
        });
        check(&format!("attention dq {s:?}"), &dq, &q, |q| weighted(&w, &fwd(q, &k, &v).0));
        check(&format!("attention dk {s:?}"), &dk, &k, |k| weighted(&w, &fwd(&q, k, &v).0));
        check(&format!("attention dv {s:?}"), &dv, &v, |v| weighted(&w, &fwd(&q, &k, v).0));
    }
}

#[test]
fn relu2_bwd_is_the_gradient_of_relu2() {
    // Keep away from the kink at 0, where the second derivative jumps.
    let x: Vec<f64> =
        uniform_f64(50, 40, -2.0, 2.0).into_iter().map(|v| if v.abs() < 0.05 { v + 0.1 } else { v }).collect();
    assert!(x.iter().any(|&v| v < 0.0) && x.iter().any(|&v| v > 0.0));
    let w = uniform_f64(51, 40, -1.0, 1.0);
    let f = |x: &[f64]| {
        let mut y = vec![0.0; x.len()];
        relu2_fwd(&mut y, x);
        weighted(&w, &y)
    };
    let dx = increment(40, 52, |d| relu2_bwd(d, &w, &x));
    check("relu2_bwd dx", &dx, &x, f);
}

#[test]
fn scale_bwd_and_channel_dot_are_the_gradients_of_scale() {
    // Per head (q_gain: 3 heads x head_dim 2, 4 rows) and per channel from a row at an offset.
    for (ch, count, s_len) in [(Channels::per_head(3, 2), 24, 3), (Channels::per_channel(4, 1), 12, 8)] {
        let x = uniform_f64(60, count, -1.0, 1.0);
        let s = uniform_f64(61, s_len, 0.5, 2.0);
        let w = uniform_f64(62, count, -1.0, 1.0);
        let fwd = |x: &[f64], s: &[f64]| {
            let mut y = vec![0.0; count];
            scale_fwd(&mut y, x, s, ch);
            weighted(&w, &y)
        };
        let dx = increment(count, 63, |d| scale_bwd(d, &w, &s, ch));
        check(&format!("scale_bwd dx {ch:?}"), &dx, &x, |x| fwd(x, &s));
        let ds = increment(s_len, 64, |d| channel_dot(d, &w, &x, ch));
        check(&format!("channel_dot d gain {ch:?}"), &ds, &s, |s| fwd(&x, s));
        // The kernels' two stages: partials per block of each channel, then their sum.
        let ds = increment(s_len, 64, |d| two_stage_channel_dot(d, &w, &x, ch));
        check(&format!("channel_dot_partial + channel_sum d gain {ch:?}"), &ds, &s, |s| fwd(&x, s));
    }
}

/// `channel_dot` as the GPU runs it: `channel_dot_partial`, then `channel_sum`.
fn two_stage_channel_dot(out: &mut [f64], a: &[f64], b: &[f64], ch: Channels) {
    let mut partials = vec![0.0; channel_blocks(a.len(), ch) * ch.channels];
    channel_dot_partial(&mut partials, a, b, ch);
    channel_sum(out, &partials, ch.channels, ch.offset);
}

#[test]
fn the_two_stage_channel_dot_over_many_blocks() {
    // One value scaling 3 x 4096 + 5 elements (bigram.scale's shape): four blocks.
    let (ch, count) = (Channels { group: 1, channels: 1, offset: 0 }, 3 * 4096 + 5);
    assert_eq!(channel_blocks(count, ch), 4);
    let x = uniform_f64(80, count, -1.0, 1.0);
    let s = [0.7];
    let w = uniform_f64(81, count, -1.0, 1.0);
    let fwd = |s: &[f64]| {
        let mut y = vec![0.0; count];
        scale_fwd(&mut y, &x, s, ch);
        weighted(&w, &y)
    };
    let ds = increment(1, 82, |d| two_stage_channel_dot(d, &w, &x, ch));
    check("channel_dot_partial + channel_sum d scale (4 blocks)", &ds, &s, fwd);
}

#[test]
fn scaled_add_bwd_and_channel_dot_are_the_gradients_of_scaled_add() {
    // skip_weights [2, 4], row 1; rows of 4 channels, 3 rows.
    let (ch, count, s_len) = (Channels::per_channel(4, 1), 12, 8);
    let a = uniform_f64(70, count, -1.0, 1.0);
    let b = uniform_f64(71, count, -1.0, 1.0);
    let s = uniform_f64(72, s_len, 0.5, 2.0);
    let w = uniform_f64(73, count, -1.0, 1.0);
    let fwd = |a: &[f64], b: &[f64], s: &[f64]| {
        let mut out = vec![0.0; count];
        scaled_add_fwd(&mut out, a, b, s, ch);
        weighted(&w, &out)
    };
    let mut db = Vec::new();
    let da = increment(count, 74, |da| db = increment(count, 75, |db| scaled_add_bwd(da, db, &w, &s, ch)));
    check("scaled_add_bwd da", &da, &a, |a| fwd(a, &b, &s));
    check("scaled_add_bwd db", &db, &b, |b| fwd(&a, b, &s));
    let ds = increment(s_len, 76, |d| channel_dot(d, &w, &b, ch));
    check("channel_dot d skip_weights", &ds, &s, |s| fwd(&a, &b, s));
}

#[test]
fn mix_bwd_and_channel_dot_are_the_gradients_of_mix() {
    let (dim, rows) = (4, 3);
    let count = dim * rows;
    let a = uniform_f64(80, count, -1.0, 1.0);
    let b = uniform_f64(81, count, -1.0, 1.0);
    let mix = uniform_f64(82, 2 * dim, -1.5, 1.5);
    let w = uniform_f64(83, count, -1.0, 1.0);
    let ch = Channels::per_channel(dim, 0);
    let fwd = |a: &[f64], b: &[f64], mix: &[f64]| {
        let mut out = vec![0.0; count];
        mix_fwd(&mut out, a, b, mix, ch);
        weighted(&w, &out)
    };
    let mut db = Vec::new();
    let da = increment(count, 84, |da| db = increment(count, 85, |db| mix_bwd(da, db, &w, &mix, ch)));
    check("mix_bwd da", &da, &a, |a| fwd(a, &b, &mix));
    check("mix_bwd db", &db, &b, |b| fwd(&a, b, &mix));
    // Both rows of the [2, dim] mix, as the model computes them: row 0 from a, row 1 from b.
    let dmix = increment(2 * dim, 86, |d| {
        channel_dot(d, &w, &a, Channels::per_channel(dim, 0));
        channel_dot(d, &w, &b, Channels::per_channel(dim, 1));
    });
    check("channel_dot d resid_mix (both rows)", &dmix, &mix, |mix| fwd(&a, &b, mix));
}

#[test]
fn add_into_sums_the_gradients_of_a_tensor_read_twice() {
    // The first U-Net skip reads one tensor x as both inputs of out = x + s * x. The backward
    // writes the two gradients to separate buffers and add_into sums them.
    let (ch, count) = (Channels::per_channel(3, 0), 9);
    let x = uniform_f64(90, count, -1.0, 1.0);
    let s = uniform_f64(91, 3, 0.5, 2.0);
    let w = uniform_f64(92, count, -1.0, 1.0);
    let f = |x: &[f64]| {
        let mut out = vec![0.0; count];
        scaled_add_fwd(&mut out, x, x, &s, ch);
        weighted(&w, &out)
    };
    let dx = increment(count, 93, |dx| {
        let mut dsrc = vec![0.0; count];
        scaled_add_bwd(dx, &mut dsrc, &w, &s, ch);
        add_into(dx, &dsrc);
    });
    check("scaled_add_bwd + add_into dx", &dx, &x, f);
}

#[test]
fn cross_entropy_gradient_with_softcap_and_grad_scale() {
    let (rows, vocab) = (3, 7);
    let (softcap, grad_scale) = (2.0, 0.37);
    // Logits beyond the cap, so that the tanh factor matters.
    let logits = uniform_f64(100, rows * vocab, -4.0, 4.0);
    let targets = [0u32, 6, 3];
    let f = |l: &[f64]| {
        let mut loss = vec![0.0; rows];
        cross_entropy(None, &mut loss, l, &targets, vocab, softcap, grad_scale);
        grad_scale * loss.iter().sum::<f64>()
    };
    // The gradient overwrites its buffer (it is the first write of dlogits).
    let mut dl = uniform_f64(101, rows * vocab, -1.0, 1.0);
    let mut loss = vec![0.0; rows];
    cross_entropy(Some(&mut dl), &mut loss, &logits, &targets, vocab, softcap, grad_scale);
    check("cross_entropy dlogits", &dl, &logits, f);
    // The loss rows are the same with and without the gradient.
    let mut loss2 = vec![0.0; rows];
    cross_entropy(None, &mut loss2, &logits, &targets, vocab, softcap, grad_scale);
    assert_eq!(loss, loss2);
}

// ---------------------------------------------------------------- the whole model

/// The plan's CPU executor in f64 from fresh (zeroed) tensors, with `params` and a batch.
fn f64_executor(
    plan: &Plan,
    cfg: &Config,
    params: &[(TensorId, Vec<f64>)],
    ids: &[u32],
    targets: &[u32],
) -> CpuExecutor<f64> {
    let mut ex = CpuExecutor::<f64>::in_precision(plan);
    for (id, data) in params {
        ex.write_real(*id, data);
    }
    // Token ids, targets and (for BigramHash) the bucket ids derived from them.
    wgolf::host::write_inputs(&mut ex, plan, cfg, ids, targets).unwrap();
    ex
}

fn run(ex: &mut CpuExecutor<f64>, plan: &Plan, phase: Phase) {
    ex.run(phase, 0..plan.steps(phase).len()).unwrap();
}

#[test]
fn the_models_backward_is_the_gradient_of_its_loss() {
    // The hand-written backward of the whole model (every parameter's gradient) against
    // directional finite differences of its loss, in f64. Four layers, so that both kinds of
    // U-Net skip occur: the first decoder's (whose source is the stream itself, summed back
    // with add_into) and the second's (from an earlier encoder).
    check_model_backward("configs/tiny.toml", &["train.batch_seqs=2", "train.seq_len=12", "model.num_layers=4"]);
}

#[test]
fn the_record_models_backward_is_the_gradient_of_its_loss() {
    // The same for the record's composition: BigramHash, SmearGate, XSA on the last two of
    // four blocks, OrthoInit, and the NTK RoPE base scaling (sequence 12 > base length 8).
    check_model_backward(
        "configs/record-tiny.toml",
        &[
            "train.batch_seqs=2",
            "train.seq_len=12",
            "train.grad_accum=1",
            "model.num_layers=4",
            "model.rope_ntk_base_len=8",
        ],
    );
}

/// The plan of `config` (with `overrides`) checked parameter by parameter: its backward's
/// directional derivative against central differences of its forward loss.
fn check_model_backward(config: &str, overrides: &[&str]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(config);
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let cfg = Config::load(&path, &overrides).unwrap_or_else(|e| panic!("{config} loads: {e}"));
    let plan = build_plan(&cfg).expect("the plan builds");
    // Perturbed init: zero-initialized projections and unit scales would zero many gradients.
    let params: Vec<(TensorId, Vec<f64>)> = init_params(&plan, 7)
        .into_iter()
        .enumerate()
        .map(|(i, (id, v))| {
            let noise = common::normal(500 + i as u64, v.len(), 0.05);
            (id, v.iter().zip(noise).map(|(&a, b)| (a + b) as f64).collect())
        })
        .collect();
    let n = cfg.micro_tokens();
    let tokens = ids(8, n + 1, cfg.model.vocab_size);
    let (tok, targets) = (&tokens[..n], &tokens[1..]);
    let loss = |params: &[(TensorId, Vec<f64>)]| {
        let mut ex = f64_executor(&plan, &cfg, params, tok, targets);
        run(&mut ex, &plan, Phase::Forward);
        ex.read_real(plan.io().loss_total)[0]
    };
    let mut ex = f64_executor(&plan, &cfg, &params, tok, targets);
    run(&mut ex, &plan, Phase::Forward);
    run(&mut ex, &plan, Phase::Backward);
    let l0 = ex.read_real(plan.io().loss_total)[0];
    assert!(l0 > 5.0 && l0 < 9.0, "implausible loss {l0} for a vocabulary of 1024");

    let tol = tolerance(Check::FiniteDiff);
    for (slot_index, slot) in plan.params.iter().enumerate() {
        let name = &plan.tensor(slot.param).name;
        let grad = ex.read_real(slot.grad);
        // A random unit direction: d/dh L(p + h u) = grad . u.
        let mut u = uniform_f64(900 + slot_index as u64, grad.len(), -1.0, 1.0);
        let norm = u.iter().map(|v| v * v).sum::<f64>().sqrt();
        u.iter_mut().for_each(|v| *v /= norm);
        let analytic: f64 = grad.iter().zip(&u).map(|(g, d)| g * d).sum();
        let h = 1e-5;
        let shifted = |sign: f64| {
            let mut p = params.clone();
            let (_, values) = p.iter_mut().find(|(id, _)| *id == slot.param).expect("a parameter");
            values.iter_mut().zip(&u).for_each(|(v, d)| *v += sign * h * d);
            loss(&p)
        };
        let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * h);
        let (a, w) = (analytic as f32, numeric as f32);
        assert!(
            first_mismatch(&[a], &[w], tol).is_none(),
            "{name}: the backward's directional derivative {analytic:e} differs from the finite \
             difference {numeric:e} (tolerance {tol:?})"
        );
        assert!(grad.iter().any(|&g| g != 0.0), "{name}: zero gradient");
    }
}
