//! `wgolf train --nproc-per-node N` end to end on the CPU executor: two processes train as one
//! with the same global batch, rank 0 alone writes the run, bad launches are refused, and a
//! rank killed mid-run fails the run with an error naming it.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
mod common;

use common::{
    assert_same_final_state, child_with_env, exit_within, spawn_draining_stderr, train_losses, wait_for_a_logged_step,
};
use wgolf::tolerance::{tolerance, Check};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgolf"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir()).env("WGOLF_PROGRESS", "off");
    c
}

fn train_args(out: &Path, steps: usize) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--config", "configs/tiny.toml", "--cpu", "--out"].map(String::from).into();
    args.push(out.display().to_string());
    for set in [
        format!("train.steps={steps}"),
        "train.grad_accum=2".into(),
        "train.log_every=1".into(),
        // 9 sequences: the ranks' shares of a periodic validation are 4 and 5.
        "train.val_seqs=9".into(),
        "eval.val_every=2".into(),
    ] {
        args.push("--set".into());
        args.push(set);
    }
    args
}

/// (step, val_loss, val_tokens, val_bytes) of every `val` event.
fn val_events(run: &Path) -> Vec<(u64, f64, u64, u64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "val")
        .map(|v| {
            let int = |k: &str| v[k].as_u64().unwrap();
            (int("step"), v["val_loss"].as_f64().unwrap(), int("val_tokens"), int("val_bytes"))
        })
        .collect()
}

fn leftover_segments(launcher_pid: u32) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&format!("train-{launcher_pid}-")))
        .collect()
}

fn run(cmd: &mut Command) -> (Output, u32) {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

#[test]
fn two_processes_train_as_one_with_the_same_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let (out, _) = run(bin().args(train_args(&one, 3)));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (out, launcher) = run(bin().args(train_args(&two, 3)).args(["--nproc-per-node", "2"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Each rank runs one of the step's two micro-batches on its half of the stream's span, and
    // the mean over ranks of per-rank means scaled by 1/1024 tokens is the single process's
    // sum scaled by 1/2048: the same numbers, exactly (a power-of-two rescale).
    let (losses_one, losses_two) = (train_losses(&one), train_losses(&two));
    assert_eq!(losses_one.len(), 3);
    assert_eq!(losses_one, losses_two, "two processes differ from one");
    // The periodic validation at step 2 is split between the ranks (4 and 5 sequences) and
    // summed; the final one is rank 0's alone. Tokens and bytes are exact; the loss sums are
    // f64 sums of the same terms grouped differently.
    let (val_one, val_two) = (val_events(&one), val_events(&two));
    assert_eq!(val_one.iter().map(|v| v.0).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(val_one.len(), val_two.len());
    for (a, b) in val_one.iter().zip(&val_two) {
        assert_eq!((a.0, a.2, a.3), (b.0, b.2, b.3), "val event at step {}", a.0);
        let rtol = tolerance(Check::RankSums).rtol as f64;
        assert!((a.1 - b.1).abs() <= rtol * a.1.abs(), "step {}: val_loss {} vs {}", a.0, a.1, b.1);
    }
    // Rank 0 alone logs: one announcement, one summary line.
    assert_eq!(stderr.matches("wgolf train:").count(), 1, "{stderr}");
    assert!(stderr.contains("x 2 processes"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("done:").count(), 1);
    let start = std::fs::read_to_string(two.join("metrics.jsonl")).unwrap();
    assert!(start.lines().next().unwrap().contains("\"world_size\":2"));
    assert!(two.join("model.safetensors").exists());
    assert!(leftover_segments(launcher).is_empty(), "{:?}", leftover_segments(launcher));
}

#[test]
fn a_grad_accum_that_does_not_divide_among_the_processes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = train_args(dir.path(), 2);
    args.extend(["--set".into(), "train.grad_accum=3".into(), "--nproc-per-node".into(), "2".into()]);
    let (out, _) = run(bin().args(args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("train.grad_accum = 3 does not divide among 2 processes"), "{stderr}");
    assert!(stderr.contains("of 2 failed"), "{stderr}");
}

#[test]
fn a_rank_killed_mid_run_fails_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, reader) =
        spawn_draining_stderr(bin().args(train_args(dir.path(), 100_000)).args(["--nproc-per-node", "2"]));
    let launcher = child.id();
    wait_for_a_logged_step(dir.path(), Duration::from_secs(120));
    let victim = child_with_env(launcher, "RANK=1").expect("rank 1's process");
    // SAFETY: kills a process this test started (through the launcher).
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let status = exit_within(&mut child, Duration::from_secs(30), "rank 1's death");
    let stderr = reader.join().unwrap();
    assert!(!status.success());
    assert!(stderr.contains(&format!("rank 1 (pid {victim}) died")), "{stderr}");
    assert!(stderr.contains("rank 1 of 2 was killed"), "{stderr}");
    assert!(leftover_segments(launcher).is_empty());
}

/// Issue 11's equivalence on the GPU executor (lavapipe in CI): `configs/record-tiny.toml`,
/// every feature of the record on (BigramHash, SmearGate, XSA, skips, Muon + AdamW, the
/// gradient clip, the EMA), trained by two processes of one micro-batch each and by one
/// process accumulating both, from the same seed. Each rank's gradients carry 1/512 where the
/// single process's carry 1/1024, a power of two, and the ranks' sum in rank order halved is
/// the single process's accumulation up to how the additions are grouped (some kernels add
/// term by term into an accumulating gradient): the losses at every step and the whole final
/// state (weights, Adam and Muon buffers, EMA) agree to f32 roundings (`Check::RankLoss`,
/// `Check::RankState`). The two ranks also checked each other before the final checkpoint
/// (`train/agreement.rs`). The two processes run distributed Muon (each rank's share of the
/// Newton-Schulz work, the updates exchanged), as the reference does; a single process has
/// one share. tests/dist_mpi.rs runs the same under `mpirun` (feature `mpi`), with and
/// without distributed Muon.
#[test]
fn record_tiny_on_two_processes_matches_one_with_muon_clip_and_ema() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let args = |out: &Path| {
        let mut a = common::record_tiny_equivalence_args(out);
        a.extend(["--set".into(), "train.distributed_muon=true".into()]);
        a
    };
    let (out, _) = run(bin().args(args(&one)));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (out, launcher) = run(bin().args(args(&two)).args(["--nproc-per-node", "2"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("x 2 processes, distributed Muon in 2 shards"), "{stderr}");
    assert!(stderr.contains("step 4: the 2 ranks agree on all"), "{stderr}");
    assert_same_final_state(&one, &two, 4);
    assert!(leftover_segments(launcher).is_empty(), "{:?}", leftover_segments(launcher));
}

#[test]
fn an_adapter_list_of_the_wrong_length_is_refused_before_any_rank_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = train_args(dir.path(), 2);
    args.retain(|a| a != "--cpu");
    args.extend(["--adapter", "0,0,0", "--nproc-per-node", "2"].map(String::from));
    let (out, _) = run(bin().args(args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--adapter 0,0,0: 3 adapters for 2 processes on this node"), "{stderr}");
    assert!(!stderr.contains("wgolf train:"), "a rank started: {stderr}");
}

/// Started by `mpirun` (its environment, here faked) without the `mpi` feature: refused with
/// a message saying how to build it, rather than every rank training alone into one run
/// directory.
#[cfg(not(feature = "mpi"))]
#[test]
fn an_mpi_launch_of_a_build_without_mpi_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args(train_args(dir.path(), 2)).env("OMPI_COMM_WORLD_RANK", "0").env("OMPI_COMM_WORLD_SIZE", "2");
    let (out, _) = run(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("built without MPI") && stderr.contains("--features mpi"), "{stderr}");
    assert!(!dir.path().join("metrics.jsonl").exists());
}
