//! `wgolf train` under `mpirun` (feature `mpi`; CI installs OpenMPI and runs this with
//! `cargo test --features mpi --test dist_mpi`): two MPI ranks on this machine train
//! `configs/record-tiny.toml` as one process accumulating both micro-batches does, with every
//! collective through MPI (the switch that runs the MPI path between ranks sharing a node:
//! under `mpirun` all of them are MPI's). (A build without the feature refuses an MPI launch
//! instead of training each rank alone: tests/dist_train.rs.)
#![cfg(all(target_os = "linux", feature = "mpi"))]

mod common;

use common::{assert_same_final_state, record_tiny_equivalence_args};
use std::process::{Command, Output};

fn wgolf() -> &'static str {
    env!("CARGO_BIN_EXE_wgolf")
}

/// `mpirun -np 2 wgolf ARGS` (as root in CI containers; 2 ranks on a 2-core machine).
fn mpirun(args: &[String]) -> Output {
    Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2"])
        .arg("-x")
        .arg("WGOLF_PROGRESS=off")
        .arg("-x")
        .arg("XDG_RUNTIME_DIR")
        .arg(wgolf())
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("mpirun (OpenMPI) is on PATH: CI installs openmpi-bin")
}

#[test]
fn two_mpi_ranks_train_record_tiny_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let out = Command::new(wgolf())
        .args(record_tiny_equivalence_args(&one))
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("WGOLF_PROGRESS", "off")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = mpirun(&record_tiny_equivalence_args(&two));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("x 2 processes (MPI)"), "{stderr}");
    assert!(stderr.contains("step 4: the 2 ranks agree on all"), "{stderr}");
    assert_eq!(stderr.matches("wgolf train:").count(), 1, "rank 0 alone announces: {stderr}");
    assert_same_final_state(&one, &two, 4);
}
