"""The challenge's reference model built from a wgolf config, for the scripts that run it
beside wgolf (tools/reference_parity.py, benches/torch_step.py).

The reference `train_gpt.py` is loaded from a path the user gives (PR #317's version); none
of its code is part of wgolf.
"""

import importlib.util
import sys


def load_reference(path):
    """Imports the reference train_gpt.py at `path` as a module."""
    spec = importlib.util.spec_from_file_location("reference_train_gpt", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reference_train_gpt"] = module
    spec.loader.exec_module(module)
    return module


def build_gpt(ref, m):
    """The reference GPT of the `[model]` table `m` of a wgolf config, with the rotary
    modules' NTK base length set from the config: the reference hard-codes it to 1024, a
    scaled-down wgolf config may set another (`rope_ntk_base_len`, 0 meaning no scaling)."""
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
    )
    base_len = m.get("rope_ntk_base_len", 0) or 10**9
    for block in model.blocks:
        block.attn.rotary.train_seq_len = base_len
    return model
