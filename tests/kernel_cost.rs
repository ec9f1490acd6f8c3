//! The plan's kernel accounting (`plan::cost`, `OpDef::cost`): hand counts of single ops on
//! small shapes read off their shaders, the accounting of a hand-built plan with two
//! micro-batches, the flag rule, and a model plan's totals. No GPU.

use std::path::Path;

use wgolf::config::Config;
use wgolf::model::build_plan;
use wgolf::ops::attention::AttnShape;
use wgolf::ops::elementwise::Channels;
use wgolf::ops::matmul::Layout;
use wgolf::plan::cost::{self, account, underfills, LARGE_GPU_SMS, NEGLIGIBLE_BYTES, NEGLIGIBLE_FLOPS};
use wgolf::plan::{
    AdamW, AddInto, AttentionBwdKv, AttentionBwdQ, AttentionFwd, BatchedMatmul, ChannelDot, ChannelDotPartial,
    ChannelSum, ClipCoef, Cost, DType, EmbeddingBwd, GradSumSq, Init, Matmul, MatmulPartial, MatmulSplitSum,
    MuonNormalize, MuonSumSq, Op, OpDef, ParamGroup, Phase, PlanBuilder, Relu2Bwd, Relu2Fwd, Role, Sgd, SumRows,
};

/// A cost from element counts (4 bytes each), as the hand counts below are written.
fn elems(flops: u64, loads: u64, stores: u64) -> Cost {
    Cost { flops, bytes_read: 4 * loads, bytes_written: 4 * stores }
}

#[test]
fn matmul_every_layout() {
    // M 5, N 7, K 3: too small for more than the 4 x 4-invocation workgroup (16 x 16 tile),
    // one workgroup. Per BK = 16 slice (one, K ragged) it stages 16 x 16 of op(a) and of
    // op(b) (512 loads, clamped rows loaded like real ones) and each of its 16 invocations
    // does 16 multiply-adds per k of the slice (16 x 16 x 32 = 8,192 FLOPs). The 35 outputs
    // are stored once, times ALPHA (35 FLOPs); accumulating adds a load and an add each. The
    // layout changes neither.
    for layout in [Layout::Nt, Layout::Nn, Layout::Tn] {
        let plain = Matmul { m: 5, n: 7, k: 3, layout, accumulate: false, a_prescale_exp: 0 };
        assert_eq!(plain.cost(), elems(8192 + 35, 512, 35), "{layout:?}");
        let acc = Matmul { accumulate: true, ..plain };
        assert_eq!(acc.cost(), elems(8192 + 70, 512 + 35, 35), "{layout:?}");
        assert_eq!(cost::workgroups(&plain.into()), 1);
        let call = plain.kernel();
        assert!(call.constants.contains(&("WG_M", 4.0)) && call.constants.contains(&("WG_N", 4.0)));
    }
    // Without ragged edges, on 64 x 64 tiles (16 x 16 invocations: enough tiles for them),
    // every element of a and b is loaded once per tile of c it meets: 4 (2 M N K / 64)
    // bytes, 2 M N K FLOPs plus the scale.
    let (m, n, k) = (2048u64, 2048, 32);
    let exact = Matmul { m: 2048, n: 2048, k: 32, layout: Layout::Nt, accumulate: false, a_prescale_exp: 0 };
    assert_eq!(wgolf::plan::tile_edge(1, 2048, 2048, 32), 16);
    assert_eq!(
        exact.cost(),
        Cost { flops: 2 * m * n * k + m * n, bytes_read: 4 * 2 * m * n * k / 64, bytes_written: 4 * m * n }
    );
    assert_eq!(cost::workgroups(&exact.into()), 32 * 32);
    // Batched: the same per matrix, BATCH times; grid z = BATCH.
    let batched = BatchedMatmul { batch: 3, m: 5, n: 7, k: 3, layout: Layout::Nn, alpha: -0.5, accumulate: true };
    assert_eq!(batched.cost(), elems(3 * (8192 + 70), 3 * (512 + 35), 3 * 35));
    assert_eq!(cost::workgroups(&batched.into()), 3);
}

#[test]
fn split_k_matmul() {
    // 9 x 13 over K 75 in ranges of 32: splits of 32, 32 and 11 (2 + 2 + 1 slices of 16)
    // on one 16 x 16 tile each, grid z = split. Per slice 512 loads and 16 x 16 x 32 FLOPs;
    // each split stores its 117 partial outputs, times ALPHA = 1 as written.
    let partial = MatmulPartial { batch: 1, m: 9, n: 13, k: 75, k_split: 32, layout: Layout::Tn, a_prescale_exp: 0 };
    assert_eq!(partial.splits(), 3);
    assert_eq!(partial.cost(), elems(5 * 8192 + 3 * 117, 5 * 512, 3 * 117));
    assert_eq!(partial.kernel().workgroups, [1, 1, 3]);
    // Batched: z = batch x splits.
    let batched = MatmulPartial { batch: 2, ..partial };
    assert_eq!(batched.cost(), partial.cost().times(2));
    assert_eq!(batched.kernel().workgroups, [1, 1, 6]);
    // The combine: per output 5 partials loaded and added from zero, the scale, a store
    // (and with accumulate a load and an add); 234 outputs in 4 workgroups of 64.
    let sum = MatmulSplitSum { batch: 2, m: 9, n: 13, splits: 5, alpha: 0.5, accumulate: false };
    assert_eq!(sum.cost(), elems(234 * 6, 234 * 5, 234));
    assert_eq!(MatmulSplitSum { accumulate: true, ..sum }.cost(), elems(234 * 7, 234 * 6, 234));
    assert_eq!(cost::workgroups(&sum.into()), 4);
}

#[test]
fn the_split_rule_fills_a_large_gpu_at_the_record_shapes() {
    // The record's weight gradients over 98,304 tokens: 64 x 64 tiles, K cut into ranges of
    // at most MAX_SPLIT_K, at least 2 x 132 workgroups.
    use wgolf::plan::{split_k, tile_edge};
    for (m, n, want_split, want_splits) in
        [(256, 512, 8192, 12), (512, 128, 5792, 17), (512, 512, 8192, 12), (1536, 512, 8192, 12), (1024, 512, 8192, 12)]
    {
        let k = 98_304;
        assert_eq!(tile_edge(1, m, n, k), 16, "{m} x {n}");
        let k_split = split_k(1, m, n, k);
        assert_eq!(k_split, want_split, "{m} x {n}");
        let partial = MatmulPartial { batch: 1, m, n, k, k_split, layout: Layout::Tn, a_prescale_exp: 0 };
        assert_eq!(partial.splits(), want_splits, "{m} x {n}");
        assert!(cost::workgroups(&partial.into()) >= 2 * LARGE_GPU_SMS, "{m} x {n}");
    }
    // Products with tiles enough keep K whole: the forward and the input gradient.
    assert_eq!(split_k(1, 98_304, 512, 512), 512);
    assert_eq!(split_k(1, 98_304, 512, 1536), 1536);
    // The Newton-Schulz products of one 128 x 512 matrix: 16 x 16 tiles, K cut to 112 and 32.
    assert_eq!((tile_edge(1, 128, 128, 512), split_k(1, 128, 128, 512)), (4, 112));
    assert_eq!((tile_edge(1, 128, 128, 128), split_k(1, 128, 128, 128)), (4, 32));
    // A product of negligible work stays whole (latency, not a grid to widen), and so does
    // one whose K is at most MIN_SPLIT_K (two slices).
    assert_eq!(split_k(1, 5, 7, 4000), 4000);
    assert_eq!(split_k(1, 128, 128, 32), 32);
}

#[test]
fn elementwise_ops() {
    // add_into over 77 elements: dst and src loaded, one add, dst stored; 2 workgroups of 64.
    let add = AddInto { count: 77 };
    assert_eq!(add.cost(), elems(77, 154, 77));
    assert_eq!(cost::workgroups(&add.into()), 2);
    // relu2_fwd: max and square; relu2_bwd: dx += 2 max(x, 0) dy, 4 FLOPs, 3 loads.
    assert_eq!(Relu2Fwd { count: 77 }.cost(), elems(154, 77, 77));
    assert_eq!(Relu2Bwd { count: 77 }.cost(), elems(308, 231, 77));
}

#[test]
fn reductions() {
    // sum_rows over 300 values: one 256-lane workgroup loads each row once and adds it, the
    // tree adds 255 partial sums, lane 0 scales and adds into total (1 load, 1 store).
    let sum = SumRows { count: 300, scale: 0.5 };
    assert_eq!(sum.cost(), elems(300 + 255 + 2, 301, 1));
    assert_eq!(cost::workgroups(&sum.into()), 1);
    // channel_dot of 75 elements over 5 channels: per element a and b loaded and a
    // multiply-add (150 loads, 150 FLOPs); per channel workgroup a 64-lane tree (63 adds)
    // and out[c] += (1 load, 1 store, 1 add).
    let dot = ChannelDot { count: 75, ch: Channels { group: 3, channels: 5, offset: 2 }, out_len: 9 };
    assert_eq!(dot.cost(), elems(150 + 5 * 64, 150 + 5, 5));
    assert_eq!(cost::workgroups(&dot.into()), 5);
    // channel_dot_partial of 75 elements over 5 channels (15 each, one block): per element a
    // and b loaded and a multiply-add (150 loads, 150 FLOPs); per (channel, block) workgroup a
    // 64-lane tree (63 adds) and one store.
    let dot = ChannelDotPartial::new(75, Channels { group: 3, channels: 5, offset: 2 });
    assert_eq!(dot.blocks(), 1);
    assert_eq!(dot.cost(), elems(150 + 5 * 63, 150, 5));
    assert_eq!(cost::workgroups(&dot.into()), 5);
    // One channel of 9,000 elements: blocks of 4,096, so 3 workgroups, 3 partials.
    let long = ChannelDotPartial { count: 9000, group: 1, channels: 1 };
    assert_eq!(long.blocks(), 3);
    assert_eq!(long.cost(), elems(18_000 + 3 * 63, 18_000, 3));
    assert_eq!(cost::workgroups(&long.into()), 3);
    // channel_sum of 3 blocks into 5 channels: per channel the 3 partials loaded and added,
    // the 63-add tree, out[c] += (1 load, 1 add, 1 store).
    let sum = ChannelSum { channels: 5, blocks: 3, offset: 2, out_len: 9 };
    assert_eq!(sum.cost(), elems(5 * (3 + 63 + 1), 5 * 4, 5));
    assert_eq!(cost::workgroups(&sum.into()), 5);
    // grad_sum_sq over gradients of 300 and 2,100 elements: chunks of 1,024, so 1 + 3 = 4
    // workgroups; squares as multiply-adds (2 x 2,400 FLOPs), a 255-add tree and one store
    // per chunk.
    let sq = GradSumSq::new(&[300, 2100], 1, 6);
    assert_eq!(sq.chunks(), 4);
    assert_eq!(sq.cost(), elems(4800 + 4 * 255, 2400, 4));
    assert_eq!(cost::workgroups(&sq.into()), 4);
    // The padding bindings repeat the last gradient: seven gradient bindings of 300, 2100,
    // 2100, ... elements after the 6 partials.
    let lens: Vec<usize> = sq.bindings().iter().map(|b| b.len).collect();
    assert_eq!(lens, [6, 300, 2100, 2100, 2100, 2100, 2100, 2100]);
}

#[test]
fn embedding_backward_by_index() {
    // 9 tokens, dim 70, vocab 11: workgroups of 64 columns, 2 per row, 22 in all. Per (row,
    // column): two offsets, the table value loaded, one add and one store (770 of each); per
    // (token, column): the position and dout loaded, one add (630).
    let bwd = EmbeddingBwd { tokens: 9, dim: 70, vocab: 11 };
    assert_eq!(bwd.cost(), elems(630 + 770, 2 * 630 + 3 * 770, 770));
    assert_eq!(cost::workgroups(&bwd.into()), 22);
    // The index binding: 11 + 1 offsets, then the 9 positions.
    assert_eq!(bwd.bindings()[2].len, 21);
}

#[test]
fn muon_normalization_stages() {
    // Three 50 x 190 matrices (9,500 elements): chunks of 4,096, so 3 per matrix, 9
    // workgroups. muon_sum_sq: per element a load and a multiply-add; per chunk the 255-add
    // tree and one store.
    let sq = MuonSumSq { count: 3, a: 50, b: 190 };
    assert_eq!(sq.cost(), elems(2 * 28_500 + 9 * 255, 28_500, 9));
    assert_eq!(cost::workgroups(&sq.into()), 9);
    // muon_normalize: per workgroup the matrix's 3 partials loaded and added, the tree, sqrt
    // and add on all 256 lanes; per element a load, a division and a store.
    let norm = MuonNormalize { count: 3, a: 50, b: 190 };
    assert_eq!(norm.cost(), elems(9 * (3 + 255 + 512) + 28_500, 9 * 3 + 28_500, 28_500));
    assert_eq!(cost::workgroups(&norm.into()), 9);
}

#[test]
fn attention_tiny() {
    // One sequence of 3, 2 query heads over 1 KV head, head_dim 4 (one vec4 per row); 6
    // queries; the GPU kernel's 1 row per invocation. One workgroup holds both heads (a
    // group of 2, 32 queries per block) and stages keys 0..=2 once, padded to a step of 8
    // rows: K and V, 8 x 4 each, 64 loads; tiles are 512 / 1 -> 64 rows, one tile, one step.
    // All 64 invocations walk the step (masked past their query). Forward, per row and step:
    // the scores (two 4x4 matrix-vector products with their sums per vec4: 64), the softmax
    // (43), the accumulation (rescale 4, two vector-matrix products 56, two adds 8: 68): 175.
    // Per query: its q (4 loads), the end (log, add, 1 / l, 4 multiplies: 7); out (4) and
    // lse stored.
    let s = AttnShape { batch: 1, seq: 3, heads: 2, kv_heads: 1, head_dim: 4 };
    assert_eq!(AttentionFwd(s).cost(), elems(64 * 175 + 6 * 7, 8 * 8 + 6 * 4, 6 * 5));
    // bwd_q: the same staged 64 loads. Per query: q, dout, out (12 loads), dout . out (8 + 3
    // FLOPs), lse (1 load), delta stored, and dq += scale acc (4 loads, 4 stores, 8 FLOPs).
    // Per row and step: four matrix-vector products (128), p and ds (40), ds k (two
    // vector-matrix products and two adds: 64): 232.
    assert_eq!(AttentionBwdQ(s).cost(), elems(64 * 232 + 6 * 19, 8 * 8 + 6 * 17, 6 * 5));
    // bwd_kv: one workgroup of 64 keys (3 live). For each of the 2 heads it stages queries
    // 0..=2 padded to 8 rows: q and dout (8 loads per row), and every invocation reads the
    // step's lse and delta (16). Per key: k and v (8 loads), dv += acc (4 loads, 4 stores, 4
    // FLOPs), dk += scale acc (4, 4, 8). Per invocation, head, row and step: four
    // matrix-vector products (128), p and ds (40), the dv and dk accumulations (128): 296.
    assert_eq!(AttentionBwdKv(s).cost(), elems(2 * 64 * 296 + 3 * 12, 2 * (8 * 8 + 64 * 16) + 3 * 16, 3 * 8));
    assert_eq!(cost::workgroups(&AttentionFwd(s).into()), 1);
}

#[test]
fn optimizer_ops() {
    // AdamW per element: g, the clip coefficient, p, m, v loaded; p, m, v stored; 20 FLOPs
    // (the clip's product 1, decay 3, m 4, v 5, denominator 3, update 4).
    let adam = AdamW { count: 77 };
    assert_eq!(adam.cost(), elems(20 * 77, 5 * 77, 3 * 77));
    assert_eq!(cost::workgroups(&adam.into()), 2);
    // SGD per element: buf, g, the coefficient, p loaded; buf, p stored; the clip's product
    // and two multiply-adds (5 FLOPs).
    let sgd = Sgd { count: 77 };
    assert_eq!(sgd.cost(), elems(5 * 77, 4 * 77, 2 * 77));
    assert_eq!(cost::workgroups(&sgd.into()), 2);
    // clip_coef: one 256-lane workgroup; 3 partials loaded and added, the 255-add tree, then
    // sqrt, add, div, min, one store.
    let coef = ClipCoef { parts: 3, max_norm: 0.3 };
    assert_eq!(coef.cost(), elems(3 + 255 + 4, 3, 1));
    assert_eq!(cost::workgroups(&coef.into()), 1);
}

#[test]
fn every_example_op_has_a_cost() {
    for op in Op::examples() {
        let c = op.cost();
        let label = op.kernel().label();
        assert!(c.bytes_read > 0 && c.bytes_written > 0, "{label}: {c:?}");
        // The only op without arithmetic is the embedding gather.
        assert!(c.flops > 0 || op.kind() == "EmbeddingFwd", "{label}: {c:?}");
        assert!(cost::workgroups(&op) > 0, "{label}");
    }
}

/// Forward `h = x w^T`, `y = relu2(h)`; backward `dh += relu2'`, `dw += dh^T x`; AdamW on w.
fn small_plan() -> wgolf::plan::Plan {
    let mut g = PlanBuilder::new();
    let x = g.tensor("x", &[8, 4], DType::F32, Role::Input);
    let w = g.param("w", &[6, 4], ParamGroup::Matrix, Init::Zeros);
    let h = g.activation("h", &[8, 6]);
    let y = g.activation("y", &[8, 6]);
    g.push(
        Phase::Forward,
        Matmul { m: 8, n: 6, k: 4, layout: Layout::Nt, accumulate: false, a_prescale_exp: 0 },
        &[h, x, w],
    )
    .unwrap();
    g.push(Phase::Forward, Relu2Fwd { count: 48 }, &[y, h]).unwrap();
    let (dy, dh) = (g.grad(y), g.grad(h));
    let slot = g.params()[0];
    g.push(Phase::Backward, Relu2Bwd { count: 48 }, &[dh, dy, h]).unwrap();
    g.push(
        Phase::Backward,
        Matmul { m: 6, n: 4, k: 8, layout: Layout::Tn, accumulate: true, a_prescale_exp: 0 },
        &[slot.grad, dh, x],
    )
    .unwrap();
    let hyper = g.hyper(ParamGroup::Matrix);
    let clip = wgolf::optim::emit_clip(&mut g, &[], 0.0).unwrap();
    g.push(Phase::Optimizer, AdamW { count: 24 }, &[w, slot.m, slot.v, slot.grad, clip, hyper]).unwrap();
    g.finish_without_io().unwrap()
}

#[test]
fn small_plan_with_two_micro_batches() {
    let plan = small_plan();
    let acc = account(&plan, 2);
    let row = |kind: &str| acc.rows.iter().find(|r| r.kind == kind).unwrap_or_else(|| panic!("{kind} row"));
    // Forward and backward run twice, the optimizer once.
    assert_eq!(row("Matmul").dispatches, 4);
    assert_eq!(row("Relu2Fwd").dispatches, 2);
    assert_eq!(row("Relu2Bwd").dispatches, 2);
    assert_eq!(row("AdamW").dispatches, 1);
    assert_eq!(acc.rows.len(), 4);
    assert_eq!(acc.dispatches, 9);
    // The two matmuls: 8 x 6 x 4 nt and 6 x 4 x 8 tn accumulating, each one 16 x 16 tile of
    // 16 invocations, one K slice of 16 (16 x 16 x 32 FLOPs, 2 x 16 x 16 loads; see
    // matmul_every_layout) + the outputs' scale (48 and 24) and the accumulation (24 loads
    // and adds), each twice.
    let fwd = elems(8192 + 48, 512, 48);
    let bwd = elems(8192 + 48, 512 + 24, 24);
    assert_eq!(row("Matmul").cost, (fwd + bwd).times(2));
    assert_eq!((row("Matmul").min_workgroups, row("Matmul").max_workgroups), (1, 1));
    assert_eq!(row("AdamW").cost, elems(20 * 24, 5 * 24, 3 * 24));
    // Totals are the sums of the rows, and of the phases.
    let rows = acc.rows.iter().fold(Cost::default(), |a, r| a + r.cost);
    assert_eq!(acc.total, rows);
    let phases = acc.phases.iter().fold(Cost::default(), |a, p| a + p.2);
    assert_eq!(acc.total, phases);
    assert_eq!(acc.phases.iter().map(|p| p.1).sum::<u64>(), 9);
    // Everything here is tiny: nothing flagged.
    assert!(acc.flagged.is_empty());
    // Pipelines: the two matmuls differ in their constants; each other kind has one.
    assert_eq!(row("Matmul").pipelines, 2);
    assert_eq!([row("Relu2Fwd"), row("Relu2Bwd"), row("AdamW")].map(|r| r.pipelines), [1, 1, 1]);
    assert_eq!(acc.pipelines, 5);
    let md = acc.markdown();
    assert!(md.contains("| Matmul | `matmul` | 4 | 1 |"), "{md}");
    assert!(md.contains("| **step** | | **9** |"), "{md}");
    assert!(md.contains("| **0** | **5** |\n"), "{md}");
}

#[test]
fn the_flag_rule() {
    let big = Cost { flops: 0, bytes_read: NEGLIGIBLE_BYTES + 1, bytes_written: 0 };
    let at_limit = Cost { flops: NEGLIGIBLE_FLOPS, bytes_read: NEGLIGIBLE_BYTES - 4, bytes_written: 4 };
    let busy = Cost { flops: NEGLIGIBLE_FLOPS + 1, bytes_read: 0, bytes_written: 4 };
    assert!(underfills(LARGE_GPU_SMS - 1, &big));
    assert!(underfills(1, &busy));
    assert!(!underfills(LARGE_GPU_SMS, &big), "132 workgroups fill the GPU");
    assert!(!underfills(1, &at_limit), "work at the limits is negligible");
    // Ops: the record's K/V weight gradient (256 x 512 over 16,384 tokens) as one unsplit
    // Matmul launches 4 x 8 = 32 workgroups of 64 x 64 for 4 GFLOP (the model splits it
    // along K: `emit_matmul`); a forward of 16,384 rows launches 2,048; a 4 MiB
    // one-workgroup sum of squares; the clip coefficient and a short loss sum are tiny.
    let dw = Op::from(Matmul { m: 256, n: 512, k: 16384, layout: Layout::Tn, accumulate: true, a_prescale_exp: 0 });
    assert_eq!(cost::workgroups(&dw), 32);
    assert!(underfills(cost::workgroups(&dw), &dw.cost()));
    let wide = Op::from(Matmul { m: 16384, n: 512, k: 512, layout: Layout::Nt, accumulate: false, a_prescale_exp: 0 });
    assert_eq!(cost::workgroups(&wide), 2048);
    assert!(!underfills(cost::workgroups(&wide), &wide.cost()));
    // A 4 MiB gradient's sum of squares runs 1,024 chunks: not flagged.
    let norm = Op::from(GradSumSq::new(&[1 << 20], 0, 1 << 10));
    assert_eq!(cost::workgroups(&norm), 1 << 10);
    assert!(!underfills(cost::workgroups(&norm), &norm.cost()));
    for tiny in [Op::from(ClipCoef { parts: 100, max_norm: 0.3 }), Op::from(SumRows { count: 16384, scale: 1.0 })] {
        assert_eq!(cost::workgroups(&tiny), 1);
        assert!(!underfills(1, &tiny.cost()), "{}", tiny.kernel().label());
    }
    // In a plan: a flagged dispatch is counted per run and grouped by shape.
    let mut g = PlanBuilder::new();
    let a = g.tensor("a", &[16384, 256], DType::F32, Role::Input);
    let b = g.tensor("b", &[16384, 512], DType::F32, Role::Input);
    let c = g.activation("c", &[256, 512]);
    let n = g.activation("n", &[256, 512]);
    g.push(
        Phase::Backward,
        Matmul { m: 256, n: 512, k: 16384, layout: Layout::Tn, accumulate: true, a_prescale_exp: 0 },
        &[c, a, b],
    )
    .unwrap();
    // Two batched matmuls of that shape differing only in their scale: one flagged shape.
    for alpha in [1.0, 0.5] {
        let mm = BatchedMatmul { batch: 1, m: 256, n: 512, k: 16384, layout: Layout::Tn, alpha, accumulate: true };
        g.push(Phase::Optimizer, mm, &[n, a, b]).unwrap();
    }
    let acc = account(&g.finish_without_io().unwrap(), 3);
    assert_eq!(acc.flagged_dispatches(), 3 + 2);
    assert_eq!(acc.flagged.len(), 2);
    let batched = acc.flagged.iter().find(|f| f.kind == "BatchedMatmul").unwrap();
    assert_eq!((batched.dispatches, batched.workgroups), (2, 32));
    assert!(batched.label.contains("ALPHA=*"), "{}", batched.label);
    assert_eq!(acc.rows.iter().find(|r| r.kind == "Matmul").unwrap().flagged, 3);
}

#[test]
fn model_plan_totals() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/record-tiny.toml");
    let cfg = Config::load(&path, &["train.grad_accum=2".to_string()]).unwrap();
    let plan = build_plan(&cfg).unwrap();
    let acc = account(&plan, cfg.train.grad_accum);
    let micro = plan.steps(Phase::Forward).len() + plan.steps(Phase::Backward).len();
    assert_eq!(acc.dispatches as usize, 2 * micro + plan.steps(Phase::Optimizer).len());
    // Per kind, the dispatches and cost are those of its steps times their runs per step.
    for row in &acc.rows {
        let (mut dispatches, mut total) = (0, Cost::default());
        for (phase, step) in plan.all_steps() {
            if step.op.kind() == row.kind {
                let runs = cost::runs_per_step(phase, 2);
                dispatches += runs;
                total += step.op.cost().times(runs);
            }
        }
        assert_eq!((row.dispatches, row.cost), (dispatches, total), "{}", row.kind);
    }
    assert_eq!(acc.total, acc.rows.iter().fold(Cost::default(), |a, r| a + r.cost));
    assert_eq!(acc.total, acc.phases.iter().fold(Cost::default(), |a, p| a + p.2));
    let flagged: u64 = acc.rows.iter().map(|r| r.flagged).sum();
    assert_eq!(flagged, acc.flagged_dispatches());
}

#[test]
fn the_record_plans_reductions_fill_a_large_gpu() {
    // The record's shape (11 x 512, 16,384 tokens per micro-batch): the reductions (the
    // clip's and Muon's sums of squares, the channel reductions, the embedding and BigramHash
    // table gradients) launch at least LARGE_GPU_SMS workgroups wherever their work is not
    // negligible, and so do the matmuls (the weight gradients and the Newton-Schulz products
    // of the lone 128 x 512 matrix split along K): nothing is flagged.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/record.toml");
    let cfg = Config::load(&path, &[]).unwrap();
    let plan = build_plan(&cfg).unwrap();
    let acc = account(&plan, cfg.train.grad_accum);
    let flagged: Vec<&str> = acc.flagged.iter().map(|f| f.label.as_str()).collect();
    assert!(flagged.is_empty(), "flagged: {flagged:?}");
    assert!(acc.rows.iter().any(|r| r.kind == "MatmulPartial"), "the weight gradients are split");
    // Only the few-channel reductions (q_gain per layer, bigram.scale) take two stages.
    let sums = plan.steps(Phase::Backward).iter().filter(|s| s.op.kind() == "ChannelSum").count();
    assert_eq!(sums, cfg.model.num_layers + 1);
    // The clip reads every gradient in a few dispatches of seven, not one per tensor.
    let grads = plan.params.len();
    let sums = plan.steps(Phase::Optimizer).iter().filter(|s| s.op.kind() == "GradSumSq").count();
    assert_eq!(sums, grads.div_ceil(7), "{grads} gradients");
    for kind in ["GradSumSq", "ChannelDot", "ChannelDotPartial", "MuonSumSq", "MuonNormalize", "EmbeddingBwd"] {
        let row = acc.rows.iter().find(|r| r.kind == kind).unwrap_or_else(|| panic!("{kind} row"));
        assert!(row.max_workgroups >= LARGE_GPU_SMS, "{kind}: {row:?}");
    }
}

#[test]
fn per_site_values_do_not_multiply_the_record_plans_pipelines() {
    // Which matrix, offset or count a dispatch works on is a per-dispatch parameter
    // (KernelCall::params), not an override constant: one pipeline serves every site of these
    // kinds (67 Muon matrices, 17 clip groups, 116 gradients and EMA weights, 49 AdamW
    // tensors), and the record plan stays under a hundred (283 when they were constants).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/record.toml");
    let cfg = Config::load(&path, &[]).unwrap();
    let plan = build_plan(&cfg).unwrap();
    let acc = account(&plan, cfg.train.grad_accum);
    let row = |kind: &str| acc.rows.iter().find(|r| r.kind == kind).unwrap_or_else(|| panic!("{kind} row"));
    let one = ["MuonMomentum", "MuonApply", "MuonSumSq", "MuonNormalize", "GradSumSq", "EmaGroup", "AdamW"];
    for kind in one.into_iter().chain(["ChannelDot"]) {
        assert!(row(kind).dispatches > 1, "{kind}");
        assert_eq!(row(kind).pipelines, 1, "{kind}");
    }
    // The pipelines are the distinct (shader, entry, constants) of the steps.
    let labels: std::collections::BTreeSet<String> =
        plan.all_steps().map(|(_, s)| s.op.kernel().pipeline_label()).collect();
    assert_eq!(acc.pipelines as usize, labels.len());
    assert!(acc.pipelines < 100, "{} pipelines", acc.pipelines);
}

#[test]
fn a_calls_parameters_label_it_but_not_its_pipeline() {
    use wgolf::plan::defs::{Ema, MuonApply};
    let a = Op::MuonApply(MuonApply { rows: 7, cols: 5, index: 1, count: 3, shape_scale: 1.5 }).kernel();
    let b = Op::MuonApply(MuonApply { rows: 5, cols: 13, index: 0, count: 2, shape_scale: 1.0 }).kernel();
    assert_eq!(a.label(), "muon_apply[rows=7,cols=5,index=1,shape_scale=1.5]");
    assert_eq!(a.pipeline_label(), "muon:muon_apply[]");
    assert_eq!(a.pipeline_label(), b.pipeline_label());
    assert_eq!(a.param_words(), vec![7, 5, 1, 1.5f32.to_bits()]);
    // Constants stay in both labels; the site record is padded to 16 bytes.
    let e = Op::Ema(Ema { count: 77, decay: 0.5 }).kernel();
    assert_eq!(e.label(), "ema[DECAY=0.5,count=77]");
    assert_eq!(e.pipeline_label(), "ema:ema[DECAY=0.5]");
    assert_eq!(e.param_words(), vec![77, 0, 0, 0]);
    // A kernel without parameters has no site record.
    assert!(Op::Relu2Fwd(Relu2Fwd { count: 9 }).kernel().param_words().is_empty());
}
