#!/usr/bin/env bash
# The test command: installs lavapipe (and a font for the plots) if missing, then runs every
# test (CPU references, finite differences, naga validation, GPU kernels against the CPU, the
# whole model GPU vs CPU, short training runs, plots and reports, the data pipeline) and,
# when run without arguments, the examples in examples/ and the `mpi` feature's tests (2 and 4
# ranks under mpirun; installs OpenMPI and libclang if missing). Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-vulkan.sh
# lavapipe warns when this is unset; it is harmless.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo test --locked "$@"
if [ $# -eq 0 ]; then
    run_dir="$(mktemp -d)"
    trap 'rm -rf "$run_dir"' EXIT
    echo "== examples"
    cargo run --locked --example kernel_vs_cpu
    cargo run --locked --example train_tiny -- "$run_dir/example-tiny" 30
    cargo run --locked --example score_text -- "$run_dir/example-tiny" README.md
    echo "== the mpi feature (2 and 4 ranks under mpirun, one job at a time)"
    scripts/ensure-mpi.sh
    cargo test --locked --features mpi --test dist_mpi -- --test-threads=1
fi
