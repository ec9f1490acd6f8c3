//! `wgolf train` under `mpirun` (feature `mpi`; CI installs OpenMPI and runs this with
//! `cargo test --features mpi --test dist_mpi`), on this machine: `configs/record-tiny.toml`
//! trained by MPI ranks as one process accumulating the same micro-batches does, on the flat
//! path (`WGOLF_MPI_RANKS_PER_NODE=1`: every mean one `MPI_Allreduce`, the switch that runs MPI
//! between ranks sharing a node) and on the hierarchical one (4 ranks as 2 simulated nodes of
//! 2: shared memory within each, MPI between them); and a rank killed under `mpirun` ends the
//! job. (A build without the feature refuses an MPI launch instead of training each rank
//! alone: tests/dist_train.rs.)
#![cfg(all(target_os = "linux", feature = "mpi"))]

mod common;

use common::{
    assert_same_final_state, child_with_env, exit_within, record_tiny_equivalence_args, spawn_draining_stderr,
    wait_for_a_logged_step,
};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn wgolf() -> &'static str {
    env!("CARGO_BIN_EXE_wgolf")
}

/// `mpirun -np NP wgolf ARGS` with `WGOLF_MPI_RANKS_PER_NODE` set to `ranks_per_node` (or
/// unset: the nodes MPI finds), as root in CI containers, oversubscribing the 2 cores.
fn mpirun(np: usize, ranks_per_node: Option<usize>, args: &[String]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", &np.to_string()]);
    for var in ["WGOLF_PROGRESS=off", "XDG_RUNTIME_DIR"] {
        cmd.args(["-x", var]);
    }
    if let Some(n) = ranks_per_node {
        cmd.args(["-x".to_string(), format!("WGOLF_MPI_RANKS_PER_NODE={n}")]);
    }
    cmd.arg(wgolf()).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir());
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("mpirun (OpenMPI) is on PATH: CI installs openmpi-bin")
}

/// `record_tiny_equivalence_args` with `grad_accum` micro-batches per step.
fn equivalence_args(out: &std::path::Path, grad_accum: usize) -> Vec<String> {
    let mut args = record_tiny_equivalence_args(out);
    args.extend(["--set".into(), format!("train.grad_accum={grad_accum}")]);
    args
}

/// One process accumulating `grad_accum` micro-batches, into `out`.
fn train_one_process(out: &std::path::Path, grad_accum: usize) {
    let out = Command::new(wgolf())
        .args(equivalence_args(out, grad_accum))
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("WGOLF_PROGRESS", "off")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn two_mpi_ranks_train_record_tiny_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    train_one_process(&one, 2);
    let out = output(&mut mpirun(2, Some(1), &equivalence_args(&two, 2)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("x 2 processes (MPI)"), "{stderr}");
    assert!(stderr.contains("MPI: 2 nodes of 1 rank: every mean is one MPI_Allreduce over the world"), "{stderr}");
    assert!(stderr.contains("step 4: the 2 ranks agree on all"), "{stderr}");
    assert_eq!(stderr.matches("wgolf train:").count(), 1, "rank 0 alone announces: {stderr}");
    assert_same_final_state(&one, &two, 4);
}

#[test]
fn four_mpi_ranks_as_two_nodes_train_record_tiny_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (one, four) = (dir.path().join("one"), dir.path().join("four"));
    train_one_process(&one, 4);
    // With distributed Muon: each rank's share of Newton-Schulz, exchanged by MPI_Allgatherv.
    let mut args = equivalence_args(&four, 4);
    args.extend(["--set".into(), "train.distributed_muon=true".into()]);
    let out = output(&mut mpirun(4, Some(2), &args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "MPI: 2 nodes of 2 ranks: shared memory within a node, MPI_Allreduce of each rank's share between nodes"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("x 4 processes (MPI), distributed Muon in 4 shards"), "{stderr}");
    assert!(stderr.contains("step 4: the 4 ranks agree on all"), "{stderr}");
    assert_same_final_state(&one, &four, 4);
}

#[test]
fn a_rank_killed_under_mpirun_ends_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = record_tiny_equivalence_args(dir.path());
    args.extend(["--set".into(), "train.steps=100000".into()]);
    // The nodes MPI finds: both ranks on this one, so the mean waits in the node's segment.
    let (mut child, reader) = spawn_draining_stderr(&mut mpirun(2, None, &args));
    let launcher = child.id();
    wait_for_a_logged_step(dir.path(), Duration::from_secs(180));
    let ranks: Vec<u32> = (0..2)
        .map(|r| child_with_env(launcher, &format!("OMPI_COMM_WORLD_RANK={r}")).expect("a rank's process under mpirun"))
        .collect();
    // SAFETY: kills a process this test started (through mpirun).
    unsafe { libc::kill(ranks[1] as i32, libc::SIGKILL) };
    let status = exit_within(&mut child, Duration::from_secs(30), "rank 1's death");
    let stderr = reader.join().unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("MPI: 1 node of 2 ranks: every mean through shared memory"), "{stderr}");
    assert!(stderr.contains("rank 1"), "the error names the killed rank: {stderr}");
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let until = Instant::now() + Duration::from_secs(5);
    while ranks.iter().any(|&p| alive(p)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!ranks.iter().any(|&p| alive(p)), "every rank's process is gone: {stderr}");
}
