//! Helpers shared by the test binaries: the GPU context (made once per binary), seeded test
//! data, running one op on an executor, and comparisons through the tolerance table.
//!
//! Each test binary uses only some of these, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use wgolf::exec::cpu::CpuExecutor;
use wgolf::exec::{Executor, HostData};
use wgolf::gpu::{GpuContext, GpuExecutor};
use wgolf::init::Rng;
use wgolf::plan::{Access, Domain, KernelCall, KernelTarget, Op, Phase, Plan};
use wgolf::tolerance::{first_mismatch, tolerance, Check, Tolerance};

/// The GPU context of this test binary, made on first use. Without an adapter every GPU test
/// fails with the context's own message (which says how to install lavapipe): a missing GPU
/// must never turn into a silently skipped test.
pub fn gpu() -> Arc<GpuContext> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    match CTX.get_or_init(|| GpuContext::new(None).map(Arc::new).map_err(|e| e.to_string())) {
        Ok(ctx) => ctx.clone(),
        Err(e) => panic!("GPU tests need a GPU context: {e}"),
    }
}

/// Host data of one binding.
#[derive(Clone, Debug)]
pub enum Data {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

impl Data {
    pub fn host(&self) -> HostData<'_> {
        match self {
            Data::F32(v) => HostData::F32(v),
            Data::U32(v) => HostData::U32(v),
        }
    }
    pub fn f32(&self) -> &[f32] {
        match self {
            Data::F32(v) => v,
            Data::U32(_) => panic!("f32 data expected"),
        }
    }
}

/// `n` values uniform in `[lo, hi)` from `seed`.
pub fn uniform(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| lo + (hi - lo) * rng.uniform() as f32).collect()
}

/// `n` values from Normal(0, std) from `seed`.
pub fn normal(seed: u64, n: usize, std: f32) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| (rng.normal() * std as f64) as f32).collect()
}

/// `n` values uniform in `[lo, hi)` from `seed`, in f64 (for the finite-difference checks).
pub fn uniform_f64(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect()
}

/// `n` ids below `bound` from `seed`.
pub fn ids(seed: u64, n: usize, bound: usize) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| (rng.next_u64() % bound as u64) as u32).collect()
}

/// Seeded data for every binding of `op`, drawn from the binding's [`Domain`]: f32 bindings
/// uniform in [-1, 1) (read-write ones too, so that accumulating kernels are seen to add to
/// what is there and overwriting ones to ignore it), non-negative ones in [0, 1), ids below
/// their bound, id indices those of random ids, hyperparameter uniforms a plausible step.
pub fn random_inputs(op: &Op, seed: u64) -> Vec<Data> {
    op.bindings()
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let s = seed.wrapping_mul(1000).wrapping_add(i as u64);
            match spec.domain {
                Domain::MuonHyper => {
                    let h = wgolf::ops::muon::MuonHyper::new(0.02, 0.95, 0.04);
                    Data::F32(bytemuck::cast_slice(&[h]).to_vec())
                }
                Domain::SgdHyper => {
                    let h = wgolf::ops::sgd::SgdHyper::new(0.05, 0.9);
                    Data::F32(bytemuck::cast_slice(&[h]).to_vec())
                }
                Domain::AdamHyper => {
                    let h = wgolf::ops::adamw::AdamHyper::at_step(0.01, 0.9, 0.95, 1e-8, 0.1, 1);
                    Data::F32(bytemuck::cast_slice(&[h]).to_vec())
                }
                Domain::Ids { bound } => Data::U32(ids(s, spec.len, bound)),
                Domain::IdIndex { vocab } => {
                    Data::U32(wgolf::ops::embedding::id_index(&ids(s, spec.len - vocab - 1, vocab), vocab).unwrap())
                }
                Domain::NonNegative => Data::F32(uniform(s, spec.len, 0.0, 1.0)),
                Domain::Any => Data::F32(uniform(s, spec.len, -1.0, 1.0)),
            }
        })
        .collect()
}

/// Writes `inputs` (one per binding) into a single-op plan's executor.
pub fn write_all(ex: &mut dyn Executor, inputs: &[Data]) {
    for (i, d) in inputs.iter().enumerate() {
        ex.write(i, d.host()).unwrap();
    }
}

/// Reads back every read-write binding of `op`: `(binding index, values)`.
pub fn read_outputs(ex: &mut dyn Executor, op: &Op) -> Vec<(usize, Vec<f32>)> {
    op.bindings()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.access == Access::ReadWrite)
        .map(|(i, _)| (i, ex.read(i).unwrap()))
        .collect()
}

/// The single-op plan of `op`, with the op's own check message on failure.
pub fn plan_of(op: &Op) -> Plan {
    Plan::single_op(*op).unwrap_or_else(|e| panic!("{}: {e}", op.kernel().label()))
}

/// A GPU executor for a single-op plan.
pub fn gpu_executor(plan: &Plan) -> GpuExecutor {
    GpuExecutor::new(gpu(), plan).unwrap_or_else(|e| panic!("GPU executor: {e}"))
}

/// Runs `op` once on the CPU reference from `inputs`; returns its read-write bindings.
pub fn run_cpu(op: &Op, inputs: &[Data]) -> Vec<(usize, Vec<f32>)> {
    let plan = plan_of(op);
    let mut ex = CpuExecutor::new(&plan);
    write_all(&mut ex, inputs);
    ex.run(Phase::Forward, 0..1).unwrap();
    read_outputs(&mut ex, op)
}

/// Runs `op` once on the GPU from `inputs`; returns its read-write bindings.
pub fn run_gpu(op: &Op, inputs: &[Data]) -> Vec<(usize, Vec<f32>)> {
    run_gpu_for(op, inputs, gpu().kernel_target())
}

/// [`run_gpu`] with the kernels tuned for `target` (either variant runs on any adapter).
pub fn run_gpu_for(op: &Op, inputs: &[Data], target: KernelTarget) -> Vec<(usize, Vec<f32>)> {
    let plan = plan_of(op);
    let mut ex = GpuExecutor::with_target(gpu(), &plan, target).unwrap_or_else(|e| panic!("GPU executor: {e}"));
    write_all(&mut ex, inputs);
    ex.run(Phase::Forward, 0..1).unwrap();
    read_outputs(&mut ex, op)
}

/// Panics, naming `what`, the first element where `got` and `want` differ beyond `tol`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    assert_eq!(got.len(), want.len(), "{what}: {} values, expected {}", got.len(), want.len());
    if let Some((i, g, w)) = first_mismatch(got, want, tol) {
        panic!(
            "{what}: element {i} of {}: got {g}, want {w} \
             (diff {:e}, tolerance atol {:e} + rtol {:e} * |want|)",
            got.len(),
            (g - w).abs(),
            tol.atol,
            tol.rtol
        );
    }
}

/// The kernel the GPU executor runs for `op` on this adapter: the portable one tuned for
/// the adapter's kind, or a replacement (the cooperative-matrix matmul on tensor-core GPUs).
pub fn gpu_call(op: &Op) -> KernelCall {
    gpu_call_for(op, gpu().kernel_target())
}

/// [`gpu_call`] with the portable kernel tuned for `target`.
pub fn gpu_call_for(op: &Op, target: KernelTarget) -> KernelCall {
    wgolf::gpu::coop::select(&gpu(), op).unwrap_or_else(|| op.kernel_for(target))
}

/// The tolerance of a kernel check: `tol` for the portable f32 kernels, `Check::KernelF16`
/// where the adapter runs a replacement kernel (f16 operands, f32 accumulation) instead.
pub fn tolerance_for(op: &Op, tol: Tolerance) -> Tolerance {
    if wgolf::gpu::coop::select(&gpu(), op).is_none() {
        tol
    } else {
        tolerance(Check::KernelF16)
    }
}

/// Runs `op` on the GPU and on its CPU reference from the same `inputs` and checks that
/// every read-write binding agrees within `tol` (see [`tolerance_for`]). The message names
/// the kernel that ran (shader and label), the binding, the element and both values.
pub fn check_gpu_vs_cpu(op: &Op, inputs: &[Data], tol: Tolerance) {
    check_gpu_vs_cpu_for(op, inputs, tol, gpu().kernel_target())
}

/// [`check_gpu_vs_cpu`] with the portable kernel tuned for `target`: the kernel tests run
/// both variants ([`KernelTarget::Gpu`] and [`KernelTarget::Cpu`]) on whatever adapter
/// they have, so the one a GPU runs is checked on lavapipe too.
pub fn check_gpu_vs_cpu_for(op: &Op, inputs: &[Data], tol: Tolerance, target: KernelTarget) {
    let want = run_cpu(op, inputs);
    let got = run_gpu_for(op, inputs, target);
    let call = gpu_call_for(op, target);
    let tol = tolerance_for(op, tol);
    for ((b, g), (_, w)) in got.iter().zip(&want) {
        let what = format!("{}.wgsl {} binding {b} (gpu vs cpu)", call.shader, call.label());
        assert_close(&what, g, w, tol);
    }
}

/// Renders values rounded to 4 significant digits, `per_line` to a line (for snapshots).
pub fn render(values: &[f32], per_line: usize) -> String {
    values
        .chunks(per_line.max(1))
        .map(|row| row.iter().map(|&v| sig4(v)).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `v` rounded to 4 significant digits, trailing zeros dropped (`0.36`, `-1.248`, `1.5e-7`).
pub fn sig4(v: f32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return format!("{v}");
    }
    // Scientific notation does the rounding to 4 significant digits, carries included.
    let sci = format!("{:.3e}", v);
    let (mantissa, exp) = sci.split_once('e').expect("scientific notation");
    let exp: i32 = exp.parse().expect("an exponent");
    if !(-4..6).contains(&exp) {
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{mantissa}e{exp}");
    }
    let rounded: f64 = sci.parse().expect("a number");
    let s = format!("{:.*}", (3 - exp).max(0) as usize, rounded);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

// ---------------------------------------------------------------- finite differences

/// `sum(w * y)`: the scalar objective whose gradient with respect to `y` is `w`.
pub fn weighted(w: &[f64], y: &[f64]) -> f64 {
    assert_eq!(w.len(), y.len());
    w.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Central differences of `f` at `x`, with the step `1e-6 * scale[i]` in coordinate i,
/// divided by the step actually taken after rounding of `x +- h`.
pub fn numeric_grad(x: &[f64], scale: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let h = 1e-6 * scale[i];
            let (hi, lo) = (x[i] + h, x[i] - h);
            xp[i] = hi;
            let fp = f(&xp);
            xp[i] = lo;
            let fm = f(&xp);
            xp[i] = x[i];
            (fp - fm) / (hi - lo)
        })
        .collect()
}

/// Runs an accumulating backward from a random gradient buffer of `n` values and returns
/// what it added (so that overwriting instead of accumulating is caught).
pub fn increment(n: usize, seed: u64, backward: impl FnOnce(&mut [f64])) -> Vec<f64> {
    let init = uniform_f64(seed, n, -1.0, 1.0);
    let mut buf = init.clone();
    backward(&mut buf);
    buf.iter().zip(&init).map(|(b, i)| b - i).collect()
}

/// The `train_loss` of every `train` event of a run's metrics.jsonl.
pub fn train_losses(run: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "train")
        .map(|v| v["train_loss"].as_f64().unwrap())
        .collect()
}

/// Two runs of the same config, one by several ranks (`two`) and one by a single process
/// accumulating the same micro-batches (`one`), logged the same losses at each of `steps`
/// steps (`Check::RankLoss`: the log sums them differently) and ended with the same state:
/// every tensor of the final checkpoint (weights, Adam and Muon buffers, EMA) within
/// `Check::RankState`, and tensors of each of those kinds were compared.
pub fn assert_same_final_state(one: &std::path::Path, two: &std::path::Path, steps: usize) {
    let (losses_one, losses_two) = (train_losses(one), train_losses(two));
    assert_eq!(losses_one.len(), steps, "{losses_one:?}");
    assert_eq!(losses_two.len(), steps, "{losses_two:?}");
    let tol = tolerance(Check::RankLoss);
    for (step, (a, b)) in losses_one.iter().zip(&losses_two).enumerate() {
        assert!(wgolf::tolerance::within(*b as f32, *a as f32, tol), "step {}: loss {a} vs {b}", step + 1);
    }
    let [ck_one, ck_two] =
        [one, two].map(|run| wgolf::checkpoint::read(&wgolf::checkpoint::checkpoint_path(run)).unwrap());
    assert_eq!(ck_one.tensors.len(), ck_two.tensors.len());
    let mut kinds = std::collections::BTreeSet::new();
    for (name, (shape, a)) in &ck_one.tensors {
        let (shape_two, b) =
            ck_two.tensors.get(name).unwrap_or_else(|| panic!("{name} missing from the multi-rank run"));
        assert_eq!(shape, shape_two, "{name}");
        if let Some((i, x, y)) = first_mismatch(b, a, tolerance(Check::RankState)) {
            panic!("{name}[{i}]: several ranks {x}, one process {y}");
        }
        kinds.insert(name.split('.').next().unwrap().to_string());
    }
    for kind in ["adam_m", "adam_v", "muon_buf", "ema"] {
        assert!(kinds.contains(kind), "no {kind} tensors compared: {kinds:?}");
    }
}

/// `wgolf train` arguments of the data-parallel equivalence runs: `configs/record-tiny.toml`
/// (Muon, clip, EMA and every model feature on) for 4 steps of 2 micro-batches, a loss logged
/// at every step, no periodic validation.
pub fn record_tiny_equivalence_args(out: &std::path::Path) -> Vec<String> {
    let mut a: Vec<String> = ["train", "--config", "configs/record-tiny.toml", "--out"].map(String::from).into();
    a.push(out.display().to_string());
    // Buckets of 0.1 MB: the gradients are averaged in about 8 buckets during the backward.
    for set in [
        "train.steps=4",
        "train.grad_accum=2",
        "train.log_every=1",
        "train.val_seqs=2",
        "eval.val_every=0",
        "train.allreduce_bucket_mb=0.1",
    ] {
        a.extend(["--set".to_string(), set.to_string()]);
    }
    a
}

/// The pid of a child process of `parent` whose environment holds `var` (such as `RANK=1`).
pub fn child_with_env(parent: u32, var: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ppid: u32 = stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()?;
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let has = environ.split(|&b| b == 0).any(|kv| kv == var.as_bytes());
        (ppid == parent && has).then_some(pid)
    })
}

/// The `train_loss` of every `train` event in `run`'s metrics so far (none before the file exists).
pub fn train_losses_if_any(run: &std::path::Path) -> Vec<f64> {
    match std::fs::read_to_string(run.join("metrics.jsonl")) {
        Ok(text) => text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "train")
            .map(|v| v["train_loss"].as_f64().unwrap_or(f64::NAN))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Spawns `cmd` with stderr piped and drained as it comes by a thread (so a chatty process
/// never blocks on a full pipe), which returns the text once the process has closed it.
pub fn spawn_draining_stderr(
    cmd: &mut std::process::Command,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut text).unwrap();
        text
    });
    (child, reader)
}

/// Waits until the run in `run` has logged a training step, failing after `limit`.
pub fn wait_for_a_logged_step(run: &std::path::Path, limit: std::time::Duration) {
    let until = std::time::Instant::now() + limit;
    while train_losses_if_any(run).is_empty() {
        assert!(std::time::Instant::now() < until, "the run never logged a step");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits for `child` to exit; after `limit` kills it and fails, saying that `what` did not
/// end it.
pub fn exit_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the run did not end within {limit:?} of {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
