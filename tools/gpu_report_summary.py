#!/usr/bin/env python3
"""The summary of a `scripts/gpu-report.sh` folder: which parts ran, failed, timed out or were
skipped; the test executables in both kernel selections; TFLOP/s per matmul shape beside
cuBLAS; training tokens/s beside PyTorch; the top kernels of each step profile. Python
standard library only. Writes REPORT/summary.md and prints it.

    python3 tools/gpu_report_summary.py REPORT_DIR
"""
import glob
import json
import os
import re
import sys


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def table_rows(text, first_header):
    """The rows (lists of cells) of every markdown table whose first header cell is
    `first_header`. Other lines (a log's stderr) may come between the rows."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    separator = [set(line) <= set("|-: ") for line in lines]
    rows, current = [], None
    for i, line in enumerate(lines):
        if separator[i]:
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if i + 1 < len(lines) and separator[i + 1]:
            current = cells[0]
        elif current == first_header:
            rows.append(cells)
    return rows


def num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def tflops(x):
    """TFLOP/s with three significant digits or so (lavapipe's are tiny)."""
    if x is None:
        return "-"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 0.1 else f"{x:.4f}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def parts_section(report):
    rows = [line.split("\t") for line in read(os.path.join(report, "parts.tsv")).splitlines()[1:] if line]
    out = ["## Parts", "", "| part | status | seconds | limit | note |", "|---|---|---:|---:|---|"]
    for r in rows:
        r += [""] * (6 - len(r))
        out.append(f"| {r[0]} | {r[1]} | {r[3]} | {r[4]} | {r[5].replace('|', '/')} |")
    counts = {}
    for r in rows:
        counts[r[1]] = counts.get(r[1], 0) + 1
    out.insert(2, ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".")
    out.insert(3, "")
    return out


def header_section(report):
    info = read(os.path.join(report, "info.txt")) or read(os.path.join(report, "info.log"))
    env = read(os.path.join(report, "env.txt"))
    out = ["# wgolf GPU report", ""]
    chosen = re.search(r"^chosen: (.*)$", info, re.M)
    out.append(f"Adapter: {chosen.group(1) if chosen else 'none (see info.log)'}")
    for key in ("cooperative matrices", "subgroups", "f16 in shaders", "timestamps"):
        m = re.search(rf"^\s*{key}:\s*(.*)$", info, re.M)
        if m:
            out.append(f"{key[0].upper()}{key[1:]}: {m.group(1)}")
    gpu = re.search(r"^name, driver_version.*\n(.*)$", info, re.M)
    if gpu:
        out.append(f"nvidia-smi: {gpu.group(1)}")
    for line in env.splitlines():
        if line.startswith(("date:", "config:", "wgolf commit", "reference:", "total:")):
            out.append(line)
    return [line + "  " if i > 1 and line else line for i, line in enumerate(out)] + [""]


def tests_section(report):
    modes = [("tests", "default (coop where present)"), ("tests-nocoop", "WGOLF_COOP=0")]
    results, names = {}, []
    for mode, _ in modes:
        for line in read(os.path.join(report, f"{mode}.tsv")).splitlines():
            cells = line.split("\t")
            if len(cells) < 5:
                continue
            name, status, passed, failed, secs = cells[:5]
            if name not in names:
                names.append(name)
            if status == "running":
                results[(mode, name)] = "**stopped** by the part's time limit"
            elif status == "ok":
                results[(mode, name)] = f"ok, {passed} passed ({secs} s)"
            elif status == "missing":
                results[(mode, name)] = "not prepared"
            else:
                results[(mode, name)] = f"**FAILED**: {failed} failed, {passed} passed ({secs} s)"
    if not names:
        return []
    out = ["## Tests", "", "| executable | " + " | ".join(m[1] for m in modes) + " |", "|---|---|---|"]
    for name in names:
        out.append(f"| {name} | " + " | ".join(results.get((m, name), "-") for m, _ in modes) + " |")
    return out + [""]


def matmul_section(report):
    ours = table_rows(read(os.path.join(report, "matmul.md")) or read(os.path.join(report, "matmul.log")), "kernel")
    theirs = table_rows(read(os.path.join(report, "torch-matmul.md")), "kernel")
    shapes, best = [], {}
    for cells in ours + theirs:
        if len(cells) < 9:
            continue
        kernel, layout, m, n, k = cells[:5]
        key = (cells[8], layout, m, n, k)
        if key not in shapes:
            shapes.append(key)
        if kernel.startswith("f32"):
            col = "f32"
        elif kernel.startswith("coop"):
            col = "coop"
        else:
            col = kernel.replace("cublas ", "")
        value = num(cells[7])
        value = value / 1e3 if value is not None else num(cells[6])
        if value is not None and (best.get((key, col)) is None or value > best[(key, col)]):
            best[(key, col)] = value
    if not shapes:
        return []
    out = [
        "## Matmul, TFLOP/s per shape (median; wgolf coop: the best configuration timed)",
        "",
        "| use | layout | M | N | K | wgolf f32 | wgolf coop | cuBLAS bf16 | cuBLAS f16 | cuBLAS tf32 "
        "| coop / f16 | f32 / tf32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in shapes:
        v = {c: best.get((key, c)) for c in ("f32", "coop", "bf16", "f16", "tf32")}
        out.append(
            f"| {' | '.join(key)} | {tflops(v['f32'])} | {tflops(v['coop'])} | {tflops(v['bf16'])} "
            f"| {tflops(v['f16'])} | {tflops(v['tf32'])} | {ratio(v['coop'], v['f16'])} | {ratio(v['f32'], v['tf32'])} |"
        )
    return out + [""]


def step_runs(report):
    """(part, batch, tokens/step, ms/step, tokens/s, profile rows) of each step bench log."""
    runs = []
    for part in ("step", "step-big"):
        text = read(os.path.join(report, f"{part}.log"))
        rows = table_rows(text, "config")
        profile = table_rows(text, "kernel")
        for cells in rows[:1]:
            if len(cells) < 5:
                continue
            batch = re.search(r"train\.batch_seqs=(\d+)", cells[0])
            runs.append((part, int(batch.group(1)) if batch else None, num(cells[2]), num(cells[3]), num(cells[4]),
                         profile))
        if not rows:
            warm = re.findall(r"warm-up step (\d+) of (\d+): ([0-9.]+) ms", text)
            if warm:
                runs.append((part, None, None, num(warm[-1][2]), None, profile))
    return runs


def torch_runs(report):
    out = {}
    for path in sorted(glob.glob(os.path.join(report, "torch-*-b*.json"))):
        for line in read(path).splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            out[(r["mode"], r["batch_seqs"])] = r
    return out


def step_section(report):
    runs, torch = step_runs(report), torch_runs(report)
    if not runs and not torch:
        return []
    env_seq = re.search(r"^config: .*?, seq (\d+),", read(os.path.join(report, "env.txt")), re.M)
    out = [
        "## Training step, tokens/s (wgolf: the step bench; PyTorch: benches/torch_step.py, the reference's GPT "
        "and optimizers, bf16 autocast)",
        "",
        "| part | seqs x len per micro-batch | tokens/step | wgolf ms/step | wgolf tokens/s | torch eager tokens/s "
        "| torch compile tokens/s | wgolf / eager | wgolf / compile |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    seen = set()
    for part, batch, tokens, ms, tok_s, _ in runs:
        eager, compiled = torch.get(("eager", batch)), torch.get(("compile", batch))
        seen.add(batch)
        seq = (eager or compiled or {}).get("seq_len") or (env_seq.group(1) if env_seq else None)
        shape = f"{batch} x {seq}" if batch and seq else (str(batch) if batch else "?")
        te = eager["tokens_per_s"] if eager else None
        tc = compiled["tokens_per_s"] if compiled else None
        note = "" if tok_s is not None else " (no timed steps: last warm-up step)"
        out.append(
            f"| {part}{note} | {shape} | {fmt(tokens, 0)} | {fmt(ms, 1)} | {fmt(tok_s, 0)} | {fmt(te, 0)} "
            f"| {fmt(tc, 0)} | {ratio(tok_s, te)} | {ratio(tok_s, tc)} |"
        )
    for (mode, batch), r in sorted(torch.items()):
        if batch not in seen:
            seen.add(batch)
            e, c = torch.get(("eager", batch)), torch.get(("compile", batch))
            out.append(
                f"| torch only | {batch} x {r['seq_len']} | {r['step_tokens']} | - | - "
                f"| {fmt(e['tokens_per_s'] if e else None, 0)} | {fmt(c['tokens_per_s'] if c else None, 0)} | - | - |"
            )
    if torch:
        r = next(iter(torch.values()))
        out.append("")
        out.append(f"PyTorch {r['torch']} on {r['device']}, attention {r['attention']}; "
                   + "; ".join(f"{m} at {b}: loss {v['loss']:.3f}, first step {v['warmup_s'][0] if v['warmup_s'] else '-'} s"
                               + (f", peak {v['peak_mem_gib']:.1f} GiB" if v.get("peak_mem_gib") else "")
                               for (m, b), v in sorted(torch.items())) + ".")
    return out + [""]


def kernels_section(report, top=8):
    out = []
    for part, batch, _, _, _, profile in step_runs(report):
        rows = [r for r in profile if len(r) >= 4 and not r[0].startswith("total")]
        if not rows:
            continue
        total = next((r[2] for r in profile if r[0].startswith("total")), "?")
        out += [f"## Top kernels, {part} (batch {batch}; one micro-batch and optimizer pass, each dispatch "
                f"waited on: {total} ms serialized)", "", "| kernel | dispatches | ms | share |", "|---|---:|---:|---:|"]
        out += [f"| {' | '.join(r[:4])} |" for r in rows[:top]]
        out.append("")
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    report = sys.argv[1]
    lines = header_section(report) + parts_section(report) + [""] + tests_section(report)
    lines += matmul_section(report) + step_section(report) + kernels_section(report)
    notes = read(os.path.join(report, "notes.txt")).strip()
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes.splitlines()] + [""]
    text = "\n".join(lines).rstrip() + "\n"
    with open(os.path.join(report, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
