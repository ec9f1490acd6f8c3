#!/usr/bin/env bash
# The main job: builds wgolf (release) and trains configs/quick.toml on the bundled sample,
# about 1.5 minutes on a 2-core machine without a GPU (installs lavapipe first if no Vulkan
# driver exists). `--full` trains the larger configs/sample.toml instead (minutes on a GPU,
# an hour or more on a CPU); WGOLF_SAMPLE_CONFIG=FILE trains any config. Other arguments go
# to `wgolf train`, e.g. --set train.steps=50. The run lands in runs/<config name>/ with
# curves.png and report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${WGOLF_SAMPLE_CONFIG:-configs/quick.toml}"
args=()
for a in "$@"; do
    if [ "$a" = "--full" ]; then config="configs/sample.toml"; else args+=("$a"); fi
done
scripts/ensure-vulkan.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo run --release --locked -- train --config "$config" ${args[@]+"${args[@]}"}
