//! Every GPU kernel against its CPU reference, on fixed lists of shapes including ragged ones
//! (sizes that are not multiples of the 4-wide register blocks, the 16-, 32- or 64-wide
//! matmul tiles and their 16-deep K slices, or the 64-wide workgroups), from the same seeded
//! inputs on both executors.
//!
//! Read-write bindings start from random values, so an accumulating kernel must add to them
//! and an overwriting one must ignore them. Comparisons use `tolerance(Check::KernelF32)`
//! (`Check::Optimizer` for AdamW; `Check::KernelF16` where the adapter replaces a kernel by an
//! f16 cooperative-matrix one, see `src/gpu/coop.rs`); a failure names the kernel that ran
//! (its label), the binding, the element and both values. Without a GPU adapter these tests
//! fail with the context's message.

mod common;

use common::{check_gpu_vs_cpu, check_gpu_vs_cpu_for, ids, random_inputs, uniform, Data};
use wgolf::exec::cpu::CpuExecutor;
use wgolf::exec::Executor;
use wgolf::ops::adamw::AdamHyper;
use wgolf::ops::attention::{attention_bwd_q, attention_fwd, AttnShape};
use wgolf::ops::elementwise::Channels;
use wgolf::ops::matmul::Layout;
use wgolf::ops::rmsnorm::{rmsnorm_fwd, RMS_EPS};
use wgolf::ops::rope::rope_table;
use wgolf::plan::defs::*;
use wgolf::plan::{KernelTarget, Op, Phase};
use wgolf::tolerance::{tolerance, Check};

fn kernel_tol() -> wgolf::tolerance::Tolerance {
    tolerance(Check::KernelF32)
}

/// Runs `op` on both executors from random inputs (seeded by `seed`) and compares.
fn check_random(op: Op, seed: u64) {
    check_both_targets(&op, &random_inputs(&op, seed));
}

/// Checks `op` against its CPU reference with the kernel tuned for each adapter kind whose
/// kernel differs (the matmul's tiles, the attention's rows per invocation), so the GPU
/// variant is checked on lavapipe and the CPU variant on a GPU (the attention's and the
/// matmul's CPU variants use subgroup operations, the matmul's on subgroups of exactly 8
/// invocations: on a device without those the CPU variant fails here, saying so).
fn check_both_targets(op: &Op, inputs: &[Data]) {
    check_gpu_vs_cpu_for(op, inputs, kernel_tol(), KernelTarget::Gpu);
    if op.kernel_for(KernelTarget::Cpu) != op.kernel_for(KernelTarget::Gpu) {
        check_gpu_vs_cpu_for(op, inputs, kernel_tol(), KernelTarget::Cpu);
    }
}

#[test]
fn every_op_variant_on_small_ragged_shapes() {
    for (i, op) in Op::examples().into_iter().enumerate() {
        check_random(op, 1000 + i as u64);
    }
}

#[test]
fn matmul_all_layouts_ragged_shapes() {
    for (m, n, k) in [(1, 1, 1), (5, 7, 3), (33, 17, 65), (64, 96, 48)] {
        for layout in [Layout::Nt, Layout::Nn, Layout::Tn] {
            for accumulate in [false, true] {
                check_random(
                    Op::Matmul(Matmul { m, n, k, layout, accumulate, a_prescale_exp: 0 }),
                    (m * 1000 + n * 10 + k) as u64,
                );
            }
        }
    }
}

#[test]
fn embedding_fwd_and_bwd() {
    for (tokens, dim, vocab) in [(1, 1, 1), (9, 5, 11), (130, 70, 1024), (257, 3, 4), (300, 130, 5)] {
        // (257, 3, 4): every id repeats many times in the scatter-add; (300, 130, 5): three
        // column blocks per table row, long runs.
        check_random(Op::EmbeddingFwd(EmbeddingFwd { tokens, dim, vocab }), tokens as u64);
        check_random(Op::EmbeddingBwd(EmbeddingBwd { tokens, dim, vocab }), tokens as u64 + 1);
    }
}

#[test]
fn rmsnorm_fwd_and_bwd() {
    for (rows, dim) in [(1, 16), (7, 9), (130, 64), (3, 1)] {
        check_random(Op::RmsNormFwd(RmsNormFwd { rows, dim, eps: RMS_EPS }), rows as u64);
        // The backward from a consistent forward (y, rstd of a real x).
        let op = Op::RmsNormBwd(RmsNormBwd { rows, dim });
        let x = uniform(rows as u64 + 1, rows * dim, -2.0, 2.0);
        let (mut y, mut rstd) = (vec![0f32; rows * dim], vec![0f32; rows]);
        rmsnorm_fwd(&mut y, &mut rstd, &x, dim, RMS_EPS);
        let inputs = vec![
            Data::F32(uniform(rows as u64 + 2, rows * dim, -1.0, 1.0)),
            Data::F32(uniform(rows as u64 + 3, rows * dim, -1.0, 1.0)),
            Data::F32(y),
            Data::F32(rstd),
        ];
        check_gpu_vs_cpu(&op, &inputs, kernel_tol());
    }
}

#[test]
fn rope_fwd_and_inverse() {
    for (rows, heads, head_dim, seq_len) in [(1, 1, 2, 1), (7, 3, 6, 4), (130, 4, 16, 64)] {
        for inverse in [false, true] {
            let op = Op::Rope(Rope { rows, heads, head_dim, seq_len, inverse });
            let mut inputs = random_inputs(&op, rows as u64);
            inputs[2] = Data::F32(rope_table(seq_len, head_dim, 10000.0));
            check_gpu_vs_cpu(&op, &inputs, kernel_tol());
        }
    }
}

/// Consistent inputs for the three attention kernels: `out`, `lse` from the CPU forward and
/// `delta` from the CPU backward for q, so that the probabilities are real ones.
fn attention_case(s: AttnShape, seed: u64) {
    let rows = s.batch * s.seq;
    let (nq, nkv, nl) = (rows * s.heads * s.head_dim, rows * s.kv_heads * s.head_dim, s.batch * s.heads * s.seq);
    let q = uniform(seed, nq, -1.0, 1.0);
    let k = uniform(seed + 1, nkv, -1.0, 1.0);
    let v = uniform(seed + 2, nkv, -1.0, 1.0);
    let dout = uniform(seed + 3, nq, -1.0, 1.0);
    let (mut out, mut lse) = (vec![0f32; nq], vec![0f32; nl]);
    attention_fwd(&mut out, &mut lse, &q, &k, &v, s);
    let (mut dq0, mut delta) = (vec![0f32; nq], vec![0f32; nl]);
    attention_bwd_q(&mut dq0, &mut delta, &dout, &out, &q, &k, &v, &lse, s);
    let init = |seed, n| Data::F32(uniform(seed, n, -1.0, 1.0));
    let f = |v: &Vec<f32>| Data::F32(v.clone());
    check_both_targets(
        &Op::AttentionFwd(AttentionFwd(s)),
        &[init(seed + 4, nq), init(seed + 5, nl), f(&q), f(&k), f(&v)],
    );
    check_both_targets(
        &Op::AttentionBwdQ(AttentionBwdQ(s)),
        &[init(seed + 6, nq), init(seed + 7, nl), f(&dout), f(&out), f(&q), f(&k), f(&v), f(&lse)],
    );
    check_both_targets(
        &Op::AttentionBwdKv(AttentionBwdKv(s)),
        &[init(seed + 8, nkv), init(seed + 9, nkv), f(&dout), f(&q), f(&k), f(&v), f(&lse), f(&delta)],
    );
}

#[test]
fn attention_fwd_bwd_q_bwd_kv() {
    for (batch, seq, heads, kv_heads, head_dim) in [
        (1, 1, 4, 2, 8),
        (2, 7, 4, 2, 16),
        (1, 7, 2, 2, 8),
        (1, 33, 4, 2, 8),
        (2, 33, 2, 2, 16),
        (1, 33, 4, 1, 6),
        // Several key tiles (32 rows at head_dim 64, a partial last one padded to a step of
        // 8), several query and key blocks, a group of 3 (21 queries per workgroup on a GPU,
        // 84 with the CPU's 4 rows per invocation; one idle invocation), the largest
        // head_dim (16-row tiles), and several 256-key blocks of the CPU's bwd_kv.
        (2, 130, 4, 2, 64),
        (1, 70, 6, 2, 16),
        (1, 67, 2, 1, 128),
        (1, 600, 2, 1, 32),
        // A long sequence at the record's head_dim: on lavapipe a kernel that loops more
        // than 65,535 times in one invocation silently stops writing (see attention.wgsl),
        // which the short cases above cannot show.
        (1, 1024, 2, 1, 64),
    ] {
        attention_case(AttnShape { batch, seq, heads, kv_heads, head_dim }, (seq * 100 + heads * 10 + head_dim) as u64);
    }
}

#[test]
fn relu2_fwd_and_bwd() {
    for count in [1, 63, 64, 65, 4097] {
        check_random(Op::Relu2Fwd(Relu2Fwd { count }), count as u64);
        check_random(Op::Relu2Bwd(Relu2Bwd { count }), count as u64 + 1);
    }
}

#[test]
fn more_than_65535_workgroups_fold_into_y() {
    // 4,200,000 elements = 65,625 workgroups of 64: the grid is (65535, 2, 1), and the
    // elements past 65535 * 64 = 4,194,240 are reached only through gid.y.
    let count = 4_200_000;
    assert_eq!(Op::Relu2Fwd(Relu2Fwd { count }).kernel().workgroups, [65535, 2, 1]);
    check_random(Op::Relu2Fwd(Relu2Fwd { count }), 7);
    check_random(Op::AddInto(AddInto { count }), 8);
}

#[test]
fn channel_scale_add_and_mix() {
    let cases = [
        // q_gain: 4 heads x head_dim 16, 7 rows.
        (7 * 64, Channels::per_head(4, 16), 4),
        // A skip_weights row at an offset: rows of 5 channels, row 1 of a [2, 5] parameter.
        (13 * 5, Channels::per_channel(5, 1), 10),
        // Group > 1 and offset > 0 together, ragged count.
        (3 * 15 * 3, Channels { group: 3, channels: 5, offset: 2 }, 8),
    ];
    for (i, (count, ch, s_len)) in cases.into_iter().enumerate() {
        let seed = 100 * i as u64;
        check_random(Op::ScaleFwd(ScaleFwd { count, ch, s_len }), seed);
        check_random(Op::ScaleBwd(ScaleBwd { count, ch, s_len }), seed + 1);
        check_random(Op::ScaledAddFwd(ScaledAddFwd { count, ch, s_len }), seed + 2);
        check_random(Op::ScaledAddBwd(ScaledAddBwd { count, ch, s_len }), seed + 3);
        // The mix reads [2, channels] at offset 0.
        let mix_ch = Channels { offset: 0, ..ch };
        check_random(Op::MixFwd(MixFwd { count, ch: mix_ch }), seed + 4);
        check_random(Op::MixBwd(MixBwd { count, ch: mix_ch }), seed + 5);
    }
}

#[test]
fn add_into() {
    for count in [1, 77, 1000] {
        check_random(Op::AddInto(AddInto { count }), count as u64);
    }
}

#[test]
fn channel_dot_one_and_two_stages_groups_offsets_and_long_channels() {
    for (rows, ch, out_len) in [
        // One row: fewer elements per channel than lanes.
        (1, Channels::per_channel(64, 0), 64),
        // 130 rows of a per-channel parameter at row 1 of [2, 64] (130 > 64 lanes per channel).
        (130, Channels::per_channel(64, 1), 128),
        // Per head, group 16 (q_gain), 33 rows.
        (33, Channels::per_head(4, 16), 4),
        // Group 3, 5 channels at offset 2, 67 rows: 201 elements per channel.
        (67, Channels { group: 3, channels: 5, offset: 2 }, 9),
        // One channel over 3 x 4096 + 1 elements: four blocks, the last of one element.
        (12289, Channels { group: 1, channels: 1, offset: 0 }, 1),
        // Per head over 2 heads x group 64 x 70 rows: two blocks per head.
        (70, Channels::per_head(2, 64), 2),
    ] {
        let count = rows * ch.group * ch.channels;
        check_random(Op::ChannelDot(ChannelDot { count, ch, out_len }), rows as u64 + 2);
        let partial = ChannelDotPartial::new(count, ch);
        check_random(Op::from(partial), rows as u64);
        let sum = ChannelSum { channels: ch.channels, blocks: partial.blocks(), offset: ch.offset, out_len };
        check_random(Op::from(sum), rows as u64 + 1);
    }
}

#[test]
fn channel_dot_stages_compose_to_the_one_stage_reference() {
    // The two stages' CPU references against `channel_dot` itself, on the GPU: partials then
    // the sum into a nonzero output.
    let ch = Channels::per_head(3, 5);
    let count = 9000 * 15;
    let (a, b) = (uniform(1, count, -1.0, 1.0), uniform(2, count, -1.0, 1.0));
    let out0 = uniform(3, 4, -1.0, 1.0);
    let partial = ChannelDotPartial::new(count, ch);
    let parts = common::run_gpu(
        &Op::from(partial),
        &[Data::F32(vec![0.0; 3 * partial.blocks()]), Data::F32(a.clone()), Data::F32(b.clone())],
    );
    let sum = ChannelSum { channels: 3, blocks: partial.blocks(), offset: 1, out_len: 4 };
    let got = common::run_gpu(&Op::from(sum), &[Data::F32(out0.clone()), Data::F32(parts[0].1.clone())]);
    let mut want = out0;
    wgolf::ops::elementwise::channel_dot(&mut want, &a, &b, Channels { offset: 1, ..ch });
    let tol = tolerance(Check::KernelF32);
    assert_eq!(wgolf::tolerance::first_mismatch(&got[0].1, &want, tol), None, "{:?} vs {want:?}", got[0].1);
}

#[test]
fn cross_entropy_rows_and_gradients() {
    for (rows, vocab, softcap, logit_scale) in
        [(3, 1024, 30.0, 1.0), (70, 13, 30.0, 1.0), (5, 50, 2.0, 8.0), (1, 1, 30.0, 1.0)]
    {
        for write_grad in [true, false] {
            let op = Op::CrossEntropy(CrossEntropy { rows, vocab, softcap, grad_scale: 1.0 / 300.0, write_grad });
            let mut inputs = random_inputs(&op, rows as u64);
            // Logits beyond the softcap in one case, so the tanh matters.
            inputs[2] = Data::F32(uniform(rows as u64 + 9, rows * vocab, -logit_scale, logit_scale));
            inputs[3] = Data::U32(ids(rows as u64 + 10, rows, vocab));
            check_gpu_vs_cpu(&op, &inputs, kernel_tol());
        }
    }
}

#[test]
fn sum_rows_totals() {
    for (count, scale) in [(1, 1.0), (256, 0.5), (257, 1.0 / 257.0), (1000, 1.0 / 1000.0)] {
        let op = Op::SumRows(SumRows { count, scale });
        let mut inputs = random_inputs(&op, count as u64);
        // Loss rows are positive, around ln(vocab).
        inputs[1] = Data::F32(uniform(count as u64 + 1, count, 0.0, 7.0));
        check_gpu_vs_cpu(&op, &inputs, kernel_tol());
    }
}

#[test]
fn adamw_three_steps_with_changing_hyperparameters() {
    let count = 1003;
    let op = Op::AdamW(AdamW { count });
    let plan = common::plan_of(&op);
    let mut cpu = CpuExecutor::new(&plan);
    let mut gpu = common::gpu_executor(&plan);
    let p0 = Data::F32(uniform(1, count, -1.0, 1.0));
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        ex.write(0, p0.host()).unwrap();
        // Moments start at zero (the executors allocate zeroed tensors; be explicit).
        ex.clear(&[1, 2]).unwrap();
    }
    let tol = tolerance(Check::Optimizer);
    // The clip coefficient the step multiplies the gradient by: 1, then clipping.
    for (step, lr, wd, clip) in [(1u32, 0.02f32, 0.0f32, 1.0f32), (2, 0.01, 0.1, 0.37), (3, 0.005, 0.5, 0.5)] {
        let h = AdamHyper::at_step(lr, 0.9, 0.95, 1e-8, wd, step);
        let hyper: Vec<f32> = bytemuck::cast_slice(&[h]).to_vec();
        // A new gradient every step, with a few tiny ones where eps matters.
        let mut g = uniform(10 + step as u64, count, -1.0, 1.0);
        for v in g.iter_mut().step_by(97) {
            *v *= 1e-6;
        }
        for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
            ex.write(3, Data::F32(g.clone()).host()).unwrap();
            ex.write(4, Data::F32(vec![clip]).host()).unwrap();
            ex.write(5, Data::F32(hyper.clone()).host()).unwrap();
            ex.run(Phase::Forward, 0..1).unwrap();
        }
        for (b, name) in [(0, "p"), (1, "m"), (2, "v")] {
            let what = format!("{} step {step} binding {b} ({name}, gpu vs cpu)", op.kernel().label());
            common::assert_close(&what, &gpu.read(b).unwrap(), &cpu.read(b).unwrap(), tol);
        }
    }
}

/// `Executor::read_many` (one submission, one staging buffer for every tensor) returns what
/// reading each tensor alone returns, in the order asked, for tensors of several odd sizes.
#[test]
fn read_many_returns_each_tensor_as_read_does() {
    use wgolf::exec::{Executor, HostData};
    use wgolf::plan::{DType, PlanBuilder, Role};
    let mut g = PlanBuilder::new();
    let sizes = [1usize, 77, 4099, 3];
    let ids: Vec<usize> =
        sizes.iter().enumerate().map(|(i, &n)| g.tensor(format!("t{i}"), &[n], DType::F32, Role::Grad)).collect();
    let plan = g.finish_without_io().unwrap();
    let mut ex = common::gpu_executor(&plan);
    let values: Vec<Vec<f32>> =
        sizes.iter().enumerate().map(|(i, &n)| common::uniform(i as u64, n, -1.0, 1.0)).collect();
    for (&t, v) in ids.iter().zip(&values) {
        ex.write(t, HostData::F32(v)).unwrap();
    }
    let many = ex.read_many(&ids).unwrap();
    let reversed: Vec<usize> = ids.iter().rev().copied().collect();
    let many_reversed = ex.read_many(&reversed).unwrap();
    for (i, &t) in ids.iter().enumerate() {
        let one = ex.read(t).unwrap();
        assert_eq!(one, values[i], "t{i} read alone");
        assert_eq!(many[i], values[i], "t{i} read with the others");
        assert_eq!(many_reversed[ids.len() - 1 - i], values[i], "t{i} read with the others, reversed");
    }
    assert!(ex.read_many(&[]).unwrap().is_empty());
}

/// `Executor::begin_read_many` copies the tensors as they are when it is called: a run
/// submitted afterwards, which rewrites one of them, changes neither the pending read nor
/// another read begun before it, and both finish (in either order) with their own values,
/// each from its own staging buffer. (What lets a data-parallel step reduce a bucket of
/// gradients while the backward after it runs.)
#[test]
fn a_begun_read_sees_the_tensors_as_they_were_when_it_began() {
    use wgolf::exec::{Executor, HostData};
    use wgolf::plan::{DType, Phase, PlanBuilder, Role, ScaleCopy};
    let n = 1000;
    let mut g = PlanBuilder::new();
    let x = g.tensor("x", &[n], DType::F32, Role::Grad);
    let y = g.tensor("y", &[n], DType::F32, Role::Grad);
    g.push(Phase::Forward, ScaleCopy { count: n, alpha: 2.0 }, &[y, x]).unwrap();
    let plan = g.finish_without_io().unwrap();
    let mut ex = common::gpu_executor(&plan);
    let xs = common::uniform(1, n, -1.0, 1.0);
    let ys = common::uniform(2, n, -1.0, 1.0);
    ex.write(x, HostData::F32(&xs)).unwrap();
    ex.write(y, HostData::F32(&ys)).unwrap();
    let before = ex.begin_read_many(&[y, x]).unwrap();
    ex.run(Phase::Forward, 0..1).unwrap();
    let after = ex.begin_read_many(&[y]).unwrap();
    let twice: Vec<f32> = xs.iter().map(|v| 2.0 * v).collect();
    assert_eq!(after.finish().unwrap(), vec![twice.clone()], "the read begun after the run");
    assert_eq!(before.finish().unwrap(), vec![ys, xs], "the read begun before the run");
    assert_eq!(ex.read(y).unwrap(), twice);
}
