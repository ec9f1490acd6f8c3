#!/usr/bin/env bash
# The test command: installs lavapipe if no Vulkan driver exists, then runs every test
# (CPU references, finite differences, naga validation, GPU kernels against the CPU, the
# whole model GPU vs CPU, a short training run, the data pipeline).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-vulkan.sh
# lavapipe warns when this is unset; it is harmless.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo test --locked "$@"
