//! The record's optimizer kernels (record spec section 5) on the GPU against their CPU
//! references: the batched, scaled matmul; Muon's momentum, normalisation, scale-copy and
//! apply kernels; the whole Muon plan of `wgolf::optim::emit_muon` over three steps against
//! `muon_update`, written straight from the spec; the NS5 output's singular values; the
//! global grad-norm clip above and below its maximum; and the weight EMA.
//!
//! Kernel comparisons use `Check::KernelF32`, multi-step optimizer comparisons
//! `Check::Optimizer`. Without a GPU adapter these tests fail with the context's message.

mod common;

use common::{check_gpu_vs_cpu, normal, random_inputs, uniform, Data};
use wgolf::exec::cpu::CpuExecutor;
use wgolf::exec::{Executor, HostData};
use wgolf::gpu::GpuExecutor;
use wgolf::ops::matmul::Layout;
use wgolf::ops::muon::{momentum_warmup, muon_update, newton_schulz5, shape_scale, MuonHyper, NS_STEPS};
use wgolf::optim::{emit_clip, emit_ema, emit_muon};
use wgolf::plan::defs::*;
use wgolf::plan::{Init, Op, ParamGroup, Phase, Plan, PlanBuilder, TensorId};
use wgolf::tolerance::{tolerance, Check, Tolerance};

fn kernel_tol() -> Tolerance {
    tolerance(Check::KernelF32)
}

fn check_random(op: Op, seed: u64) {
    check_gpu_vs_cpu(&op, &random_inputs(&op, seed), kernel_tol());
}

/// Both executors of a plan (CPU reference first).
fn executors(plan: &Plan) -> (CpuExecutor, GpuExecutor) {
    (CpuExecutor::new(plan), common::gpu_executor(plan))
}

/// Runs the whole optimizer phase.
fn run_opt(ex: &mut dyn Executor, plan: &Plan) {
    ex.run(Phase::Optimizer, 0..plan.steps(Phase::Optimizer).len()).unwrap();
}

fn write(ex: &mut dyn Executor, t: TensorId, v: &[f32]) {
    ex.write(t, HostData::F32(v)).unwrap();
}

fn hyper_data(h: MuonHyper) -> Vec<f32> {
    bytemuck::cast_slice(&[h]).to_vec()
}

#[test]
fn batched_matmul_batch3_alpha_all_layouts() {
    for (m, n, k) in [(5, 7, 3), (33, 17, 40), (1, 9, 2)] {
        for layout in [Layout::Nt, Layout::Nn, Layout::Tn] {
            for (alpha, accumulate) in [(1.0, false), (-0.75, false), (2.0315, true), (-4.775, true)] {
                let op = Op::BatchedMatmul(BatchedMatmul { batch: 3, m, n, k, layout, alpha, accumulate });
                check_random(op, (m * 1000 + n * 10 + k) as u64);
            }
        }
    }
}

#[test]
fn batched_matmul_of_one_with_alpha_one_is_the_plain_matmul() {
    // The defaults BATCH = 1, ALPHA = 1.0 are what Op::Matmul runs with: bit for bit the same.
    for layout in [Layout::Nt, Layout::Nn, Layout::Tn] {
        for accumulate in [false, true] {
            let (m, n, k) = (9, 13, 35);
            let plain = Op::Matmul(Matmul { m, n, k, layout, accumulate, a_prescale_exp: 0 });
            let batched = Op::BatchedMatmul(BatchedMatmul { batch: 1, m, n, k, layout, alpha: 1.0, accumulate });
            let inputs = random_inputs(&plain, 5);
            if common::gpu_call(&plain) != plain.kernel() {
                // A tensor-core adapter runs Op::Matmul on f16 cooperative matrices.
                continue;
            }
            assert_eq!(
                common::run_gpu(&plain, &inputs),
                common::run_gpu(&batched, &inputs),
                "{layout:?} accumulate {accumulate}"
            );
        }
    }
}

#[test]
fn muon_momentum_and_apply_kernels() {
    // Tall (stored transposed), wide and square matrices at every index of a 3-stack.
    for (rows, cols) in [(13, 6), (6, 13), (9, 9), (1, 70)] {
        for index in 0..3 {
            let seed = (rows * 100 + cols * 10 + index) as u64;
            check_random(Op::MuonMomentum(MuonMomentum { rows, cols, index, count: 3 }), seed);
            check_random(
                Op::MuonApply(MuonApply { rows, cols, index, count: 3, shape_scale: shape_scale(rows, cols) }),
                seed + 1,
            );
        }
    }
}

#[test]
fn muon_normalize_and_scale_copy_kernels() {
    // One matrix of one element; matrices smaller and larger than the 256 lanes; matrices
    // of several 4096-element chunks, the last partial (90 x 100: three chunks).
    for (count, a, b) in [(3, 1, 1), (2, 9, 37), (1, 20, 70), (4, 8, 12), (2, 90, 100), (1, 64, 128)] {
        let seed = (count * a * b) as u64;
        check_random(Op::MuonSumSq(MuonSumSq { count, a, b }), seed);
        check_random(Op::MuonNormalize(MuonNormalize { count, a, b }), seed + 1);
        // The two stages on the GPU against the one-pass definition: X / (||X||_F + 1e-7).
        let stack = uniform(seed + 2, count * a * b, -1.0, 1.0);
        let chunks = wgolf::ops::muon::muon_chunks(a, b);
        let sum_sq = Op::MuonSumSq(MuonSumSq { count, a, b });
        let parts = common::run_gpu(&sum_sq, &[Data::F32(vec![0.0; count * chunks]), Data::F32(stack.clone())]);
        let norm = Op::MuonNormalize(MuonNormalize { count, a, b });
        let got = common::run_gpu(&norm, &[Data::F32(stack.clone()), Data::F32(parts[0].1.clone())]);
        let mut want = stack.clone();
        for x in want.chunks_mut(a * b) {
            let n = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt() + 1e-7;
            x.iter_mut().for_each(|v| *v = (*v as f64 / n) as f32);
        }
        common::assert_close(&format!("normalize {count}x{a}x{b}"), &got[0].1, &want, kernel_tol());
    }
    for count in [1, 77, 4097] {
        check_random(Op::ScaleCopy(ScaleCopy { count, alpha: -4.775 }), count as u64);
    }
}

#[test]
fn clip_and_ema_kernels() {
    // One gradient of one element; chunk edges (1023, 1024, 1025); all seven slots with an
    // offset into a longer output; a gradient of many chunks.
    let cases: [(&[usize], usize, usize); 5] = [
        (&[1], 0, 1),
        (&[1023, 1024, 1025], 2, 7),
        (&[255, 257, 3000, 1, 2048, 77, 4097], 3, 20),
        (&[50_000], 0, 49),
        (&[7, 9], 1, 3),
    ];
    for (i, (counts, offset, parts)) in cases.into_iter().enumerate() {
        check_random(Op::GradSumSq(GradSumSq::new(counts, offset, parts)), 40 + i as u64);
    }
    for parts in [1, 3, 70, 1000] {
        check_random(Op::ClipCoef(ClipCoef { parts, max_norm: 0.3 }), parts as u64);
        // Partials summing to far below the maximum: the coefficient is exactly 1.
        let op = Op::ClipCoef(ClipCoef { parts, max_norm: 30.0 });
        let mut inputs = random_inputs(&op, parts as u64);
        inputs[1] = Data::F32(uniform(parts as u64, parts, 0.0, 1e-3));
        check_gpu_vs_cpu(&op, &inputs, kernel_tol());
        assert_eq!(common::run_gpu(&op, &inputs)[0].1, vec![1.0]);
    }
    for count in [1, 77, 4097] {
        check_random(Op::Ema(Ema { count, decay: 0.997 }), count as u64 + 1);
    }
    for counts in [[1, 77, 4097, 64], [130, 1, 1, 2]] {
        check_random(Op::EmaGroup(EmaGroup { counts, decay: 0.997 }), counts[0] as u64);
    }
}

/// Two Muon matrices of different shapes at different indices of stacks of different sizes
/// (a tall one stored transposed at index 1 of 3, a wide one at index 0 of 2), momentum then
/// apply for each, in one plan: the GPU runs all four dispatches with one pipeline per
/// kernel (their matrices come from per-dispatch uniforms), and every tensor they write
/// matches the CPU reference.
#[test]
fn muon_matrices_of_two_shapes_share_one_pipeline_and_match_cpu() {
    use wgolf::plan::{DType, Role};
    let mut g = PlanBuilder::new();
    let hyper = g.hyper(ParamGroup::Matrix);
    let sites = [(7, 5, 1, 3), (5, 13, 0, 2)];
    let mut written = Vec::new();
    for (k, &(rows, cols, index, count)) in sites.iter().enumerate() {
        let (a, b) = wgolf::ops::muon::stack_shape(rows, cols);
        let mut t = |name: &str, shape: &[usize]| g.tensor(format!("{name}{k}"), shape, DType::F32, Role::OptState);
        let (param, grad, buf, stack) =
            (t("w", &[rows, cols]), t("g", &[rows, cols]), t("buf", &[rows, cols]), t("x", &[count, a, b]));
        let clip = t("clip", &[1]);
        g.push(Phase::Optimizer, MuonMomentum { rows, cols, index, count }, &[buf, stack, grad, clip, hyper]).unwrap();
        let shape_scale = shape_scale(rows, cols);
        g.push(Phase::Optimizer, MuonApply { rows, cols, index, count, shape_scale }, &[param, stack, hyper]).unwrap();
        written.extend([param, grad, buf, stack, clip]);
    }
    let plan = g.finish_without_io().expect("plan");
    let (mut cpu_ex, mut gpu_ex) = executors(&plan);
    assert_eq!(gpu_ex.pipelines, 2, "one pipeline for the momentums, one for the applies");
    let h = hyper_data(MuonHyper::new(0.02, 0.9, 0.04));
    for ex in [&mut cpu_ex as &mut dyn Executor, &mut gpu_ex] {
        write(ex, hyper, &h);
        for (i, &t) in written.iter().enumerate() {
            write(ex, t, &uniform(70 + i as u64, plan.tensor(t).numel(), -1.0, 1.0));
        }
        run_opt(ex, &plan);
    }
    for &t in &written {
        let name = &plan.tensor(t).name;
        common::assert_close(name, &gpu_ex.read(t).unwrap(), &cpu_ex.read(t).unwrap(), kernel_tol());
    }
}

/// The Muon plan's pipelines, counted from the plan (`wgolf info --kernels`): one per kernel
/// whatever the matrices, and the GPU executor builds as many as the calls it runs have
/// distinct pipeline labels.
#[test]
fn muon_plan_pipelines_do_not_grow_with_matrices() {
    let (plan, _, _) = muon_plan(NS_STEPS);
    let acc = wgolf::plan::cost::account(&plan, 1);
    let row = |kind: &str| acc.rows.iter().find(|r| r.kind == kind).unwrap_or_else(|| panic!("{kind} row"));
    for kind in ["MuonMomentum", "MuonApply", "MuonSumSq", "MuonNormalize"] {
        assert!(row(kind).dispatches >= 2, "{kind}: {} dispatches", row(kind).dispatches);
        assert_eq!(row(kind).pipelines, 1, "{kind}");
    }
    // Two Newton-Schulz coefficients, whatever the stacks' sizes.
    assert_eq!(row("ScaleCopy").pipelines, 2);
    let labels: std::collections::BTreeSet<String> =
        plan.all_steps().map(|(_, s)| common::gpu_call(&s.op).pipeline_label()).collect();
    assert_eq!(common::gpu_executor(&plan).pipelines, labels.len());
}

/// The three matrices of the Muon tests: a tall one (stored transposed, shape scale
/// sqrt(1.5)) and two wide ones sharing a stack.
const MUON_SHAPES: [(&str, usize, usize); 3] = [("w.tall", 12, 8), ("w.wide0", 8, 20), ("w.wide1", 8, 20)];

/// A plan of `emit_muon` over [`MUON_SHAPES`], with its parameter ids and hyper uniform.
fn muon_plan(ns_steps: usize) -> (Plan, Vec<TensorId>, TensorId) {
    muon_plan_in_shards(ns_steps, 1)
}

/// [`muon_plan`] with the Newton-Schulz work split into `shards` (distributed Muon).
fn muon_plan_in_shards(ns_steps: usize, shards: usize) -> (Plan, Vec<TensorId>, TensorId) {
    let mut g = PlanBuilder::new();
    let params: Vec<TensorId> =
        MUON_SHAPES.iter().map(|&(name, r, c)| g.param(name, &[r, c], ParamGroup::Matrix, Init::Zeros)).collect();
    let hyper = g.hyper(ParamGroup::Matrix);
    let slots = g.params().to_vec();
    let no_clip = emit_clip(&mut g, &[], 0.0).expect("a constant 1");
    emit_muon(&mut g, &slots, hyper, no_clip, ns_steps, shards).expect("muon plan");
    (g.finish_without_io().expect("plan"), params, hyper)
}

#[test]
fn muon_plan_structure() {
    let (plan, _, _) = muon_plan(NS_STEPS);
    // Per shape: momentum per matrix, the normalisation's two stages, 5 steps per iteration,
    // apply per matrix; two shapes.
    let steps = plan.steps(Phase::Optimizer);
    assert_eq!(steps.len(), 3 + 2 * 2 + 2 * 5 * NS_STEPS + 3);
    for name in ["muon.x0.8x12", "muon.x1.8x12", "muon.x0.8x20", "muon.gram.8x20", "muon.norm_partials.8x20"] {
        assert!(plan.find(name).is_some(), "{name} missing");
    }
    assert_eq!(plan.tensor(plan.find("muon.x0.8x20").unwrap()).shape, [2, 8, 20]);
    assert_eq!(plan.tensor(plan.find("muon_buf.w.tall").unwrap()).shape, [12, 8]);
    // No step writes a tensor it also reads.
    for s in steps {
        let specs = s.op.bindings();
        for (i, spec) in specs.iter().enumerate() {
            if spec.access == wgolf::plan::Access::ReadWrite {
                assert_eq!(s.args.iter().filter(|&&a| a == s.args[i]).count(), 1);
            }
        }
    }
    // A parameter that is not a matrix is an error naming it.
    let mut g = PlanBuilder::new();
    g.param("gain", &[8], ParamGroup::Scalar, Init::Zeros);
    let hyper = g.hyper(ParamGroup::Matrix);
    let slots = g.params().to_vec();
    let err = emit_muon(&mut g, &slots, hyper, hyper, 5, 1).unwrap_err();
    assert!(err.to_string().contains("gain"), "{err}");
}

/// Muon's update is `lr * O` with `O` of magnitude ~1/sqrt(cols): the comparison is
/// meaningful only on the update itself, so the parameters start small (uniform in +-0.05,
/// updates ~0.005 per step) and the accumulated update `W_t - W_0` is compared as well.
#[test]
fn muon_plan_three_steps_against_muon_update() {
    let (plan, params, hyper) = muon_plan(NS_STEPS);
    let (mut cpu_ex, mut gpu_ex) = executors(&plan);
    let bufs: Vec<TensorId> =
        MUON_SHAPES.iter().map(|(name, _, _)| plan.find(&format!("muon_buf.{name}")).expect("buffer")).collect();
    let grads: Vec<TensorId> = plan.params.iter().map(|s| s.grad).collect();
    let w0: Vec<Vec<f32>> =
        MUON_SHAPES.iter().enumerate().map(|(i, &(_, r, c))| uniform(10 + i as u64, r * c, -0.05, 0.05)).collect();
    let mut want_w = w0.clone();
    let mut want_b: Vec<Vec<f32>> = w0.iter().map(|w| vec![0.0; w.len()]).collect();
    for ex in [&mut cpu_ex as &mut dyn Executor, &mut gpu_ex] {
        for (p, w) in params.iter().zip(&w0) {
            write(ex, *p, w);
        }
    }
    let tol = tolerance(Check::Optimizer);
    let (lr, wd) = (0.025, 0.04);
    for step in 0..3 {
        let mu = momentum_warmup(step * 700);
        let h = hyper_data(MuonHyper::new(lr, mu, wd));
        let gs: Vec<Vec<f32>> = MUON_SHAPES
            .iter()
            .enumerate()
            .map(|(i, &(_, r, c))| normal(100 * step as u64 + i as u64, r * c, 0.1))
            .collect();
        for ex in [&mut cpu_ex as &mut dyn Executor, &mut gpu_ex] {
            write(ex, hyper, &h);
            for (gr, v) in grads.iter().zip(&gs) {
                write(ex, *gr, v);
            }
            run_opt(ex, &plan);
        }
        for (i, &(name, r, c)) in MUON_SHAPES.iter().enumerate() {
            muon_update(&mut want_w[i], &mut want_b[i], &gs[i], r, c, lr, mu, wd, NS_STEPS);
            let delta = |w: &[f32]| -> Vec<f32> { w.iter().zip(&w0[i]).map(|(a, b)| a - b).collect() };
            for (who, ex) in [("gpu", &mut gpu_ex as &mut dyn Executor), ("cpu plan", &mut cpu_ex)] {
                let got_w = ex.read(params[i]).unwrap();
                let what = format!("step {step} {name} [{r}, {c}] ({who} vs muon_update)");
                common::assert_close(&format!("{what} W"), &got_w, &want_w[i], tol);
                common::assert_close(&format!("{what} W - W0"), &delta(&got_w), &delta(&want_w[i]), tol);
                common::assert_close(&format!("{what} buffer"), &ex.read(bufs[i]).unwrap(), &want_b[i], tol);
            }
        }
    }
}

/// Distributed Muon (issue 11 item 5): the plan in two shards, run by two GPU executors as
/// two ranks do (the steps before the shards, the rank's own shard, the exchange of the
/// shards' results through the host, the apply steps), gives both ranks the same weights
/// and momentum buffers, equal to the one-shard plan's within the optimizer tolerance, over
/// three steps. The wide shape's two matrices go one to each shard, the tall one to shard 0
/// (shard 1 has no stack of its shape).
#[test]
fn muon_in_two_shards_exchanged_matches_muon_on_one_rank() {
    let (whole, params, hyper) = muon_plan(NS_STEPS);
    let (sharded, sharded_params, sharded_hyper) = muon_plan_in_shards(NS_STEPS, 2);
    assert!(whole.muon_shards.is_empty());
    let shards = &sharded.muon_shards;
    assert_eq!(shards.len(), 2);
    assert!(shards[0].steps.end == shards[1].steps.start && !shards[1].steps.is_empty());
    let names = |s: usize| -> Vec<&str> { shards[s].results.iter().map(|&t| plan_name(&sharded, t)).collect() };
    assert_eq!(names(0).len(), 2, "{:?}", names(0));
    assert_eq!(names(1).len(), 1, "{:?}", names(1));
    assert!(names(1)[0].contains("8x20.s1"), "{:?}", names(1));
    // The normalisation and Newton-Schulz steps lie in the shards, the momentum and apply
    // steps (run on every rank) outside them.
    let opt = sharded.steps(Phase::Optimizer);
    for (i, s) in opt.iter().enumerate() {
        let in_shard = shards.iter().any(|sh| sh.steps.contains(&i));
        let on_every_rank = matches!(s.op, Op::MuonApply(_) | Op::MuonMomentum(_));
        assert_eq!(in_shard, !on_every_rank, "step {i}: {:?}", s.op);
    }
    let grads = |plan: &Plan| -> Vec<TensorId> { plan.params.iter().map(|s| s.grad).collect() };
    let mut one = common::gpu_executor(&whole);
    let mut ranks = [common::gpu_executor(&sharded), common::gpu_executor(&sharded)];
    let w0: Vec<Vec<f32>> =
        MUON_SHAPES.iter().enumerate().map(|(i, &(_, r, c))| uniform(10 + i as u64, r * c, -0.05, 0.05)).collect();
    for (p, w) in params.iter().zip(&w0) {
        write(&mut one, *p, w);
    }
    for ex in &mut ranks {
        for (p, w) in sharded_params.iter().zip(&w0) {
            write(ex, *p, w);
        }
    }
    let tol = tolerance(Check::Optimizer);
    let (first, last, end) = (shards[0].steps.start, shards[1].steps.end, opt.len());
    for step in 0..3 {
        let h = hyper_data(MuonHyper::new(0.025, momentum_warmup(step * 700), 0.04));
        let gs: Vec<Vec<f32>> = MUON_SHAPES
            .iter()
            .enumerate()
            .map(|(i, &(_, r, c))| normal(100 * step as u64 + i as u64, r * c, 0.1))
            .collect();
        write(&mut one, hyper, &h);
        for (gr, v) in grads(&whole).iter().zip(&gs) {
            write(&mut one, *gr, v);
        }
        run_opt(&mut one, &whole);
        let mut results: Vec<Vec<Vec<f32>>> = Vec::new();
        for (rank, ex) in ranks.iter_mut().enumerate() {
            write(ex, sharded_hyper, &h);
            for (gr, v) in grads(&sharded).iter().zip(&gs) {
                write(ex, *gr, v);
            }
            ex.run(Phase::Optimizer, 0..first).unwrap();
            ex.run(Phase::Optimizer, shards[rank].steps.clone()).unwrap();
            results.push(shards[rank].results.iter().map(|&t| ex.read(t).unwrap()).collect());
        }
        for (rank, ex) in ranks.iter_mut().enumerate() {
            let other = 1 - rank;
            for (&t, v) in shards[other].results.iter().zip(&results[other]) {
                write(ex, t, v);
            }
            ex.run(Phase::Optimizer, last..end).unwrap();
        }
        for (i, &(name, _, _)) in MUON_SHAPES.iter().enumerate() {
            let buf = |plan: &Plan| plan.find(&format!("muon_buf.{name}")).expect("buffer");
            let want_w = one.read(params[i]).unwrap();
            let want_b = one.read(buf(&whole)).unwrap();
            let rank0 = ranks[0].read(sharded_params[i]).unwrap();
            assert_eq!(rank0, ranks[1].read(sharded_params[i]).unwrap(), "step {step} {name}: the ranks differ");
            assert_eq!(ranks[0].read(buf(&sharded)).unwrap(), ranks[1].read(buf(&sharded)).unwrap());
            let delta = |w: &[f32]| -> Vec<f32> { w.iter().zip(&w0[i]).map(|(a, b)| a - b).collect() };
            let what = format!("step {step} {name} (two shards vs one)");
            common::assert_close(&format!("{what} W - W0"), &delta(&rank0), &delta(&want_w), tol);
            common::assert_close(&format!("{what} buffer"), &ranks[0].read(buf(&sharded)).unwrap(), &want_b, tol);
        }
    }
}

fn plan_name(plan: &Plan, t: TensorId) -> &str {
    &plan.tensor(t).name
}

/// The eigenvalues of a symmetric `[n, n]` matrix (cyclic Jacobi, f64).
fn sym_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off < 1e-24 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                // The rotation that zeroes a[p][q] (Numerical Recipes' Jacobi).
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..n).map(|i| a[i * n + i]).collect()
}

/// The singular values of a row-major `[rows, cols]` matrix.
fn singular_values(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let (a, b, t) = if rows <= cols { (rows, cols, false) } else { (cols, rows, true) };
    let at = |i: usize, k: usize| -> f64 {
        if t {
            x[k * cols + i] as f64
        } else {
            x[i * cols + k] as f64
        }
    };
    let mut gram = vec![0f64; a * a];
    for i in 0..a {
        for j in 0..a {
            gram[i * a + j] = (0..b).map(|k| at(i, k) * at(j, k)).sum();
        }
    }
    sym_eigenvalues(gram, a).into_iter().map(|l| l.max(0.0).sqrt()).collect()
}

/// The quintic iteration does not converge to an orthogonal factor: it maps every singular
/// value of the normalised input into a band around 1 (about [0.7, 1.2] once the smallest
/// ones have grown). Checked on the GPU plan's output (the final stack, read back) and the
/// CPU reference, for gradients whose singular values spread over a decade.
#[test]
fn ns5_output_has_singular_values_near_one() {
    // The Newton-Schulz stacks are scratch, which shares storage once its pass is over:
    // reading them after the pass needs them kept.
    let (plan, params, hyper) = muon_plan(NS_STEPS);
    let plan = plan.without_reuse();
    let mut gpu_ex = common::gpu_executor(&plan);
    // lr = 0: the parameters stay; momentum 0: U = G.
    write(&mut gpu_ex, hyper, &hyper_data(MuonHyper::new(0.0, 0.0, 0.0)));
    let grads: Vec<TensorId> = plan.params.iter().map(|s| s.grad).collect();
    let mut gs = Vec::new();
    for (i, &(_, r, c)) in MUON_SHAPES.iter().enumerate() {
        // G = random with its rows scaled from 1 to 10: an ill-conditioned input.
        let mut gm = normal(7 + i as u64, r * c, 1.0);
        for (row, chunk) in gm.chunks_mut(c).enumerate() {
            let s = 1.0 + 9.0 * row as f32 / (r - 1) as f32;
            chunk.iter_mut().for_each(|v| *v *= s);
        }
        write(&mut gpu_ex, grads[i], &gm);
        gs.push(gm);
    }
    run_opt(&mut gpu_ex, &plan);
    assert_eq!(gpu_ex.read(params[0]).unwrap(), vec![0.0; 96], "lr 0 leaves W");
    // After an odd number of iterations the result is in stack 1.
    let stacks = [("muon.x1.8x12", 1usize), ("muon.x1.8x20", 2)];
    let mut checked = 0;
    for (name, count) in stacks {
        let o = gpu_ex.read(plan.find(name).expect("stack")).unwrap();
        let (a, b) = if name.ends_with("8x12") { (8, 12) } else { (8, 20) };
        assert_eq!(o.len(), count * a * b);
        for m in o.chunks(a * b) {
            let sv = singular_values(m, a, b);
            assert!(sv.iter().all(|&s| (0.6..=1.25).contains(&s)), "{name}: singular values {sv:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
    for (i, &(name, r, c)) in MUON_SHAPES.iter().enumerate() {
        let o = newton_schulz5(&gs[i], r, c, NS_STEPS);
        let sv = singular_values(&o, r, c);
        assert!(sv.iter().all(|&s| (0.6..=1.25).contains(&s)), "cpu {name}: singular values {sv:?}");
        // And the input's were far from 1 (the test is not vacuous).
        let sv_in = singular_values(&gs[i], r, c);
        let (lo, hi) = sv_in.iter().fold((f64::MAX, 0f64), |(l, h), &s| (l.min(s), h.max(s)));
        assert!(hi / lo > 3.0, "{name}: input singular values {sv_in:?}");
    }
}

/// A plan clipping ten gradients (two sum-of-squares dispatches of up to seven; one of several
/// 1024-element chunks, one of a single element) to 0.3, then an SGD step per parameter with
/// lr 1 and no momentum (so each parameter, from zero, becomes minus its clipped gradient),
/// run on the GPU, against PyTorch's formula in f64; run twice, the coefficient is bit for
/// bit the same. The gradients themselves stay as they were: the step reading them scales
/// them. Without clipping the coefficient is a constant 1 and no clip step is pushed.
#[test]
fn clip_plan_above_and_below_max_norm() {
    use wgolf::ops::sgd::SgdHyper;
    let sizes = [300usize, 77, 1, 5000, 1024, 3, 2049, 64, 1, 999];
    let mut g = PlanBuilder::new();
    for (i, &n) in sizes.iter().enumerate() {
        g.param(&format!("p{i}"), &[n], ParamGroup::Scalar, Init::Zeros);
    }
    let slots = g.params().to_vec();
    let grads: Vec<TensorId> = slots.iter().map(|s| s.grad).collect();
    let coef_id = emit_clip(&mut g, &grads, 0.3).expect("clip plan");
    let hyper = g.hyper(ParamGroup::Scalar);
    for (s, &n) in slots.iter().zip(&sizes) {
        g.push(Phase::Optimizer, Sgd { count: n }, &[s.param, s.m, s.grad, coef_id, hyper]).unwrap();
    }
    let plan = g.finish_without_io().expect("plan");
    assert_eq!(plan.find("clip.coef"), Some(coef_id));
    let coef_id = plan.find("clip.coef").expect("coef");
    let sums = plan.steps(Phase::Optimizer).iter().filter(|s| s.op.kind() == "GradSumSq").count();
    assert_eq!(sums, 2, "ten gradients, seven per dispatch");
    let mut gpu_ex = common::gpu_executor(&plan);
    write(&mut gpu_ex, hyper, bytemuck::cast_slice(&[SgdHyper::new(1.0, 0.0)]));
    for (case, scale) in [("above", 1.0f32), ("below", 1e-3)] {
        let gs: Vec<Vec<f32>> = sizes.iter().enumerate().map(|(i, &n)| uniform(i as u64, n, -scale, scale)).collect();
        let mut first = 0.0f32;
        for run in 0..2 {
            for ((s, t), v) in slots.iter().zip(&grads).zip(&gs) {
                write(&mut gpu_ex, *t, v);
                write(&mut gpu_ex, s.param, &vec![0.0; v.len()]);
            }
            run_opt(&mut gpu_ex, &plan);
            if run == 0 {
                first = gpu_ex.read(coef_id).unwrap()[0];
            }
        }
        assert_eq!(gpu_ex.read(coef_id).unwrap()[0].to_bits(), first.to_bits(), "{case}: a second run differs");
        let total: f64 = gs.iter().flatten().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        let want_coef = (0.3 / (total + 1e-6)).min(1.0);
        let coef = gpu_ex.read(coef_id).unwrap()[0];
        let tol = tolerance(Check::Optimizer);
        assert!(
            wgolf::tolerance::within(coef, want_coef as f32, tol),
            "{case}: coef {coef}, want {want_coef} (total norm {total})"
        );
        for (i, ((s, t), v)) in slots.iter().zip(&grads).zip(&gs).enumerate() {
            assert_eq!(&gpu_ex.read(*t).unwrap(), v, "{case}: gradient {i} was changed");
            let got: Vec<f32> = gpu_ex.read(s.param).unwrap().iter().map(|&p| -p).collect();
            if case == "below" {
                assert_eq!(coef, 1.0, "below the maximum the coefficient is exactly 1");
                assert_eq!(&got, v, "below the maximum the step uses the gradients as they are");
            } else {
                assert!(want_coef < 0.1, "the 'above' case must clip: {want_coef}");
                let want: Vec<f32> = v.iter().map(|&x| (x as f64 * want_coef) as f32).collect();
                common::assert_close(&format!("{case}: clipped grad {i}"), &got, &want, tol);
            }
        }
    }
    let mut g = PlanBuilder::new();
    g.param("p", &[5], ParamGroup::Scalar, Init::Zeros);
    let grads: Vec<TensorId> = g.params().iter().map(|s| s.grad).collect();
    let unit = emit_clip(&mut g, &grads, 0.0).expect("no clip");
    let plan = g.finish_without_io().expect("plan");
    assert!(plan.steps(Phase::Optimizer).is_empty());
    assert_eq!(plan.tensor(unit).name, "clip.none");
    assert_eq!(plan.constants, vec![(unit, vec![1.0])]);
}

/// Six weights: the first four in one `EmaGroup` dispatch, the last two in an `Ema` each;
/// every EMA against the formula in f64 over three steps.
#[test]
fn ema_plan_three_steps() {
    let mut g = PlanBuilder::new();
    let a = g.param("blocks.0.w", &[5, 7], ParamGroup::Matrix, Init::Zeros);
    let b = g.param("gain", &[77], ParamGroup::Scalar, Init::Zeros);
    let mut params = vec![a, b];
    for (i, shape) in [&[3usize][..], &[130], &[1], &[64, 2]].into_iter().enumerate() {
        params.push(g.param(&format!("w{i}"), shape, ParamGroup::Scalar, Init::Zeros));
    }
    let pairs = emit_ema(&mut g, &params, 0.997).expect("ema plan");
    let plan = g.finish_without_io().expect("plan");
    let kinds: Vec<&str> = plan.steps(Phase::Optimizer).iter().map(|s| s.op.kind()).collect();
    assert_eq!(kinds, ["EmaGroup", "Ema", "Ema"]);
    assert_eq!(plan.tensor(pairs[0].1).name, "ema.blocks.0.w");
    assert_eq!(plan.tensor(pairs[1].1).name, "ema.gain");
    assert_eq!(plan.tensor(pairs[0].1).shape, [5, 7]);
    let mut gpu_ex = common::gpu_executor(&plan);
    // The EMA starts at the initial weights.
    let mut want: Vec<Vec<f64>> = Vec::new();
    for (i, &(p, e)) in pairs.iter().enumerate() {
        let w0 = uniform(i as u64, plan.tensor(p).numel(), -1.0, 1.0);
        write(&mut gpu_ex, p, &w0);
        write(&mut gpu_ex, e, &w0);
        want.push(w0.iter().map(|&v| v as f64).collect());
    }
    let tol = tolerance(Check::Optimizer);
    for step in 0..3u64 {
        for (i, &(p, e)) in pairs.iter().enumerate() {
            let w = uniform(10 * step + i as u64 + 1, plan.tensor(p).numel(), -1.0, 1.0);
            write(&mut gpu_ex, p, &w);
            for (e, &w) in want[i].iter_mut().zip(&w) {
                *e = 0.997 * *e + 0.003 * w as f64;
            }
            let _ = e;
        }
        run_opt(&mut gpu_ex, &plan);
        for (i, &(_, e)) in pairs.iter().enumerate() {
            let w: Vec<f32> = want[i].iter().map(|&v| v as f32).collect();
            common::assert_close(&format!("step {step} ema {i}"), &gpu_ex.read(e).unwrap(), &w, tol);
        }
    }
}
