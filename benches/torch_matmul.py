#!/usr/bin/env python3
"""cuBLAS matmul throughput at the shapes `cargo bench --bench matmul` times, for a side-by-side
on the same GPU. Prints the same markdown table (kernel, layout, M, N, K, median ms, TFLOP/s,
GFLOP/s, use), timed with torch.cuda.Event around each run after warm-up, median of the runs,
for bf16 and f16 operands and outputs (f32 accumulation) and for f32 data through TF32.
Without torch or a CUDA device it prints why and exits with status 77 (skipped).

    python3 benches/torch_matmul.py [--quick] [--filter TEXT]

Environment: WGOLF_BENCH_TOKENS (98304; 1024 with --quick), WGOLF_BENCH_SQUARE (4096; 256),
WGOLF_BENCH_WARMUP (3; 1), WGOLF_BENCH_RUNS (20; 3), WGOLF_BENCH_OUT (also write the table
there). Layouts are row-major as in wgolf: nt: C = A[M,K] B[N,K]^T; nn: C += A[M,K] B[K,N];
tn: C += A[K,M]^T B[K,N] (the gradient products accumulate, as in training).
"""
import os
import statistics
import sys

try:
    import torch
except ImportError:
    print("SKIP: torch is not installed", flush=True)
    sys.exit(77)


def env_int(name, default):
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def shapes(tokens, square):
    """(use, layout, M, N, K, accumulate): the same list as benches/matmul.rs."""
    out = []
    for layer, fan_in, fan_out in [("attn q, proj", 512, 512), ("attn k, v", 512, 256),
                                   ("mlp fc", 512, 1536), ("mlp proj", 1536, 512),
                                   ("tied head", 512, 1024)]:
        out.append((f"{layer} fwd", "nt", tokens, fan_out, fan_in, False))
        out.append((f"{layer} dx", "nn", tokens, fan_in, fan_out, True))
        out.append((f"{layer} dW", "tn", fan_out, fan_in, tokens, True))
    for rows, cols in [(512, 512), (512, 1536)]:
        out.append((f"NS {rows}x{cols} X X^T", "nt", rows, rows, cols, False))
        if rows != cols:
            out.append((f"NS {rows}x{cols} A A", "nn", rows, rows, rows, False))
        name = f"NS {rows}x{cols} A A, B X" if rows == cols else f"NS {rows}x{cols} B X"
        out.append((name, "nn", rows, cols, rows, False))
    for layout in ["nn", "nt", "tn"]:
        out.append((f"square {square}", layout, square, square, square, False))
    return out


def time_one(layout, m, n, k, accumulate, dtype, warmup, runs):
    """Median ms of one product in `dtype` (operands and output), row-major storage."""
    a = torch.randn((k, m) if layout == "tn" else (m, k), device="cuda", dtype=dtype)
    b = torch.randn((n, k) if layout == "nt" else (k, n), device="cuda", dtype=dtype)
    c = torch.zeros((m, n), device="cuda", dtype=dtype)
    op_a = a.t() if layout == "tn" else a
    op_b = b.t() if layout == "nt" else b

    def run():
        if accumulate:
            c.addmm_(op_a, op_b)
        else:
            torch.mm(op_a, op_b, out=c)

    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main():
    if not torch.cuda.is_available():
        print(f"SKIP: torch {torch.__version__} sees no CUDA device", flush=True)
        sys.exit(77)
    quick = "--quick" in sys.argv
    filt = sys.argv[sys.argv.index("--filter") + 1] if "--filter" in sys.argv else None
    tokens = env_int("WGOLF_BENCH_TOKENS", 1024 if quick else 98304)
    square = env_int("WGOLF_BENCH_SQUARE", 256 if quick else 4096)
    warmup = env_int("WGOLF_BENCH_WARMUP", 1 if quick else 3)
    runs = max(1, env_int("WGOLF_BENCH_RUNS", 3 if quick else 20))
    # cuBLAS as PyTorch ships it: no reduced-precision reductions in the f16 GEMM, so f16
    # accumulates in f32 like the cooperative-matrix kernel; TF32 only for the tf32 rows.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    lines = [
        f"Device: {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})",
        f"Tokens {tokens}, square {square}, {warmup} warm-up and {runs} timed runs (median), "
        "torch.cuda.Event around each run.",
        "",
        "| kernel | layout | M | N | K | median ms | TFLOP/s | GFLOP/s | use |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    print("\n".join(lines), flush=True)
    for use, layout, m, n, k, accumulate in shapes(tokens, square):
        if filt and filt not in use:
            continue
        for name, dtype, tf32 in [("cublas bf16", torch.bfloat16, False), ("cublas f16", torch.float16, False),
                                  ("cublas tf32", torch.float32, True)]:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            ms = time_one(layout, m, n, k, accumulate, dtype, warmup, runs)
            per_s = 2.0 * m * n * k / (ms / 1e3)
            row = (f"| {name} | {layout} | {m} | {n} | {k} | {ms:.3f} | {per_s / 1e12:.2f} | "
                   f"{per_s / 1e9:.1f} | {use} |")
            print(row, flush=True)
            lines.append(row)
    path = os.environ.get("WGOLF_BENCH_OUT")
    if path:
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
