//! Executors report failures as errors that name the tensor or the step, never by
//! panicking: host data of the wrong size, and a GPU device that is gone (destroyed here,
//! as a driver reset or a removed GPU would leave it).

mod common;

use std::sync::Arc;
use wgolf::exec::cpu::CpuExecutor;
use wgolf::exec::{ExecError, Executor, HostData};
use wgolf::gpu::{GpuContext, GpuExecutor};
use wgolf::plan::{AddInto, Phase, Plan};

fn plan() -> Plan {
    Plan::single_op(AddInto { count: 77 }).expect("a single-op plan")
}

fn assert_write_error(ex: &mut dyn Executor) {
    match ex.write(0, HostData::F32(&[1.0; 5])) {
        Err(e @ ExecError::Write { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("binding0") && msg.contains("77"), "the error names neither tensor nor size: {msg}");
        }
        other => panic!("{}: a 5-value write into a 77-value tensor gave {other:?}", ex.describe()),
    }
    match ex.write(1, HostData::U32(&[1; 77])) {
        Err(ExecError::Write { tensor, .. }) => assert_eq!(tensor, "binding1"),
        // The GPU stores bytes: a u32 write of the right size is a valid upload there.
        Ok(()) if ex.describe() != "cpu reference" => {}
        other => panic!("{}: ids written into an f32 tensor gave {other:?}", ex.describe()),
    }
}

#[test]
fn a_write_of_the_wrong_size_is_an_error_naming_the_tensor() {
    let plan = plan();
    assert_write_error(&mut CpuExecutor::new(&plan));
    assert_write_error(&mut common::gpu_executor(&plan));
}

#[test]
fn a_lost_device_gives_errors_not_panics() {
    // A context of its own: the test destroys its device.
    let ctx = Arc::new(GpuContext::new(None).unwrap_or_else(|e| panic!("GPU tests need a GPU context: {e}")));
    let plan = plan();
    let mut ex = GpuExecutor::new(ctx.clone(), &plan).expect("an executor");
    ex.write(0, HostData::F32(&[1.0; 77])).expect("a write before the loss");
    ex.run(Phase::Forward, 0..1).expect("a run before the loss");
    assert_eq!(ex.read(0).expect("a read before the loss").len(), 77);
    ctx.device.destroy();
    // The next wait notices; from then on every call says so, naming what it was doing.
    let lost = |r: Result<(), ExecError>, what: &str| match r {
        Err(e @ ExecError::DeviceLost { .. }) => e.to_string(),
        other => panic!("{what} on a destroyed device gave {other:?}"),
    };
    lost(ex.sync(), "sync");
    let msg = lost(ex.run(Phase::Forward, 0..1), "run");
    assert!(msg.contains("Forward steps 0..1"), "the run error names no step: {msg}");
    let msg = lost(ex.read(0).map(|_| ()), "read");
    assert!(msg.contains("binding0"), "the read error names no tensor: {msg}");
    let msg = lost(ex.write(0, HostData::F32(&[1.0; 77])), "write");
    assert!(msg.contains("binding0"), "the write error names no tensor: {msg}");
}

fn record_tiny(overrides: &[&str]) -> Plan {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/record-tiny.toml");
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let cfg = wgolf::config::Config::load(&path, &overrides).expect("configs/record-tiny.toml loads");
    wgolf::model::build_plan(&cfg).expect("the plan builds")
}

#[test]
fn an_oversized_batch_fails_before_allocating_with_the_figure() {
    // Enough sequences per micro-batch that the logits alone (batch x 128 tokens x 1,024
    // vocabulary x 4 bytes) exceed this adapter's largest storage binding (lavapipe: 128 MiB,
    // 257 sequences; a data-center GPU: 4 GiB).
    let ctx = common::gpu();
    let limit = ctx.device.limits().max_storage_buffer_binding_size.min(ctx.device.limits().max_buffer_size);
    let batch = limit / (128 * 1024 * 4) + 1;
    let plan = record_tiny(&[&format!("train.batch_seqs={batch}")]);
    let msg = match GpuExecutor::new(ctx.clone(), &plan) {
        Ok(_) => panic!("a plan of {} MiB was accepted on {}", plan.bytes() >> 20, ctx.adapter_name()),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("logits") && msg.contains("bytes"), "the error gives no tensor or figure: {msg}");
    assert!(msg.contains("train.batch_seqs"), "the error names no config field to lower: {msg}");
}

#[test]
fn a_plan_larger_than_the_device_memory_is_refused_with_the_figures() {
    let plan = record_tiny(&[]);
    let limits = common::gpu().device.limits();
    let bytes = plan.bytes() as u64;
    let err = wgolf::gpu::executor::check_fits(&plan, &limits, Some(bytes / 2), "a small GPU")
        .expect_err("half the plan's memory");
    let msg = err.to_string();
    assert!(msg.contains("device memory") && msg.contains(&(bytes / 2).to_string()), "no memory figure: {msg}");
    assert!(msg.contains("train.batch_seqs"), "the error names no config field to lower: {msg}");
    wgolf::gpu::executor::check_fits(&plan, &limits, Some(bytes * 2), "a large GPU").expect("twice the memory");
    wgolf::gpu::executor::check_fits(&plan, &limits, None, "an unknown GPU").expect("no memory figure");
}

#[test]
fn a_write_after_a_clear_of_the_same_tensor_keeps_the_write() {
    // Calls take effect in order on every executor: the GPU's clears are encoded with the
    // next run while its writes go through the queue, which must not reorder them.
    let plan = plan();
    let values: Vec<f32> = (0..77).map(|i| i as f32).collect();
    for ex in [&mut CpuExecutor::new(&plan) as &mut dyn Executor, &mut common::gpu_executor(&plan)] {
        ex.clear(&[0]).unwrap();
        ex.write(0, HostData::F32(&values)).unwrap();
        assert_eq!(ex.read(0).unwrap(), values, "{}: the write before the read was lost", ex.describe());
        ex.write(0, HostData::F32(&values)).unwrap();
        ex.clear(&[0]).unwrap();
        assert!(ex.read(0).unwrap().iter().all(|&v| v == 0.0), "{}: the clear after the write was lost", ex.describe());
    }
}
