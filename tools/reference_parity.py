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
import importlib.util
import json
import math
import sys
import tomllib

import numpy as np
import torch
from safetensors.torch import load_file


def load_reference(path):
    spec = importlib.util.spec_from_file_location("reference_train_gpt", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reference_train_gpt"] = module
    spec.loader.exec_module(module)
    return module


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
    model = ref.GPT(
        vocab_size=m["vocab_size"],
        num_layers=m["num_layers"],
        model_dim=m["model_dim"],
        num_heads=m["num_heads"],
        num_kv_heads=m["num_kv_heads"],
        mlp_mult=m["mlp_mult"],
        tie_embeddings=True,
        tied_embed_init_std=m["tied_embed_init_std"],
        logit_softcap=m["logit_softcap"],
        rope_base=m["rope_base"],
        qk_gain_init=m["qk_gain_init"],
        bigram_vocab_size=m.get("bigram_buckets", 0),
        bigram_dim=m.get("bigram_dim", 128),
        xsa_last_n=m.get("xsa_last_n", 0),
    ).float()
    # The reference hard-codes its rotary modules' train_seq_len to 1024 (the NTK quirk);
    # a scaled-down wgolf config may set another base length: use the config's.
    base_len = m.get("rope_ntk_base_len", 0) or 10**9
    for block in model.blocks:
        block.attn.rotary.train_seq_len = base_len
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
