//! Snapshots of small, seeded GPU kernel outputs, rounded to 4 significant digits: a record
//! of what the kernels compute on inputs small enough to read, which catches any change of
//! semantics (layout, sign convention, scaling) even where the CPU reference changed with it.
//!
//! Inputs are multiples of 0.01 (of 0.25 for the matmul) so the snapshot shows them exactly.
//! To accept a deliberate change: `INSTA_UPDATE=always cargo test --test gpu_snapshots`, then
//! review the diff of `tests/snapshots/` (`cargo insta` is not needed). With `CI=true` a
//! missing snapshot is a failure.

mod common;

use common::{render, Data};
use wgolf::exec::Executor;
use wgolf::ops::adamw::AdamHyper;
use wgolf::ops::attention::AttnShape;
use wgolf::ops::matmul::Layout;
use wgolf::ops::rmsnorm::RMS_EPS;
use wgolf::ops::rope::rope_table;
use wgolf::plan::defs::*;
use wgolf::plan::{Op, Phase};

/// `n` seeded values in [lo, hi), rounded to multiples of 0.01.
fn inputs(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    common::uniform(seed, n, lo, hi).into_iter().map(|v| (v * 100.0).round() / 100.0).collect()
}

/// Runs `op` on the GPU from `data` (one entry per binding, read-write ones included).
fn gpu_run(op: Op, data: &[Data]) -> Vec<(usize, Vec<f32>)> {
    common::run_gpu(&op, data)
}

/// A titled block of values, `per_line` to a line.
fn block(title: &str, values: &[f32], per_line: usize) -> String {
    format!("{title}:\n{}\n", render(values, per_line))
}

#[test]
fn matmul_nt_4x5x3() {
    // Quarters: exact in f16 as well, so that the products and sums are exact on every
    // device, including those where the matmul runs on f16 cooperative matrices.
    let (m, n, k) = (4, 5, 3);
    let quarters = |seed, len| -> Vec<f32> {
        common::uniform(seed, len, -2.0, 2.0).into_iter().map(|v| (v * 4.0).round() / 4.0).collect()
    };
    let a = quarters(1, m * k);
    let b = quarters(2, n * k);
    let out = gpu_run(
        Op::Matmul(Matmul { m, n, k, layout: Layout::Nt, accumulate: false, a_prescale_exp: 0 }),
        &[Data::F32(vec![0.0; m * n]), Data::F32(a.clone()), Data::F32(b.clone())],
    );
    let text = [block("a [4, 3]", &a, k), block("b [5, 3]", &b, k), block("c = a . b^T [4, 5]", &out[0].1, n)].concat();
    insta::assert_snapshot!("matmul_nt_4x5x3", text);
}

#[test]
fn rmsnorm_fwd_3x4() {
    let (rows, dim) = (3, 4);
    let x = inputs(3, rows * dim, -2.0, 2.0);
    let out = gpu_run(
        Op::RmsNormFwd(RmsNormFwd { rows, dim, eps: RMS_EPS }),
        &[Data::F32(vec![0.0; rows * dim]), Data::F32(vec![0.0; rows]), Data::F32(x.clone())],
    );
    let text =
        [block("x [3, 4]", &x, dim), block("y [3, 4]", &out[0].1, dim), block("rstd [3]", &out[1].1, rows)].concat();
    insta::assert_snapshot!("rmsnorm_fwd_3x4", text);
}

#[test]
fn rope_fwd_3_positions() {
    // 3 rows (positions 0, 1, 2) of 2 heads x head_dim 4, base 100 so both frequencies turn.
    let (rows, heads, head_dim, seq_len) = (3, 2, 4, 3);
    let n = rows * heads * head_dim;
    let x = inputs(4, n, -1.0, 1.0);
    let table = rope_table(seq_len, head_dim, 100.0);
    let out = gpu_run(
        Op::Rope(Rope { rows, heads, head_dim, seq_len, inverse: false }),
        &[Data::F32(vec![0.0; n]), Data::F32(x.clone()), Data::F32(table.clone())],
    );
    let text = [
        block("table [cos|sin, 3, 2]", &table, 2),
        block("x [3, 2 x 4]", &x, heads * head_dim),
        block("rope(x)", &out[0].1, heads * head_dim),
    ]
    .concat();
    insta::assert_snapshot!("rope_fwd_3_positions", text);
}

#[test]
fn attention_fwd_tiny() {
    // 1 sequence of 3 tokens, 2 query heads sharing 1 KV head, head_dim 2.
    let s = AttnShape { batch: 1, seq: 3, heads: 2, kv_heads: 1, head_dim: 2 };
    let q = inputs(5, 12, -2.0, 2.0);
    let k = inputs(6, 6, -2.0, 2.0);
    let v = inputs(7, 6, -1.0, 1.0);
    let out = gpu_run(
        Op::AttentionFwd(AttentionFwd(s)),
        &[
            Data::F32(vec![0.0; 12]),
            Data::F32(vec![0.0; 6]),
            Data::F32(q.clone()),
            Data::F32(k.clone()),
            Data::F32(v.clone()),
        ],
    );
    let text = [
        block("q [3, 2 x 2]", &q, 4),
        block("k [3, 1 x 2]", &k, 2),
        block("v [3, 1 x 2]", &v, 2),
        block("out [3, 2 x 2]", &out[0].1, 4),
        block("lse [2 heads, 3]", &out[1].1, 3),
    ]
    .concat();
    insta::assert_snapshot!("attention_fwd_tiny", text);
}

#[test]
fn cross_entropy_loss_rows_and_gradient() {
    let (rows, vocab) = (3, 6);
    let logits = inputs(8, rows * vocab, -3.0, 3.0);
    let targets = vec![0u32, 5, 2];
    let out = gpu_run(
        Op::CrossEntropy(CrossEntropy { rows, vocab, softcap: 2.0, grad_scale: 0.5, write_grad: true }),
        &[
            Data::F32(vec![0.0; rows * vocab]),
            Data::F32(vec![0.0; rows]),
            Data::F32(logits.clone()),
            Data::U32(targets.clone()),
        ],
    );
    let text = [
        block("logits [3, 6] (softcap 2, grad_scale 0.5)", &logits, vocab),
        format!("targets: {targets:?}\n"),
        block("loss rows", &out[1].1, rows),
        block("dlogits", &out[0].1, vocab),
    ]
    .concat();
    insta::assert_snapshot!("cross_entropy_loss_rows_and_gradient", text);
}

#[test]
fn adamw_after_two_steps() {
    let count = 6;
    let op = Op::AdamW(AdamW { count });
    let plan = common::plan_of(&op);
    let mut ex = common::gpu_executor(&plan);
    let p = inputs(9, count, -1.0, 1.0);
    ex.write(0, Data::F32(p.clone()).host()).unwrap();
    ex.clear(&[1, 2]).unwrap();
    let mut text = block("p0", &p, count);
    for step in 1..=2u32 {
        let g = inputs(10 + step as u64, count, -1.0, 1.0);
        let h = AdamHyper::at_step(0.1, 0.9, 0.95, 1e-8, 0.1, step);
        ex.write(3, Data::F32(g.clone()).host()).unwrap();
        // No clipping: the coefficient the gradient is multiplied by is 1.
        ex.write(4, Data::F32(vec![1.0]).host()).unwrap();
        ex.write(5, Data::F32(bytemuck::cast_slice(&[h]).to_vec()).host()).unwrap();
        ex.run(Phase::Forward, 0..1).unwrap();
        text += &block(&format!("g{step} (lr 0.1, wd 0.1)"), &g, count);
        text += &block(&format!("p{step}"), &ex.read(0).unwrap(), count);
    }
    text += &block("m2", &ex.read(1).unwrap(), count);
    text += &block("v2", &ex.read(2).unwrap(), count);
    insta::assert_snapshot!("adamw_after_two_steps", text);
}

#[test]
fn embedding_bwd_and_channel_dot() {
    // Scatter-add with repeated ids, and a per-head gain gradient (group 2, offset 1).
    let (tokens, dim, vocab) = (5, 2, 4);
    let dout = inputs(12, tokens * dim, -1.0, 1.0);
    let tok = vec![3u32, 0, 3, 3, 1];
    let dtable = gpu_run(
        Op::EmbeddingBwd(EmbeddingBwd { tokens, dim, vocab }),
        &[
            Data::F32(vec![0.0; vocab * dim]),
            Data::F32(dout.clone()),
            Data::U32(wgolf::ops::embedding::id_index(&tok, vocab).unwrap()),
        ],
    );
    let ch = wgolf::ops::elementwise::Channels { group: 2, channels: 2, offset: 1 };
    let (a, b) = (inputs(13, 8, -1.0, 1.0), inputs(14, 8, -1.0, 1.0));
    let partial = ChannelDotPartial::new(8, ch);
    let partials = gpu_run(Op::from(partial), &[Data::F32(vec![0.0; 2]), Data::F32(a.clone()), Data::F32(b.clone())]);
    let sum = ChannelSum { channels: 2, blocks: partial.blocks(), offset: 1, out_len: 3 };
    let dot = gpu_run(Op::from(sum), &[Data::F32(vec![0.0; 3]), Data::F32(partials[0].1.clone())]);
    let text = [
        format!("ids: {tok:?}\n"),
        block("dout [5, 2]", &dout, dim),
        block("dtable [4, 2]", &dtable[0].1, dim),
        block("a (rows of 2 channels x group 2)", &a, 4),
        block("b", &b, 4),
        block("channel_dot at offset 1 [3]", &dot[0].1, 3),
    ]
    .concat();
    insta::assert_snapshot!("embedding_bwd_and_channel_dot", text);
}

#[test]
fn rendering_rounds_to_four_significant_digits() {
    let cases = [
        (0.0, "0"),
        (-0.0, "0"),
        (0.36, "0.36"),
        (1.0, "1"),
        (-1.2476, "-1.248"),
        (9.99996, "10"),
        (0.009765, "0.009765"),
        (123456.0, "123500"),
        (1234567.0, "1.235e6"),
        (12346.0, "12350"),
        (1.5e-7, "1.5e-7"),
    ];
    for (v, want) in cases {
        assert_eq!(common::sig4(v), want, "{v}");
    }
}
