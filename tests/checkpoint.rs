//! Checkpoint contents: parameters and persistent optimizer state are saved, per-step
//! scratch is not; checkpoints of the older format (which held scratch) still resume; an
//! unknown format is refused with its name. CPU only: nothing here runs a kernel.

use std::collections::HashMap;
use std::path::Path;
use wgolf::checkpoint::{read, restore_checkpoint, save_checkpoint};
use wgolf::config::Config;
use wgolf::data::StreamPosition;
use wgolf::exec::cpu::CpuExecutor;
use wgolf::exec::{Executor, HostData};
use wgolf::init::init_params;
use wgolf::model::build_plan;
use wgolf::plan::{Plan, Role};

fn record_tiny() -> (Config, Plan) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/record-tiny.toml");
    let cfg = Config::load(&path, &[]).expect("configs/record-tiny.toml loads");
    let plan = build_plan(&cfg).expect("the plan builds");
    (cfg, plan)
}

fn position() -> StreamPosition {
    StreamPosition {
        shard_index: 0,
        shard_name: "fineweb_train_000000.bin".into(),
        offset: 4096,
        tokens_consumed: 4096,
    }
}

/// A CPU executor holding seeded parameters and distinct nonzero values in every other
/// state and scratch tensor (so that a restore that skipped one would be seen).
fn filled_executor(plan: &Plan) -> CpuExecutor {
    let mut ex = CpuExecutor::new(plan);
    for (id, values) in init_params(plan, 3) {
        ex.write(id, HostData::F32(&values)).unwrap();
    }
    for t in plan.with_role(|r| matches!(r, Role::OptState | Role::Scratch)) {
        let values: Vec<f32> = (0..plan.tensor(t).numel()).map(|i| (t * 1000 + i) as f32 * 1e-4).collect();
        ex.write(t, HostData::F32(&values)).unwrap();
    }
    ex
}

#[test]
fn checkpoints_hold_state_but_not_scratch() {
    let (cfg, plan) = record_tiny();
    let scratch = plan.with_role(|r| matches!(r, Role::Scratch));
    let names = |ids: &[usize]| ids.iter().map(|&t| plan.tensor(t).name.clone()).collect::<Vec<_>>();
    let scratch_names = names(&scratch);
    assert!(scratch_names.iter().any(|n| n.starts_with("muon.x0.")), "Muon stacks are scratch: {scratch_names:?}");
    assert!(scratch_names.iter().any(|n| n == "clip.partials"), "the clip's partials are scratch: {scratch_names:?}");
    assert!(
        scratch_names.iter().any(|n| n.starts_with("reduce.partials.")),
        "the channel reductions' partials are scratch: {scratch_names:?}"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("checkpoint.safetensors");
    let mut ex = filled_executor(&plan);
    save_checkpoint(&path, &plan, &mut ex, &cfg, 7, 1.5, &position()).expect("saved");
    let ck = read(&path).expect("read back");
    for name in &scratch_names {
        assert!(!ck.tensors.contains_key(name), "scratch tensor {name} was saved");
    }
    let state = plan.with_role(|r| matches!(r, Role::Param { .. } | Role::OptState));
    for name in names(&state) {
        assert!(ck.tensors.contains_key(&name), "state tensor {name} is missing");
    }
    assert!(ck.tensors.keys().any(|n| n.starts_with("muon_buf.")), "Muon momentum is state");
    assert!(ck.tensors.keys().any(|n| n.starts_with("ema.")), "the EMA is state");
}

/// Rewrites a checkpoint as the older format wrote it: scratch tensors included.
fn as_old_format(path: &Path, plan: &Plan, ex: &mut CpuExecutor, out: &Path) {
    let ck = read(path).expect("read back");
    let mut named: Vec<(String, Vec<usize>, Vec<f32>)> =
        ck.tensors.iter().map(|(n, (s, v))| (n.clone(), s.clone(), v.clone())).collect();
    for t in plan.with_role(|r| matches!(r, Role::Scratch)) {
        named.push((plan.tensor(t).name.clone(), plan.tensor(t).shape.clone(), ex.read(t).unwrap()));
    }
    let views: Vec<_> = named
        .iter()
        .map(|(n, s, v)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), bytemuck::cast_slice(v));
            (n.clone(), view.expect("a valid view"))
        })
        .collect();
    let mut metadata: HashMap<String, String> = ck.metadata.clone();
    metadata.insert("wgolf_format".into(), "checkpoint-1".into());
    let bytes = safetensors::serialize(views, Some(metadata)).expect("serialized");
    std::fs::write(out, bytes).expect("written");
}

#[test]
fn an_older_checkpoint_with_scratch_still_restores() {
    let (cfg, plan) = record_tiny();
    let dir = tempfile::tempdir().expect("a temp dir");
    let (new, old) = (dir.path().join("new.safetensors"), dir.path().join("old.safetensors"));
    let mut ex = filled_executor(&plan);
    save_checkpoint(&new, &plan, &mut ex, &cfg, 7, 1.5, &position()).expect("saved");
    as_old_format(&new, &plan, &mut ex, &old);
    let ck = read(&old).expect("the old checkpoint reads");
    let mut restored = CpuExecutor::new(&plan);
    restore_checkpoint(&ck, &plan, &mut restored).expect("the old checkpoint restores");
    for t in plan.with_role(|r| matches!(r, Role::Param { .. } | Role::OptState)) {
        assert_eq!(restored.read(t).unwrap(), ex.read(t).unwrap(), "{} differs after restoring", plan.tensor(t).name);
    }
    assert_eq!(ck.step().expect("a step"), 7);
}

#[test]
fn an_unknown_checkpoint_format_is_refused_by_name() {
    let (cfg, plan) = record_tiny();
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("checkpoint.safetensors");
    let mut ex = filled_executor(&plan);
    save_checkpoint(&path, &plan, &mut ex, &cfg, 7, 1.5, &position()).expect("saved");
    let mut ck = read(&path).expect("read back");
    ck.metadata.insert("wgolf_format".into(), "checkpoint-9".into());
    let err = restore_checkpoint(&ck, &plan, &mut CpuExecutor::new(&plan)).expect_err("an unknown format");
    let msg = format!("{err:#}");
    assert!(msg.contains("checkpoint-9") && msg.contains("checkpoint.safetensors"), "unhelpful error: {msg}");
}
