#!/usr/bin/env python3
"""Compare two singlora run folders (the same training on two backends), standard library only.

    compare.py runs RUN_A RUN_B [--loss-tol 1e-3] [--adapter-tol 1e-3]

prints one JSON object: the largest relative difference of the step losses, gradient norms and
evaluation losses in metrics.jsonl, and of the adapter tensors (adapter/adapter_model.safetensors,
max |a-b| over max |a| per tensor), with pass flags against the tolerances (float32 arithmetic
in another order: a GPU reduces in another order than the CPU, and the difference grows with the
steps). Exit status 0 when everything passes, 1 when something differs beyond tolerance, 2 when
a file is missing.

    compare.py summary OUT

reads OUT/steps.jsonl and OUT/results.jsonl (written by check.sh) and writes OUT/summary.md.
"""
import array
import json
import os
import struct
import sys


def read_metrics(run):
    steps, evals = {}, {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            m = json.loads(line)
            if "step" in m and "loss" in m:
                steps[m["step"]] = (m["loss"], m.get("grad_norm"), m.get("wall_seconds"))
            if isinstance(m.get("eval"), dict) and "loss" in m["eval"]:
                evals[m["step"]] = m["eval"]["loss"]
    return steps, evals


def bf16_to_f32(raw):
    n = len(raw) // 2
    halves = struct.unpack("<%dH" % n, raw)
    return list(struct.unpack("<%df" % n, struct.pack("<%dI" % n, *[h << 16 for h in halves])))


def read_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        raw = b[base + lo:base + hi]
        if info["dtype"] == "F32":
            a = array.array("f")
            a.frombytes(raw)
            if sys.byteorder != "little":
                a.byteswap()
            out[name] = (info["shape"], list(a))
        elif info["dtype"] == "BF16":
            out[name] = (info["shape"], bf16_to_f32(raw))
        else:
            raise SystemExit("%s: tensor %s has dtype %s (this script reads F32 and BF16)" % (path, name, info["dtype"]))
    return out


def rel(a, b):
    if a is None or b is None:
        return None
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def compare_runs(a, b, loss_tol, adapter_tol):
    res = {"a": a, "b": b, "loss_tol": loss_tol, "adapter_tol": adapter_tol}
    try:
        sa, ea = read_metrics(a)
        sb, eb = read_metrics(b)
        ta = read_safetensors(os.path.join(a, "adapter", "adapter_model.safetensors"))
        tb = read_safetensors(os.path.join(b, "adapter", "adapter_model.safetensors"))
    except OSError as e:
        res["error"] = str(e)
        return res, 2
    common = sorted(set(sa) & set(sb))
    res["steps"] = len(common)
    res["steps_only_in_one"] = sorted(set(sa) ^ set(sb))
    loss_rel = [rel(sa[s][0], sb[s][0]) for s in common]
    grad_rel = [r for r in (rel(sa[s][1], sb[s][1]) for s in common) if r is not None]
    res["loss_a"] = [sa[s][0] for s in common]
    res["loss_b"] = [sb[s][0] for s in common]
    res["max_rel_loss"] = max(loss_rel) if loss_rel else None
    res["first_step_rel_loss"] = loss_rel[0] if loss_rel else None
    res["max_rel_grad_norm"] = max(grad_rel) if grad_rel else None
    ce = sorted(set(ea) & set(eb))
    res["eval_a"] = [ea[s] for s in ce]
    res["eval_b"] = [eb[s] for s in ce]
    res["max_rel_eval_loss"] = max((rel(ea[s], eb[s]) for s in ce), default=None)
    for key, runs in (("wall_seconds_a", sa), ("wall_seconds_b", sb)):
        last = max(runs) if runs else None
        res[key] = runs[last][2] if last is not None else None
    worst, worst_name = 0.0, None
    missing = sorted(set(ta) ^ set(tb))
    for name in sorted(set(ta) & set(tb)):
        (sha, va), (shb, vb) = ta[name], tb[name]
        if sha != shb:
            missing.append(name + " (shapes %s vs %s)" % (sha, shb))
            continue
        scale = max((abs(x) for x in va), default=0.0) or 1e-12
        d = max((abs(x - y) for x, y in zip(va, vb)), default=0.0) / scale
        if d > worst:
            worst, worst_name = d, name
    res["adapter_tensors"] = len(ta)
    res["adapter_mismatched_names"] = missing
    res["max_rel_adapter"] = worst
    res["worst_adapter_tensor"] = worst_name
    ok = (not missing and res["max_rel_loss"] is not None and res["max_rel_loss"] <= loss_tol
          and worst <= adapter_tol and (res["max_rel_eval_loss"] or 0) <= loss_tol and not res["steps_only_in_one"])
    res["pass"] = ok
    return res, 0 if ok else 1


def summary(out):
    lines = ["# scripts/gpu/check.sh results", ""]
    env = os.path.join(out, "env.txt")
    if os.path.exists(env):
        lines += ["```", open(env).read().strip(), "```", ""]
    lines += ["| step | rc | seconds | note |", "|---|---|---|---|"]
    path = os.path.join(out, "steps.jsonl")
    if os.path.exists(path):
        for line in open(path):
            if line.strip():
                s = json.loads(line)
                lines.append("| %s | %s | %.1f | %s |" % (s["step"], s["rc"], s["seconds"], s.get("note", "")))
    lines.append("")
    path = os.path.join(out, "results.jsonl")
    if os.path.exists(path):
        lines += ["## Results (results.jsonl)", ""]
        for line in open(path):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                lines.append("- (not JSON) " + line[:300])
                continue
            keep = {k: v for k, v in r.items() if not isinstance(v, list) or len(v) <= 8}
            lines.append("- `" + json.dumps(keep, sort_keys=True)[:1500] + "`")
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv):
    if len(argv) >= 2 and argv[0] == "summary":
        summary(argv[1])
        return 0
    if len(argv) >= 3 and argv[0] == "runs":
        loss_tol, adapter_tol = 1e-3, 1e-3
        rest = argv[3:]
        while rest:
            if rest[0] == "--loss-tol":
                loss_tol = float(rest[1])
            elif rest[0] == "--adapter-tol":
                adapter_tol = float(rest[1])
            else:
                raise SystemExit("unknown argument %r" % rest[0])
            rest = rest[2:]
        res, code = compare_runs(argv[1], argv[2], loss_tol, adapter_tol)
        print(json.dumps(res, sort_keys=True))
        return code
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
