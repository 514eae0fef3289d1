#!/usr/bin/python3
"""The matrix products of a bert-base-4l step, each timed alone in PyTorch (peer of
BenchmarkBertProducts in bench/products_test.go). Same thread settings as torch_bench.py.

    /usr/bin/python3 bench/torch_products.py [--reps 20]
"""
import argparse
import os
import platform
import time

if "avx512f" in open("/proc/cpuinfo").read() and "OPENBLAS_CORETYPE" not in os.environ:
    os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"  # see PERFORMANCE.md: OpenBLAS misdetects this CPU
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(1)
    r = torch.randn
    x768, x3072 = r(1024, 768), r(1024, 3072)
    w768, w3072x768, w768x3072 = r(768, 768), r(3072, 768), r(768, 3072)
    q, p = r(96, 128, 64), r(96, 128, 128)
    cases = [
        ("xWt_1024x768x768", 2 * 1024 * 768 * 768, lambda: x768 @ w768.t()),
        ("dyW_1024x768x768", 2 * 1024 * 768 * 768, lambda: x768 @ w768),
        ("xWt_1024x768x3072", 2 * 1024 * 768 * 3072, lambda: x768 @ w3072x768.t()),
        ("dyW_1024x3072x768", 2 * 1024 * 768 * 3072, lambda: x3072 @ w3072x768),
        ("xWt_1024x3072x768", 2 * 1024 * 768 * 3072, lambda: x3072 @ w768x3072.t()),
        ("dyW_1024x768x3072", 2 * 1024 * 768 * 3072, lambda: x768 @ w768x3072),
        ("qKt_96x128x64x128", 2 * 96 * 128 * 128 * 64, lambda: torch.bmm(q, q.transpose(1, 2))),
        ("pV_96x128x128x64", 2 * 96 * 128 * 128 * 64, lambda: torch.bmm(p, q)),
    ]
    print(f"torch {torch.__version__} python {platform.python_version()} set_num_threads(1) "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']} OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    for name, flop, f in cases:
        f().sum()
        t = time.perf_counter()
        for _ in range(a.reps):
            f().sum()
        d = (time.perf_counter() - t) / a.reps
        print(f"{name:20s} {d * 1e3:8.3f} ms {flop / d / 1e9:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
