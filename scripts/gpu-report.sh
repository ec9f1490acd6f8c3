#!/usr/bin/env bash
# One-command GPU report: what a (data-center) GPU can do with wgolf, beside PyTorch on the
# same GPU, in one folder, within a fixed time budget (default 470 s).
#
#   scripts/gpu-report.sh prepare [--reference PATH] [--no-pack] [--no-loader]
#       Here, on the build machine (network, Rust): builds the release binary, the benches and
#       the GPU test executables once, strips their debug info and packs them into
#       .dev/bundle.tar.xz (git-ignored; about 7 MB, since they share most of their code;
#       --no-pack leaves them as files in .dev/); copies the reference train_gpt.py there
#       when given; downloads the Vulkan loader packages into .gl/ (../shared/gpu/README.md).
#
#   scripts/gpu-report.sh [run] [options]
#       On the GPU machine, from the project root holding .dev/ (and .gl/ if it has no Vulkan
#       loader): compiles nothing, reads nothing from the network, runs every part under its
#       own time limit (a failing or timed-out part does not stop the others) and writes
#       the report folder: parts.tsv, one log per part, summary.md.
#
# Parts, in order (name: what; default limit in seconds):
#   info           wgolf info: adapters, driver, features, limits, subgroups, cooperative
#                  matrices (+ nvidia-smi, vulkaninfo --summary when present)          20
#   tests          the GPU test executables, kernels as selected by default
#                  (cooperative matrices where present)                                70
#   tests-nocoop   the same with WGOLF_COOP=0 (the portable f32 kernels)               55
#   matmul         the matmul bench at the record model's shapes                       40
#   torch-matmul   benches/torch_matmul.py: cuBLAS bf16, f16, tf32 at the same shapes  35
#   step           the step bench of the config at --batch x --seq tokens per
#                  micro-batch, with the per-kernel profile                            60
#   torch-eager    benches/torch_step.py, the reference's GPT and optimizers, eager,
#                  at --batch and --big-batch                                          45
#   torch-compile  the same under torch.compile, at --big-batch                        80
#   step-big       the step bench at --big-batch x --seq, with the profile             50
# then summary.md (tools/gpu_report_summary.py): TFLOP/s per shape vs cuBLAS, tokens/s vs
# PyTorch, the top kernels, and which parts ran, failed, timed out or were skipped.
#
# Options of the run:
#   --out DIR          report folder (default: $OUT/gpu-report when OUT is set, else
#                      runs/gpu-report)
#   --dev DIR          the prepared executables (default .dev)
#   --quick            small shapes for lavapipe: configs/record-tiny.toml at its own
#                      sequence length, --batch 4, --big-batch 8, matmul --quick
#   --config PATH      the model of the step benches (default configs/record.toml)
#   --seq N            tokens per sequence (default 2048; --quick: the config's)
#   --batch N          sequences per micro-batch of the first step bench (default 8)
#   --big-batch N      of the second one (default 48; 0: no second one)
#   --accum N          micro-batches per optimizer step in the step benches (default 1)
#   --steps N          timed steps of each step bench (default 5, 3 for --big-batch)
#   --matmul-tokens N  rows of the matmul bench's layer products (default 98304 = 48 x 2048)
#   --reference PATH   the challenge's train_gpt.py (PR #317's; default .dev/train_gpt.py
#                      when present); without it the torch-eager/-compile parts are skipped
#   --python PY        the Python with PyTorch (default python3)
#   --tests LIST       test executables, comma-separated (default: every GPU one prepared)
#   --test-filter TXT  run only the tests whose name contains TXT (libtest's filter)
#   --only LIST        run only these parts (comma-separated); --skip LIST: all but these
#   --limit PART=S     that part's time limit (repeatable)
#   --budget S         the whole run's limit (default 470); a part never runs past it
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF="$ROOT/scripts/gpu-report.sh"
cd "$ROOT" || exit 2

# The test executables that use the GPU (the others are CPU-only).
GPU_TESTS="gpu_kernels gpu_snapshots coop_matmul record_ops optim model_gpu_cpu exec_errors train"
PARTS="info tests tests-nocoop matmul torch-matmul step torch-eager torch-compile step-big"

die() { echo "gpu-report: $*" >&2; exit 2; }
log() { echo "[gpu-report $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------------------------------
# prepare
# ---------------------------------------------------------------------------------------
prepare() {
    local dev=.dev reference="" pack=1 loader=1
    while [ $# -gt 0 ]; do
        case "$1" in
            --reference) reference=$2; shift ;;
            --dev) dev=$2; shift ;;
            --no-pack) pack=0 ;;
            --no-loader) loader=0 ;;
            *) die "prepare: unknown option $1" ;;
        esac
        shift
    done
    command -v cargo >/dev/null || die "prepare needs cargo (build here, run on the GPU machine)"
    command -v python3 >/dev/null || die "prepare needs python3 (to read cargo's JSON)"
    local json
    json=$(mktemp)
    log "building the release binary, the benches and the test executables..."
    # One cargo command: the binary it builds for the tests (CARGO_BIN_EXE_wgolf) is the one
    # copied (a separate `cargo build` would compile the dependencies again, with other features).
    local t targets=()
    for t in $GPU_TESTS; do targets+=(--test "$t"); done
    cargo test --release --locked --no-run "${targets[@]}" --benches --message-format=json >"$json" ||
        die "cargo test --no-run failed"
    rm -rf "$dev/wgolf" "$dev/tests" "$dev/benches" "$dev/bundle.tar.xz"
    mkdir -p "$dev/tests" "$dev/benches"
    # One line per executable: kind, name, path.
    python3 - "$json" <<'EOF' >"$dev/executables.tsv"
import json, sys
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    exe = msg.get("executable") if msg.get("reason") == "compiler-artifact" else None
    kind = (msg.get("target") or {}).get("kind", [""])[0]
    # The binary itself, not its unit tests.
    if kind == "bin" and (msg.get("profile") or {}).get("test"):
        continue
    if exe and kind in ("test", "bench", "bin"):
        print(f"{kind}\t{msg['target']['name']}\t{exe}")
EOF
    local kind name path n=0
    while IFS=$'\t' read -r kind name path; do
        if [ "$kind" = bin ]; then
            [ "$name" = wgolf ] && cp "$path" "$dev/wgolf"
            continue
        elif [ "$kind" = bench ]; then
            cp "$path" "$dev/benches/$name"
        elif in_list "$name" "$GPU_TESTS"; then
            cp "$path" "$dev/tests/$name"
        else
            continue
        fi
        n=$((n + 1))
    done <"$dev/executables.tsv"
    # Line tables make them 6x larger; backtraces keep the function names without them.
    if command -v strip >/dev/null; then strip --strip-debug "$dev/wgolf" "$dev"/tests/* "$dev"/benches/*; fi
    rm -f "$json" "$dev/executables.tsv"
    [ -x "$dev/wgolf" ] || die "cargo built no wgolf binary"
    # The test executables find configs/ and data/ through the path they were built in
    # (CARGO_MANIFEST_DIR); the run links that path to its own tree when they differ.
    pwd >"$dev/build-root"
    {
        echo "commit $(git rev-parse HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
        echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm), $(rustc --version)"
    } >"$dev/build-info"
    if [ -n "$reference" ]; then
        [ -f "$reference" ] || die "reference $reference not found"
        cp "$reference" "$dev/train_gpt.py"
    fi
    log "copied wgolf and $n test and bench executables into $dev/"
    if [ "$loader" = 1 ] && ! compgen -G ".gl/*.deb" >/dev/null; then
        # The Vulkan loader packages a bare GPU machine lacks (as ../shared/gpu/fetch-vulkan-loader.sh).
        log "downloading the Vulkan loader packages into .gl/..."
        local st
        st=$(mktemp -d)
        mkdir -p .gl "$st/partial"
        local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$st")
        if apt-get "${o[@]}" update >/dev/null &&
            (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2); then
            log "loader packages in .gl/"
        else
            log "could not download the loader packages (the GPU machine then needs its own libvulkan.so.1)"
        fi
        rm -rf "$st"
    fi
    if [ "$pack" = 1 ]; then
        log "packing $dev/bundle.tar.xz (a minute)..."
        if (cd "$dev" && tar -cf - wgolf tests benches) | xz -9 -T1 >"$dev/bundle.tar.xz.tmp"; then
            mv "$dev/bundle.tar.xz.tmp" "$dev/bundle.tar.xz" && rm -rf "$dev/wgolf" "$dev/tests" "$dev/benches"
        else
            rm -f "$dev/bundle.tar.xz.tmp"
            log "packing failed; the executables stay as files in $dev/"
        fi
    fi
    du -sh "$dev" .gl 2>/dev/null
    echo "On the GPU machine, from a copy of this tree holding $dev/ and .gl/:  scripts/gpu-report.sh"
}

# ---------------------------------------------------------------------------------------
# helpers of the run
# ---------------------------------------------------------------------------------------

# Makes libvulkan.so.1 and a Vulkan driver findable without installing anything.
setup_vulkan() {
    if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' && [ -z "${WGOLF_NO_GL:-}" ]; then
        if compgen -G ".gl/*.deb" >/dev/null; then
            local dir="$TMPDIR_RUN/gl" f
            mkdir -p "$dir"
            for f in .gl/*.deb; do dpkg -x "$f" "$dir" || note "could not unpack $f"; done
            export LD_LIBRARY_PATH="$dir/usr/lib/x86_64-linux-gnu:$dir/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            note "no libvulkan.so.1 installed: using the loader from .gl/ (LD_LIBRARY_PATH)"
        else
            note "no libvulkan.so.1 installed and no .gl/*.deb: Vulkan parts will fail (see ../shared/gpu/README.md)"
        fi
    fi
    if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] &&
        ! compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null &&
        ! compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null &&
        ! compgen -G "/usr/local/share/vulkan/icd.d/*.json" >/dev/null; then
        local icd
        for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/icd.d/nvidia_icd.json \
            /usr/share/nvidia/nvidia_icd.json; do
            if [ -f "$icd" ]; then
                export VK_DRIVER_FILES=$icd
                note "no Vulkan driver manifest in the standard places: VK_DRIVER_FILES=$icd"
                break
            fi
        done
    fi
}

# Unpacks a packed .dev/ (into the run's temporary folder, so .dev/ stays small enough to
# carry) and makes the paths baked into the test executables resolve.
setup_dev() {
    META=$DEV
    if [ -f "$DEV/bundle.tar.xz" ] && [ ! -x "$DEV/wgolf" ]; then
        mkdir -p "$TMPDIR_RUN/dev"
        if command -v xz >/dev/null; then
            xz -dc "$DEV/bundle.tar.xz" | tar -x -C "$TMPDIR_RUN/dev"
        else
            python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
                "$DEV/bundle.tar.xz" "$TMPDIR_RUN/dev"
        fi
        DEV=$TMPDIR_RUN/dev
    fi
    [ -x "$DEV/wgolf" ] || die "no $DEV/wgolf: run 'scripts/gpu-report.sh prepare' on the build machine first"
    WGOLF=$(cd "$DEV" && pwd)/wgolf
    local built
    built=$(cat "$META/build-root" 2>/dev/null || true)
    if [ -n "$built" ] && [ "$built" != "$ROOT" ]; then
        if [ -L "$built" ] && [ "$(readlink "$built")" = "$ROOT" ]; then
            :
        elif [ ! -e "$built" ] && mkdir -p "$(dirname "$built")" 2>/dev/null && ln -s "$ROOT" "$built" 2>/dev/null; then
            CREATED_LINKS+=("$built")
            note "linked $built -> $ROOT (the test executables read configs/ and data/ through the path they were built in)"
        elif [ -f "$built/configs/tiny.toml" ]; then
            note "the test executables read configs/ and data/ from $built, where they were built"
        else
            note "the test executables were built in $built, which is not this tree: tests reading configs/ or data/ may fail"
        fi
    fi
    # tests/train.rs runs the binary at <build root>/target/release/wgolf.
    if [ ! -x "$ROOT/target/release/wgolf" ]; then
        mkdir -p "$ROOT/target/release" && ln -s "$WGOLF" "$ROOT/target/release/wgolf" &&
            CREATED_LINKS+=("$ROOT/target/release/wgolf")
    fi
}

cleanup() {
    local l
    for l in "${CREATED_LINKS[@]}"; do
        rm -f "$l"
        rmdir -p "$(dirname "$l")" 2>/dev/null
    done
    rm -rf "$TMPDIR_RUN"
}

note() {
    echo "$*" >>"$REPORT/notes.txt"
    log "$*"
}

in_list() { # in_list WORD "LIST" (comma- or space-separated)
    local w
    for w in ${2//,/ }; do [ "$w" = "$1" ] && return 0; done
    return 1
}

# part NAME CMD...: runs CMD under the part's limit (capped by what is left of the budget),
# output in NAME.log; records "name status rc seconds limit note" in parts.tsv. Exit status
# 77 with a "SKIP: why" line means skipped.
part() {
    local name=$1
    shift
    if [ -n "$ONLY" ] && ! in_list "$name" "$ONLY"; then return; fi
    if in_list "$name" "$SKIP"; then
        record "$name" skipped - 0 - "--skip"
        return
    fi
    local limit=${LIMITS[$name]} now left
    now=$(date +%s)
    left=$((DEADLINE - now - 5))
    if [ "$left" -lt 5 ]; then
        record "$name" skipped - 0 "$limit" "no time left in the budget"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    log "part $name (limit ${limit}s)..."
    local start rc status why=""
    start=$(date +%s.%N)
    timeout -k 5 "$limit" "$@" >"$REPORT/$name.log" 2>&1 </dev/null
    rc=$?
    local secs
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    case $rc in
        0) status=ok ;;
        77)
            status=skipped
            why=$(grep -m1 '^SKIP: ' "$REPORT/$name.log" | sed 's/^SKIP: //')
            ;;
        124 | 137) status=timeout why="stopped at its ${limit}s limit" ;;
        *) status=failed why=$(grep -v '^\s*$' "$REPORT/$name.log" | tail -n 1 | cut -c1-160) ;;
    esac
    record "$name" "$status" "$rc" "$secs" "$limit" "$why"
    log "part $name: $status in ${secs}s${why:+ ($why)}"
}

skip_part() { # skip_part NAME WHY
    if [ -n "$ONLY" ] && ! in_list "$1" "$ONLY"; then return; fi
    record "$1" skipped - 0 - "$2"
    log "part $1: skipped ($2)"
}

record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6//$'\t'/ }" >>"$REPORT/parts.tsv"
}

# ---------------------------------------------------------------------------------------
# the parts that are more than one command (run through this script again, so that the
# part's time limit covers all of it)
# ---------------------------------------------------------------------------------------

# _info: wgolf info and what else describes the machine.
run_info() {
    "$WGOLF" info
    local rc=$?
    if command -v nvidia-smi >/dev/null; then
        echo
        echo "## nvidia-smi"
        timeout 10 nvidia-smi
        timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit \
            --format=csv
    fi
    if command -v vulkaninfo >/dev/null; then
        echo
        echo "## vulkaninfo --summary"
        timeout 10 vulkaninfo --summary
    fi
    return $rc
}

# _tests MODE: every selected test executable once; one line per executable in tests-MODE.tsv.
run_tests() {
    local mode=$1 exe name out rc secs start passed failed status any=0 bad=0
    local tsv="$REPORT/$2.tsv"
    : >"$tsv"
    for name in ${TESTS//,/ }; do
        exe="$DEV/tests/$name"
        if [ ! -x "$exe" ]; then
            printf '%s\tmissing\t-\t-\t-\n' "$name" >>"$tsv"
            echo "== $name: not prepared ($exe)"
            bad=1
            continue
        fi
        any=1
        echo "== $name (WGOLF_COOP=${mode})"
        # Replaced when it ends; left as is when the part's time limit stops it.
        printf '%s\trunning\t-\t-\t-\n' "$name" >>"$tsv"
        out="$TMPDIR_RUN/$2-$name.out"
        start=$(date +%s.%N)
        # shellcheck disable=SC2086 # the filter is one word or none
        env ${mode:+WGOLF_COOP=$mode} INSTA_WORKSPACE_ROOT="$ROOT" INSTA_UPDATE=no RUST_BACKTRACE=1 \
            "$exe" ${TEST_FILTER:+"$TEST_FILTER"} 2>&1 | tee "$out"
        rc=${PIPESTATUS[0]}
        secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        passed=$(grep -o '[0-9]* passed' "$out" | awk '{ s += $1 } END { print s + 0 }')
        failed=$(grep -o '[0-9]* failed' "$out" | awk '{ s += $1 } END { print s + 0 }')
        if [ "$rc" = 0 ]; then status=ok; else status=failed bad=1; fi
        sed -i "/^$name\trunning\t/d" "$tsv"
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$passed" "$failed" "$secs" >>"$tsv"
    done
    [ "$any" = 1 ] || { echo "no test executable in $DEV/tests"; return 1; }
    return $bad
}

# _torch MODE BATCHES: benches/torch_step.py once per batch size.
run_torch() {
    local mode=$1 batches=$2 b rc=0 r steps=10 max=8
    [ "$QUICK" = 1 ] && steps=2
    for b in $batches; do
        echo "== torch $mode, $b x $SEQ"
        "$PY" benches/torch_step.py --reference "$REFERENCE" --config "$CONFIG" --mode "$mode" \
            --batch-seqs "$b" --seq-len "$SEQ" --grad-accum "$ACCUM" --warmup "$([ "$QUICK" = 1 ] && echo 1 || echo 3)" \
            --steps "$steps" --max-seconds "$max" --device "${WGOLF_TORCH_DEVICE:-cuda}" \
            --json "$REPORT/torch-$mode-b$b.json"
        r=$?
        [ "$r" = 77 ] && return 77
        [ "$r" = 0 ] || rc=$r
    done
    return $rc
}

# _step BATCH STEPS WARMUP: the step bench with the per-kernel profile.
run_step() {
    local bench="$DEV/benches/step"
    [ -x "$bench" ] || { echo "no $bench"; return 1; }
    local sets=(--set "train.batch_seqs=$1" --set "train.grad_accum=$ACCUM")
    [ -n "$SEQ_SET" ] && sets+=(--set "train.seq_len=$SEQ")
    WGOLF_BENCH_PROFILE=1 WGOLF_BENCH_STEPS=$2 WGOLF_BENCH_WARMUP=$3 "$bench" "${sets[@]}" "$CONFIG"
}

run_matmul() {
    local bench="$DEV/benches/matmul"
    [ -x "$bench" ] || { echo "no $bench"; return 1; }
    WGOLF_BENCH_OUT="$REPORT/matmul.md" WGOLF_BENCH_TOKENS=$MATMUL_TOKENS "$bench" ${QUICK_FLAG:+"$QUICK_FLAG"}
}

run_torch_matmul() {
    WGOLF_BENCH_OUT="$REPORT/torch-matmul.md" WGOLF_BENCH_TOKENS=$MATMUL_TOKENS \
        "$PY" benches/torch_matmul.py ${QUICK_FLAG:+"$QUICK_FLAG"}
}

# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------
main_run() {
    REPORT="" DEV=.dev QUICK=0 CONFIG="" SEQ="" BATCH="" BIG="" ACCUM=1 STEPS="" MATMUL_TOKENS=""
    REFERENCE="" PY=python3 TESTS="" TEST_FILTER="" ONLY="" SKIP="" BUDGET=470
    declare -gA LIMITS=([info]=20 [tests]=70 [tests-nocoop]=55 [matmul]=40 [torch-matmul]=35 [step]=60
        [torch-eager]=45 [torch-compile]=80 [step-big]=50)
    while [ $# -gt 0 ]; do
        case "$1" in
            --out) REPORT=$2; shift ;;
            --dev) DEV=$2; shift ;;
            --quick) QUICK=1 ;;
            --config) CONFIG=$2; shift ;;
            --seq) SEQ=$2; shift ;;
            --batch) BATCH=$2; shift ;;
            --big-batch) BIG=$2; shift ;;
            --accum) ACCUM=$2; shift ;;
            --steps) STEPS=$2; shift ;;
            --matmul-tokens) MATMUL_TOKENS=$2; shift ;;
            --reference) REFERENCE=$2; shift ;;
            --python) PY=$2; shift ;;
            --tests) TESTS=$2; shift ;;
            --test-filter) TEST_FILTER=$2; shift ;;
            --only) ONLY=$2; shift ;;
            --skip) SKIP=$2; shift ;;
            --limit)
                if [[ "$2" != *=* ]] || ! in_list "${2%%=*}" "$PARTS"; then
                    die "--limit PART=SECONDS, PART one of: $PARTS"
                fi
                LIMITS[${2%%=*}]=${2#*=}
                shift
                ;;
            --budget) BUDGET=$2; shift ;;
            -h | --help) sed -n '2,/^set -uo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown option $1 (--help)" ;;
        esac
        shift
    done
    local t0
    t0=$(date +%s)
    DEADLINE=$((t0 + BUDGET))
    if [ -z "$REPORT" ]; then
        if [ -n "${OUT:-}" ]; then REPORT="$OUT/gpu-report"; else REPORT=runs/gpu-report; fi
    fi
    mkdir -p "$REPORT" || die "cannot create $REPORT"
    REPORT=$(cd "$REPORT" && pwd)
    rm -f "$REPORT"/*.log "$REPORT"/*.tsv "$REPORT"/*.md "$REPORT"/*.json "$REPORT/notes.txt"
    TMPDIR_RUN=$(mktemp -d)
    CREATED_LINKS=()
    trap cleanup EXIT
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$TMPDIR_RUN}"

    if [ "$QUICK" = 1 ]; then
        CONFIG=${CONFIG:-configs/record-tiny.toml}
        QUICK_FLAG=--quick
        BATCH=${BATCH:-4} BIG=${BIG:-8}
        MATMUL_TOKENS=${MATMUL_TOKENS:-1024}
    else
        CONFIG=${CONFIG:-configs/record.toml}
        QUICK_FLAG=""
        SEQ=${SEQ:-2048} BATCH=${BATCH:-8} BIG=${BIG:-48}
        MATMUL_TOKENS=${MATMUL_TOKENS:-98304}
    fi
    [ -f "$CONFIG" ] || die "no config $CONFIG"
    SEQ_SET=$SEQ
    # The config's own sequence length when none is given.
    [ -n "$SEQ" ] || SEQ=$(awk -F'[= #]+' '/^seq_len/ { print $2; exit }' "$CONFIG")
    if [ -z "$REFERENCE" ] && [ -f "$DEV/train_gpt.py" ]; then REFERENCE=$DEV/train_gpt.py; fi
    [ -n "$TESTS" ] || TESTS=$GPU_TESTS
    export TESTS TEST_FILTER
    local steps_small=${STEPS:-5} steps_big=${STEPS:-3} warm_small=2 warm_big=1
    if [ "$QUICK" = 1 ]; then steps_small=${STEPS:-2} steps_big=${STEPS:-2} warm_small=1; fi

    setup_dev
    setup_vulkan
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "host: $(uname -srm), $(nproc) CPUs"
        echo "args: $*"
        echo "config: $CONFIG, seq $SEQ, batches $BATCH and $BIG, accum $ACCUM, matmul tokens $MATMUL_TOKENS, quick $QUICK"
        echo "reference: ${REFERENCE:-none}"
        echo "python: $PY ($("$PY" --version 2>&1))"
        sed 's/^/wgolf /' "$META/build-info" 2>/dev/null
    } >"$REPORT/env.txt"
    printf 'part\tstatus\trc\tseconds\tlimit\tnote\n' >"$REPORT/parts.tsv"

    # Each part runs this script again (a child of `timeout`, so the limit covers all of it).
    export REPORT DEV WGOLF CONFIG SEQ SEQ_SET ACCUM MATMUL_TOKENS REFERENCE PY QUICK QUICK_FLAG TMPDIR_RUN
    part info "$SELF" _info
    cp "$REPORT/info.log" "$REPORT/info.txt" 2>/dev/null
    part tests "$SELF" _tests "" tests
    part tests-nocoop "$SELF" _tests 0 tests-nocoop
    part matmul "$SELF" _matmul
    part torch-matmul "$SELF" _torch_matmul
    part step "$SELF" _step "$BATCH" "$steps_small" "$warm_small"
    local big=$BIG
    [ "$big" = 0 ] && big=$BATCH
    if [ -n "$REFERENCE" ]; then
        part torch-eager "$SELF" _torch eager "$BATCH $([ "$BIG" = 0 ] || echo "$BIG")"
        part torch-compile "$SELF" _torch compile "$big"
    else
        skip_part torch-eager "no reference train_gpt.py (--reference, or prepare --reference)"
        skip_part torch-compile "no reference train_gpt.py (--reference, or prepare --reference)"
    fi
    if [ "$BIG" != 0 ]; then
        part step-big "$SELF" _step "$BIG" "$steps_big" "$warm_big"
    else
        skip_part step-big "--big-batch 0"
    fi
    local elapsed=$(($(date +%s) - t0))
    echo "total: ${elapsed}s of a ${BUDGET}s budget" >>"$REPORT/env.txt"
    if command -v python3 >/dev/null; then
        python3 tools/gpu_report_summary.py "$REPORT" || log "the summary failed; the logs are in $REPORT"
    else
        column -t -s $'\t' "$REPORT/parts.tsv"
    fi
    log "report in $REPORT (${elapsed}s)"
}

case "${1:-run}" in
    prepare) shift; prepare "$@" ;;
    run) shift; main_run "$@" ;;
    _info) run_info ;;
    _tests) run_tests "$2" "$3" ;;
    _torch) run_torch "$2" "$3" ;;
    _step) run_step "$2" "$3" "$4" ;;
    _matmul) run_matmul ;;
    _torch_matmul) run_torch_matmul ;;
    -*) main_run "$@" ;;
    *) die "unknown command $1 (prepare, run; --help)" ;;
esac
