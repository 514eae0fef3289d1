"""Tabulates a Moby-Dick fine-tuning sweep (singlora sweep --config runs/moby-data/sweep.json ...):
the test-chapter perplexity of each run's final weights (summary.json "val", the file sweep.json
names as val is test.jsonl, evaluated once at the end), mean ± sample std over seeds per method
and learning rate. Usage: python3 summarize.py runs/moby-lr > table.md (stdlib only)."""
import glob, json, math, os, statistics, sys

root = sys.argv[1]
cells, params, secs = {}, {}, {}
for path in sorted(glob.glob(os.path.join(root, "*", "summary.json"))):
    s = json.load(open(path))
    key = (s["method"], s["lr"])
    cells.setdefault(key, []).append(s["val"]["perplexity"])
    params[s["method"]] = s["trainable_params"]
    secs.setdefault(s["method"], []).append(s["train_seconds"])
methods = [m for m in ["singlora", "lora", "loraplus", "dora"] if m in params]
lrs = sorted({lr for _, lr in cells})
print("| method | trainable params | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | best / worst mean | train s (mean) |")
print("|---|---|" + "---|" * len(lrs) + "---|---|")
for m in methods:
    row, means = [], []
    for lr in lrs:
        v = cells.get((m, lr), [])
        if not v:
            row.append("–")
            continue
        mu = statistics.mean(v)
        means.append(mu)
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        row.append(f"{mu:.1f} ± {sd:.1f} (n={len(v)})")
    spread = f"{min(means):.1f} / {max(means):.1f}" if means else "–"
    print(f"| {m} | {params[m]:,} | " + " | ".join(row) + f" | {spread} | {statistics.mean(secs[m]):.0f} |")
