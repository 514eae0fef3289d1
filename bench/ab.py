#!/usr/bin/python3
"""A/B timing of two singlora binaries (e.g. before/after a change) on one workload, interleaved.

    /usr/bin/python3 bench/ab.py /tmp/sl-A /tmp/sl-B bert-base-4l/singlora --reps 4 --steps 5
    /usr/bin/python3 bench/ab.py bin/singlora bin/singlora demo/lora --workload-b demo/singlora

(the second form compares two workloads with one binary: B runs --workload-b).

Alternates A,B / B,A per repetition (each run in a fresh process, median of --steps after
--warmup), and prints per-run wall and CPU ms/step and the median B/A ratios. On a shared machine
compare only within one invocation.
"""
import argparse
import json
import statistics
import subprocess


def run(binary, workload, steps, warmup):  # noqa: D103
    out = subprocess.run([binary, "bench", "--workload", workload, "--steps", str(steps), "--warmup", str(warmup)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("workload")
    ap.add_argument("--workload-b", default="", help="B runs this workload instead (default: the same)")
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    wall = {"A": [], "B": []}
    cpu = {"A": [], "B": []}
    rss = {"A": [], "B": []}
    for rep in range(a.reps):
        order = ["A", "B"] if rep % 2 == 0 else ["B", "A"]
        for v in order:
            wl = a.workload_b if v == "B" and a.workload_b else a.workload
            r = run(a.a if v == "A" else a.b, wl, a.steps, a.warmup)
            wall[v].append(r["ms_per_step_median"])
            cpu[v].append(r.get("cpu_ms_per_step", 0))
            rss[v].append(r["peak_rss_mb"])
            print(f"rep {rep + 1} {v}: wall {r['ms_per_step_median']:.1f} ms, cpu {r.get('cpu_ms_per_step', 0):.1f} ms/step, "
                  f"rss {r['peak_rss_mb']:.0f} MB, load {r.get('loadavg_1m')}", flush=True)
    ratios = [b / x for x, b in zip(wall["A"], wall["B"])]
    cratios = [b / x for x, b in zip(cpu["A"], cpu["B"])]
    print(f"{a.workload}{' vs ' + a.workload_b if a.workload_b else ''}: A wall median {statistics.median(wall['A']):.1f} ms, B {statistics.median(wall['B']):.1f} ms; "
          f"B/A wall {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}), "
          f"B/A cpu {statistics.median(cratios):.3f}; peak RSS A {statistics.median(rss['A']):.0f} MB, B {statistics.median(rss['B']):.0f} MB")


if __name__ == "__main__":
    main()
