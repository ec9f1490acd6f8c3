//! The plan's storage (`plan::memory`): liveness and the assignment of tensors to shared
//! slots on small hand-built plans, the check that catches a wrong assignment, the clears
//! where a gradient accumulates, every op's claim that it overwrites an output, and the
//! record model's memory at its training shape.
use std::path::Path;

use wgolf::config::Config;
use wgolf::exec::cpu::CpuExecutor;
use wgolf::exec::{Executor, HostData};
use wgolf::plan::{
    Access, AddInto, DType, Op, Phase, Plan, PlanBuilder, PlanError, PlanIo, Relu2Bwd, Relu2Fwd, Role, TensorId,
};

const N: usize = 6;

/// A two-layer chain `a -> h1 -> h2 -> h3` with a backward that accumulates (`relu2_bwd`,
/// `add_into`), plus a host-facing input and output:
/// forward  h1 = relu2(x), h2 = relu2(h1), h3 = relu2(h2), out = relu2(h3)
/// backward dh3 += relu2'(h3) dout ... down to dh1, then dx += dh1 (add_into).
struct Chain {
    plan: Plan,
    x: TensorId,
    h: [TensorId; 3],
    out: TensorId,
    dout: TensorId,
    dh: [TensorId; 3],
    dx: TensorId,
}

fn chain() -> Chain {
    let mut g = PlanBuilder::new();
    let x = g.tensor("x", &[N], DType::F32, Role::Input);
    let h = [g.activation("h1", &[N]), g.activation("h2", &[N]), g.activation("h3", &[N])];
    let out = g.activation("out", &[N]);
    let dout = g.tensor("dout", &[N], DType::F32, Role::Input);
    let dh = [g.grad(h[0]), g.grad(h[1]), g.grad(h[2])];
    let dx = g.tensor("dx", &[N], DType::F32, Role::Grad);
    let f = Phase::Forward;
    g.push(f, Relu2Fwd { count: N }, &[h[0], x]).unwrap();
    g.push(f, Relu2Fwd { count: N }, &[h[1], h[0]]).unwrap();
    g.push(f, Relu2Fwd { count: N }, &[h[2], h[1]]).unwrap();
    g.push(f, Relu2Fwd { count: N }, &[out, h[2]]).unwrap();
    let b = Phase::Backward;
    g.push(b, Relu2Bwd { count: N }, &[dh[2], dout, h[2]]).unwrap();
    g.push(b, Relu2Bwd { count: N }, &[dh[1], dh[2], h[1]]).unwrap();
    g.push(b, Relu2Bwd { count: N }, &[dh[0], dh[1], h[0]]).unwrap();
    g.push(b, AddInto { count: N }, &[dx, dh[0]]).unwrap();
    let io = PlanIo {
        ids: x,
        targets: dout,
        logits: out,
        loss_rows: out,
        loss_total: dx,
        bigram_ids: None,
        ids_index: None,
        bigram_index: None,
        scored: None,
    };
    Chain { plan: g.finish(io).unwrap(), x, h, out, dout, dh, dx }
}

#[test]
fn tensors_with_disjoint_lifetimes_share_a_slot_and_overlapping_ones_do_not() {
    let c = chain();
    let m = c.plan.memory();
    // Lifetimes (forward 0..4, backward 4..8): h1 [0, 6], h2 [1, 5], h3 [2, 4], dh3 [4, 5],
    // dh2 [5, 6], dh1 [6, 7]. h3 ends at 4 and dh2 starts at 5: they may share; dh3 starts
    // where h3 ends (step 4 reads h3 and writes dh3): they may not.
    let [h1, h2, h3] = c.h;
    let [dh1, dh2, dh3] = c.dh;
    let live = [h1, h2, h3, dh3, dh2, dh1];
    let overlaps = |a: TensorId, b: TensorId| {
        let iv = |t| match t {
            t if t == h1 => (0, 6),
            t if t == h2 => (1, 5),
            t if t == h3 => (2, 4),
            t if t == dh3 => (4, 5),
            t if t == dh2 => (5, 6),
            _ => (6, 7),
        };
        let ((a0, a1), (b0, b1)) = (iv(a), iv(b));
        a0 <= b1 && b0 <= a1
    };
    for (i, &a) in live.iter().enumerate() {
        for &b in &live[..i] {
            if overlaps(a, b) {
                assert_ne!(m.slot(a), m.slot(b), "{} and {} overlap", c.plan.tensor(a).name, c.plan.tensor(b).name);
            }
        }
    }
    // Greedy by start, best fit: dh2 takes h3's slot (free after 4), dh1 h2's (free after 5).
    assert_eq!(m.slot(dh2), m.slot(h3));
    assert_eq!(m.slot(dh1), m.slot(h2));
    assert!(c.plan.is_shared(h3) && c.plan.is_shared(dh1));
    // The host's tensors and the gradient keep buffers of their own.
    for t in [c.x, c.out, c.dout, c.dx] {
        assert!(!c.plan.is_shared(t), "{} is shared", c.plan.tensor(t).name);
    }
    // 4 of the host's + h1, h2, h3, dh3: 8 slots of N values for 10 tensors.
    assert_eq!(m.slot_lens().len(), 8);
    assert_eq!(c.plan.bytes(), 8 * N * 4);
    assert_eq!(c.plan.bytes_without_reuse(), 10 * N * 4);
    // At most four at once (position 4: h1, h2, h3 and dh3), with the four kept.
    assert_eq!(m.peak(), (8 * N * 4, 4));
}

#[test]
fn a_wrong_assignment_is_a_plan_error_naming_the_step_and_both_tensors() {
    let c = chain();
    let mut slots: Vec<usize> = (0..c.plan.tensors.len()).collect();
    // h3 into h1's storage: h3 is written at forward#2 while h1 is still to be read at
    // backward#2 (plan step 6), which does not bind h3.
    let [h1, _, h3] = c.h;
    slots[h3] = slots[h1];
    let err = c.plan.clone().with_slots(slots).expect_err("h1 is read after h3 overwrote its slot");
    let text = err.to_string();
    match &err {
        PlanError::Step { step, .. } => assert_eq!(*step, 6, "{text}"),
        other => panic!("a step error expected, got {other}"),
    }
    assert!(text.contains("reads h1") && text.contains("last written by h3 (plan step 2)"), "{text}");

    // Two tensors of one slot bound by one step (h3 read while dh3 is written).
    let mut slots: Vec<usize> = (0..c.plan.tensors.len()).collect();
    slots[c.dh[2]] = slots[c.h[2]];
    let text = c.plan.clone().with_slots(slots).expect_err("one step binds both").to_string();
    assert!(text.contains("share slot"), "{text}");

    // The assignment the plan chose passes the same check, and so does one of its own.
    let own: Vec<usize> = (0..c.plan.tensors.len()).map(|t| c.plan.memory().slot(t)).collect();
    c.plan.clone().with_slots(own).expect("the plan's own assignment");
}

#[test]
fn clears_are_where_a_gradient_accumulates_into_a_fresh_tensor() {
    let c = chain();
    let plan = &c.plan;
    // Every first write of an activation gradient here accumulates (relu2_bwd): each is
    // cleared right before it, once, and nothing else is cleared.
    let [dh1, dh2, dh3] = c.dh;
    let expect = |phase: Phase, i: usize| -> Vec<TensorId> {
        match (phase, i) {
            (Phase::Backward, 0) => vec![dh3],
            (Phase::Backward, 1) => vec![dh2],
            (Phase::Backward, 2) => vec![dh1],
            _ => vec![],
        }
    };
    for phase in Phase::ALL {
        for i in 0..plan.steps(phase).len() {
            assert_eq!(plan.clears_before(phase, i), expect(phase, i).as_slice(), "{phase:?}#{i}");
        }
    }
    // dx is a parameter-style gradient (Role::Grad): it accumulates across micro-batches
    // and is the caller's to clear. An activation first written by an overwrite is never
    // cleared (checked above: no forward clears).
}

/// The chain run on the CPU executor with and without reuse, twice over (so the second
/// micro-batch finds the first's data in the shared slots), gives identical results: the
/// clears make the accumulated gradients start from zero.
#[test]
fn the_chain_computes_the_same_with_and_without_reuse() {
    let c = chain();
    let xs: Vec<f32> = (0..N).map(|i| i as f32 * 0.3 - 0.7).collect();
    let douts: Vec<f32> = (0..N).map(|i| 1.0 - i as f32 * 0.2).collect();
    let run = |ex: &mut dyn Executor| {
        ex.write(c.x, HostData::F32(&xs)).unwrap();
        ex.write(c.dout, HostData::F32(&douts)).unwrap();
        for _ in 0..2 {
            ex.run(Phase::Forward, 0..4).unwrap();
            // The backward one step at a time too (each run starts with its step's clears).
            ex.run(Phase::Backward, 0..1).unwrap();
            ex.run(Phase::Backward, 1..4).unwrap();
        }
        (ex.read(c.out).unwrap(), ex.read(c.dx).unwrap())
    };
    let (out, dx) = run(&mut CpuExecutor::new(&c.plan));
    let (out0, dx0) = run(&mut CpuExecutor::new(&c.plan.clone().without_reuse()));
    assert_eq!(out, out0);
    assert_eq!(dx, dx0);
    // The GPU executor binds the shared tensors as ranges of their slots' buffers and
    // clears between passes: the same values within the kernel tolerance.
    let (gout, gdx) = run(&mut common::gpu_executor(&c.plan));
    let tol = wgolf::tolerance::tolerance(wgolf::tolerance::Check::KernelF32);
    common::assert_close("out", &gout, &out, tol);
    common::assert_close("dx", &gdx, &dx, tol);
    assert!(dx.iter().any(|&v| v != 0.0), "a vacuous gradient");
    // dx accumulated twice the same gradient.
    let mut once = c.plan.clone().without_reuse();
    once = once.with_slots((0..c.plan.tensors.len()).collect()).unwrap();
    let mut ex = CpuExecutor::new(&once);
    ex.write(c.x, HostData::F32(&xs)).unwrap();
    ex.write(c.dout, HostData::F32(&douts)).unwrap();
    ex.run(Phase::Forward, 0..4).unwrap();
    ex.run(Phase::Backward, 0..4).unwrap();
    let single = ex.read(c.dx).unwrap();
    for (d, s) in dx.iter().zip(&single) {
        assert_eq!(*d, 2.0 * s);
    }
}

/// Every binding an op declares overwritten (`BindingSpec::out`) is: its CPU reference's
/// result does not depend on the old value (the liveness trusts this claim).
#[test]
fn every_overwritten_binding_ignores_its_old_value() {
    let mut claims = 0;
    for (n, op) in Op::examples().iter().enumerate() {
        let inputs = common::random_inputs(op, 40 + n as u64);
        // The same inputs with every written binding's old value changed.
        let mut other = inputs.clone();
        for (spec, data) in op.bindings().iter().zip(other.iter_mut()) {
            if spec.access == Access::ReadWrite {
                *data = common::Data::F32(common::uniform(7 + n as u64, spec.len, 2.0, 3.0));
            }
        }
        let (a, b) = (common::run_cpu(op, &inputs), common::run_cpu(op, &other));
        for ((i, x), (_, y)) in a.iter().zip(&b) {
            if op.bindings()[*i].overwrites {
                claims += 1;
                assert_eq!(x, y, "{}: binding {i} is declared overwritten but keeps some of its old value", op.kind());
            }
        }
    }
    assert!(claims >= 15, "only {claims} overwritten outputs among the examples");
}

fn record_at(overrides: &[&str]) -> (Config, Plan) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/record.toml");
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let cfg = Config::load(&path, &overrides).unwrap();
    let plan = wgolf::model::build_plan(&cfg).unwrap();
    (cfg, plan)
}

/// Issue 9's target: the record model at 48 x 2048 tokens per micro-batch in at most 40 GiB
/// of plan memory (it was about 92.5 GiB with a buffer per tensor). Building the plan
/// allocates nothing.
#[test]
fn the_record_model_at_its_training_shape_fits_in_40_gib() {
    let (_, plan) = record_at(&["train.batch_seqs=48", "train.grad_accum=1"]);
    let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
    assert!(plan.bytes_without_reuse() > 80 << 30, "{:.1} GiB without reuse", gib(plan.bytes_without_reuse()));
    assert!(plan.bytes() <= 40 << 30, "{:.1} GiB of plan memory with reuse", gib(plan.bytes()));
    assert!(plan.memory().peak().0 <= plan.bytes());
}

/// In the model plans every activation gradient whose first write accumulates is cleared
/// right before that write, once; none first written by an overwrite is; and no
/// parameter gradient, optimizer state or loss ever is (those are the caller's).
#[test]
fn the_model_plans_clear_exactly_the_accumulated_activation_gradients() {
    for config in ["configs/tiny.toml", "configs/record-tiny.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(config);
        let cfg = Config::load(&path, &[]).unwrap();
        let plan = wgolf::model::build_plan(&cfg).unwrap();
        let mut first: Vec<Option<(Phase, usize, bool)>> = vec![None; plan.tensors.len()];
        let mut cleared: Vec<Vec<(Phase, usize)>> = vec![Vec::new(); plan.tensors.len()];
        for phase in Phase::ALL {
            for (i, step) in plan.steps(phase).iter().enumerate() {
                for &t in plan.clears_before(phase, i) {
                    cleared[t].push((phase, i));
                }
                for (spec, &t) in step.op.bindings().iter().zip(&step.args) {
                    if first[t].is_none() {
                        let accumulates = spec.access == Access::ReadWrite && !spec.overwrites;
                        first[t] = Some((phase, i, accumulates));
                    }
                }
            }
        }
        let mut accumulated = 0;
        for (t, desc) in plan.tensors.iter().enumerate() {
            let want: Vec<(Phase, usize)> = match (desc.role, first[t]) {
                (Role::Activation | Role::ActGrad | Role::Scratch, Some((p, i, true))) => vec![(p, i)],
                _ => vec![],
            };
            assert_eq!(cleared[t], want, "{config}: {} ({:?})", desc.name, desc.role);
            accumulated += usize::from(matches!(desc.role, Role::ActGrad) && !want.is_empty());
        }
        assert!(accumulated > 5, "{config}: only {accumulated} accumulated activation gradients");
        // And the forward overwrites: no forward step is preceded by a clear.
        for i in 0..plan.steps(Phase::Forward).len() {
            assert!(
                plan.clears_before(Phase::Forward, i).is_empty(),
                "{config}: {} is cleared first",
                plan.step_name(Phase::Forward, i)
            );
        }
    }
}

mod common;
