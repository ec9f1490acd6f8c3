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
