#!/usr/bin/env python3
"""Training-step throughput of the challenge's own PyTorch model, for a side-by-side with
`cargo bench --bench step` on the same GPU.

Loads the `GPT` and `Muon` classes (and the helpers the reference's training loop uses) from a
reference `train_gpt.py` (PR #317's, from openai/parameter-golf; pass its path: it is not part
of this repository), builds the model from a wgolf config, and times whole optimizer steps the
way the reference trains: weights in bf16 with the linear layers and small parameters kept in
f32, bf16 autocast, TF32 and flash SDPA on, the global gradient clip, AdamW for the embeddings,
Muon for the matrices, AdamW for the scalars, then the EMA of every state tensor. The
hyperparameters come from the config. `--mode compile` compiles the model and Newton-Schulz as
the reference does (`torch.compile(model, dynamic=False, fullgraph=True)`); `eager` does not.
Tokens come from the config's training shard (wrapping around).

    python3 benches/torch_step.py --reference train_gpt.py [--config configs/record.toml] \\
        [--batch-seqs 8] [--seq-len 2048] [--grad-accum 1] [--mode eager|compile] \\
        [--warmup 3] [--steps 10] [--max-seconds S] [--device cuda|cpu] [--json FILE]

Prints one markdown row (mode, device, tokens/step, ms/step, tokens/s) and one JSON line,
also written to --json. Each warm-up step's time goes to stderr (the first one compiles).
Without torch, CUDA (for --device cuda) or the reference file it prints why and exits with
status 77 (skipped).
"""
import argparse
import json
import os
import sys
import time

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

# The reference model from a wgolf config, shared with tools/reference_parity.py.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from reference_model import build_gpt, load_reference  # noqa: E402


def skip(why):
    print(f"SKIP: {why}", flush=True)
    sys.exit(77)


class Tokens:
    """Consecutive (x, y) batches from the first training shard of `data_dir`, wrapping."""

    def __init__(self, data_dir, vocab_size, torch, np):
        import glob

        files = sorted(glob.glob(os.path.join(data_dir, "fineweb_train_*.bin")))
        if files:
            header = np.fromfile(files[0], dtype="<i4", count=256)
            assert header[0] == 20240520 and header[1] == 1, f"{files[0]}: not a challenge shard"
            self.tokens = np.fromfile(files[0], dtype="<u2", offset=1024, count=int(header[2])).astype(np.int64)
        else:
            print(f"note: no training shard in {data_dir}; random tokens", file=sys.stderr)
            self.tokens = np.random.default_rng(0).integers(0, vocab_size, 1 << 20)
        self.pos, self.torch, self.np = 0, torch, np

    def batch(self, seqs, seq_len, device):
        n = seqs * seq_len + 1
        idx = (self.pos + self.np.arange(n)) % len(self.tokens)
        self.pos = (self.pos + n - 1) % len(self.tokens)
        chunk = self.torch.from_numpy(self.tokens[idx])
        x = chunk[:-1].reshape(seqs, seq_len)
        y = chunk[1:].reshape(seqs, seq_len)
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", help="path to the reference train_gpt.py (PR #317's)")
    ap.add_argument("--config", default="configs/record.toml", help="the wgolf config to build")
    ap.add_argument("--batch-seqs", type=int, help="sequences per micro-batch (default: the config's)")
    ap.add_argument("--seq-len", type=int, help="tokens per sequence (default: the config's)")
    ap.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=0.0, help="stop timing after this long (0: no limit)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", help="also write the JSON result here")
    args = ap.parse_args()

    if not args.reference:
        skip("no reference train_gpt.py given (--reference)")
    if not os.path.isfile(args.reference):
        skip(f"reference {args.reference} not found")
    if tomllib is None:
        skip("Python 3.11+ is needed (tomllib)")
    try:
        import torch
        import numpy as np
    except ImportError as e:
        skip(f"{e.name} is not installed")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        skip(f"torch {torch.__version__} sees no CUDA device")

    with open(args.config, "rb") as f:
        cfg = tomllib.load(f)
    m, t = cfg["model"], cfg["train"]
    seqs = args.batch_seqs or t["batch_seqs"]
    seq_len = args.seq_len or t["seq_len"]
    accum = max(1, args.grad_accum)
    ref = load_reference(args.reference)

    if device.type == "cuda":
        torch.cuda.set_device(device)
        # The reference's fast-math settings.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.enable_cudnn_sdp(False)
        torch.backends.cuda.enable_flash_sdp(True)
        torch.backends.cuda.enable_mem_efficient_sdp(False)
        torch.backends.cuda.enable_math_sdp(False)
    torch.manual_seed(t.get("seed", 1337))

    base = build_gpt(ref, m)
    # The reference's precision: bf16 weights, linear layers and small parameters in f32.
    base = base.to(device).bfloat16()
    for module in base.modules():
        if isinstance(module, ref.CastedLinear):
            module.float()
    ref.restore_low_dim_params_to_fp32(base)
    model = base
    if args.mode == "compile":
        ref.zeropower_via_newtonschulz5 = torch.compile(ref.zeropower_via_newtonschulz5)
        model = torch.compile(base, dynamic=False, fullgraph=True)

    # The record's parameter groups: Muon for the blocks' matrices and the bigram projection;
    # AdamW for the token and bigram embeddings; AdamW for every other (small) parameter.
    control = ref.CONTROL_TENSOR_NAME_PATTERNS
    blocks = list(base.blocks.named_parameters())
    matrices = [p for n, p in blocks if p.ndim == 2 and not any(c in n for c in control)]
    scalars = [p for n, p in blocks if p.ndim < 2 or any(c in n for c in control)]
    scalars += [base.skip_weights, base.smear.gate]
    embeds = [base.tok_emb.weight]
    if base.bigram is not None:
        scalars.append(base.bigram.scale)
        embeds.append(base.bigram.embed.weight)
        if base.bigram.proj is not None:
            matrices.append(base.bigram.proj.weight)
    betas, eps, wd = (t["beta1"], t["beta2"]), t["adam_eps"], t.get("weight_decay", 0.0)
    fused = device.type == "cuda"
    optimizers = [
        torch.optim.AdamW([{"params": [p]} for p in embeds], lr=t["embed_lr"], betas=betas, eps=eps,
                          weight_decay=wd, fused=fused),
        ref.Muon(matrices, lr=t["matrix_lr"], momentum=t.get("muon_momentum", 0.99),
                 backend_steps=t.get("muon_ns_steps", 5), weight_decay=wd),
        torch.optim.AdamW([{"params": scalars}], lr=t["scalar_lr"], betas=betas, eps=eps, weight_decay=wd,
                          fused=fused),
    ]
    n_params = sum(p.numel() for p in base.parameters())
    grouped = sum(p.numel() for p in matrices + scalars + embeds)
    assert grouped == n_params, f"optimizer groups hold {grouped} of {n_params} parameters"
    clip = t.get("grad_clip_norm", 0.0)
    ema_decay = t.get("ema_decay", 0.0)
    ema = {k: v.detach().float().clone() for k, v in base.state_dict().items()} if ema_decay > 0 else None
    data = Tokens(cfg["data"]["dir"], m["vocab_size"], torch, np)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for _ in range(accum):
            x, y = data.batch(seqs, seq_len, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                loss = model(x, y)
            total += loss.detach()
            (loss / accum).backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(base.parameters(), clip)
        for opt in optimizers:
            opt.step()
        if ema is not None:
            with torch.no_grad():
                for k, v in base.state_dict().items():
                    ema[k].mul_(ema_decay).add_(v.detach().float(), alpha=1.0 - ema_decay)
        return total / accum

    model.train()
    warmup_s = []
    for i in range(args.warmup):
        started = time.perf_counter()
        loss = step()
        sync()
        warmup_s.append(time.perf_counter() - started)
        print(f"{args.mode}: warm-up step {i + 1} of {args.warmup}: {1e3 * warmup_s[-1]:.1f} ms, "
              f"loss {loss.item():.4f}", file=sys.stderr, flush=True)
    sync()
    started = time.perf_counter()
    done = 0
    while done < max(1, args.steps):
        loss = step()
        done += 1
        if args.max_seconds > 0 and time.perf_counter() - started > args.max_seconds:
            break
    final_loss = loss.item()
    sync()
    secs = time.perf_counter() - started
    step_tokens = seqs * seq_len * accum
    result = {
        "event": "torch_step", "mode": args.mode, "device": torch.cuda.get_device_name(device)
        if device.type == "cuda" else str(device), "torch": torch.__version__,
        "attention": getattr(ref, "ATTN_BACKEND", "?"), "config": args.config, "params": n_params,
        "batch_seqs": seqs, "seq_len": seq_len, "grad_accum": accum, "step_tokens": step_tokens,
        "steps": done, "ms_per_step": 1e3 * secs / done, "tokens_per_s": step_tokens * done / secs,
        "warmup_s": [round(s, 3) for s in warmup_s], "loss": final_loss,
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
    print("| torch | mode | device | tokens/step | ms/step | tokens/s |")
    print("|---|---|---|---|---|---|")
    print(f"| {torch.__version__} | {args.mode} | {result['device']} | {step_tokens} | "
          f"{result['ms_per_step']:.1f} | {result['tokens_per_s']:.0f} |")
    line = json.dumps(result)
    print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
