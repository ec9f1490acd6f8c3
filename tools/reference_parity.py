#!/usr/bin/env python3
"""Evaluate wgolf-exported weights in the challenge's own PyTorch model.

Loads the `GPT` class from a reference `train_gpt.py` (PR #317's, from openai/parameter-golf;
pass its path: it is not part of this repository), builds it from a wgolf config, loads a
`wgolf export` safetensors file with strict=True (so every name and shape must match the
reference's state dict), and prints the mean cross-entropy over the first N validation
sequences, computed in f32 on the CPU, as one JSON line. Compare it with
`wgolf eval --checkpoint RUN --val-seqs N --json`.

    python3 tools/reference_parity.py --reference train_gpt.py --weights model.safetensors \
        --config configs/record-tiny.toml --val-seqs 16
"""
import argparse
import json
import math
import sys
import tomllib

import numpy as np
import torch
from safetensors.torch import load_file

from reference_model import build_gpt, load_reference


def read_shard(path):
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == 20240520 and header[1] == 1, f"{path}: not a challenge shard"
    return np.fromfile(path, dtype="<u2", offset=1024, count=int(header[2]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="path to the reference train_gpt.py")
    ap.add_argument("--weights", required=True, help="safetensors written by `wgolf export`")
    ap.add_argument("--config", required=True, help="the wgolf config the weights were trained with")
    ap.add_argument("--val-seqs", type=int, default=16)
    args = ap.parse_args()

    with open(args.config, "rb") as f:
        cfg = tomllib.load(f)
    m, t = cfg["model"], cfg["train"]
    ref = load_reference(args.reference)
    model = build_gpt(ref, m).float()
    state = load_file(args.weights)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    model.eval()

    seq = t["seq_len"]
    data_dir = cfg["data"]["dir"]
    import glob
    val = np.concatenate([read_shard(p) for p in sorted(glob.glob(f"{data_dir}/fineweb_val_*.bin"))])
    n = min(args.val_seqs, (len(val) - 1) // seq)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(n):
            chunk = torch.from_numpy(val[i * seq : i * seq + seq + 1].astype(np.int64))
            x, y = chunk[:-1][None], chunk[1:][None]
            loss = model(x, y).item()
            total += loss * seq
            count += seq
    print(json.dumps({"val_loss": total / count, "seqs": n, "seq_len": seq, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
