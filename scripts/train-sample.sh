#!/usr/bin/env bash
# The main job: trains configs/sample.toml on the bundled sample (installs lavapipe first if
# no Vulkan driver exists). Extra arguments go to `wgolf train`, e.g. --set train.steps=50.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-vulkan.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo run --release --locked -- train --config configs/sample.toml "$@"
