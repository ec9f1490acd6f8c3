"""Compares two wgolf run directories bit for bit, for refactors that must not change results.

    python3 tools/compare_runs.py RUN_A RUN_B

Checks metrics.jsonl event by event without the timing fields (step_ms, tokens_per_s,
elapsed_s) and the config/version of the start event, and every tensor present in both
model.safetensors and both checkpoint.safetensors byte for byte; lists tensors that only one
side has and metadata (step, stream position, format) that differs. Prints IDENTICAL or
DIFFERENT and exits 0 or 1. Standard library only.
"""
import json, struct, sys
def tensors(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); base = 8 + n
    meta = h.pop('__metadata__', {})
    return {k: (v['dtype'], v['shape'], b[base + v['data_offsets'][0]: base + v['data_offsets'][1]]) for k, v in h.items()}, meta
def metrics(path):
    out = []
    for line in open(path):
        e = json.loads(line)
        for k in ('step_ms', 'tokens_per_s', 'elapsed_s', 'config', 'version'):
            e.pop(k, None)
        out.append(e)
    return out
a, b = sys.argv[1], sys.argv[2]
ok = True
ma, mb = metrics(a + '/metrics.jsonl'), metrics(b + '/metrics.jsonl')
if ma != mb:
    ok = False
    for x, y in zip(ma, mb):
        if x != y: print('metrics differ:', x, y); break
else:
    print(f'metrics: {len(ma)} events identical')
for f in ('model.safetensors', 'checkpoint.safetensors'):
    (ta, meta_a), (tb, meta_b) = tensors(f'{a}/{f}'), tensors(f'{b}/{f}')
    common = sorted(set(ta) & set(tb))
    diff = [k for k in common if ta[k] != tb[k]]
    print(f'{f}: {len(common)} common tensors, {len(diff)} differ; only in {a}: {sorted(set(ta)-set(tb))}; only in {b}: {sorted(set(tb)-set(ta))}')
    ok &= not diff
    for k in ('wgolf_step', 'wgolf_stream', 'wgolf_format'):
        if meta_a.get(k) != meta_b.get(k): print(f'  metadata {k}: {meta_a.get(k)} vs {meta_b.get(k)}')
print('IDENTICAL' if ok else 'DIFFERENT')
sys.exit(0 if ok else 1)
