#!/usr/bin/python3
"""PyTorch peers of singlora's benchmark workloads (see bench/workloads.go), same shapes and math.

    /usr/bin/python3 bench/torch_bench.py --workload bert-base-4l/singlora --steps 10 --warmup 3

prints one JSON line with the fields of bench.Result. Everything is fp32 on the CPU, except the
frozen base matrices of llama-1b and llama-7b with --base-dtype auto or bf16: those are held in
bf16 and their products (F.linear) run under torch.autocast("cpu", dtype=torch.bfloat16), oneDNN's
bf16 kernels with the result taken back to fp32, while the adapters, norms, attention, loss and
AdamW stay fp32 (as the Go side holds them). SingLoRA is
evaluated without building ΔW: y = x·W0ᵀ + b + s·u·((x·A[:in])·A[:out]ᵀ) with u = 1 (no ramp, as
in the Go workloads); LoRA is y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ; "naive" builds W0 + s·A[:out]·A[:in]ᵀ.
Base weights are frozen (requires_grad=False) except for method "full". One step is forward,
backward and torch.optim.AdamW (lr 1e-3, weight decay 0.01) over the trainable parameters.

Threads: by default torch.set_num_threads(1) with OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=2 (set
before torch is imported, unless already in the environment); with a bf16 base the default is one
intra-op thread per core instead, since oneDNN's bf16 products run on torch's own threads rather
than OpenBLAS's; --threads changes it.
BLAS: Debian's python3-torch links libblas.so.3; install libopenblas0-pthread (the reference BLAS
is ~15x slower). On CPUs with AVX-512 the script sets OPENBLAS_CORETYPE=SkylakeX unless set:
OpenBLAS does not recognise these virtual CPUs and otherwise runs its SSE3 "Prescott" kernels.
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "2")


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# OpenBLAS picks its kernels from the CPU model; on these virtual CPUs ("Intel(R) Xeon(R)
# Processor", no model it knows) it falls back to "Prescott" (SSE3): 13-21 GFLOP/s instead of
# ~100+ with its AVX-512 kernels. Name the core type unless the caller did.
if "OPENBLAS_CORETYPE" not in os.environ and "avx512f" in _cpu_flags():
    os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LAYER_TOKENS = 1024


def frozen_randn(shape, gen, dtype):
    """N(0, 0.02²) values of shape in dtype, made in fp32 and rounded (one fp32 copy at a time)."""
    w = torch.randn(*shape, generator=gen)
    w.mul_(0.02)
    return w if dtype == torch.float32 else w.to(dtype)


def half_linear(x, w, b=None):
    """x·wᵀ (+ b) for fp32 x: a plain fp32 product for an fp32 w; for a bf16 w, autocast's bf16
    product (oneDNN), taken back to fp32."""
    if w.dtype == torch.float32:
        return F.linear(x, w, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = F.linear(x, w, b)
    return y.float()


class Adapted(torch.nn.Module):
    """A frozen linear layer [out, in] with an optional SingLoRA / LoRA / naive adapter. The frozen
    weight is held in base_dtype (fp32 or bf16); the adapter is always fp32."""

    def __init__(self, d_in, d_out, method, r=8, alpha=8.0, bias=True, gen=None, base_dtype=torch.float32):
        super().__init__()
        self.method, self.d_in, self.d_out, self.s = method, d_in, d_out, alpha / r
        trainable_base = method == "full"
        dtype = torch.float32 if trainable_base else base_dtype
        self.weight = torch.nn.Parameter(frozen_randn((d_out, d_in), gen, dtype), requires_grad=trainable_base)
        self.bias = torch.nn.Parameter(torch.zeros(d_out), requires_grad=trainable_base) if bias else None
        if method in ("singlora", "naive"):
            d = max(d_in, d_out)
            self.A = torch.nn.Parameter((torch.rand(d, r, generator=gen) * 2 - 1) / math.sqrt(d))
        elif method == "lora":
            self.A = torch.nn.Parameter((torch.rand(r, d_in, generator=gen) * 2 - 1) / math.sqrt(d_in))
            self.B = torch.nn.Parameter(torch.randn(d_out, r, generator=gen) * 0.01)

    def forward(self, x):
        m = self.method
        if m == "naive":
            w = self.weight + self.s * (self.A[: self.d_out] @ self.A[: self.d_in].t())
            return F.linear(x, w, self.bias)
        y = half_linear(x, self.weight, self.bias)
        if m == "singlora":
            y = y + ((x @ self.A[: self.d_in]) * self.s) @ self.A[: self.d_out].t()
        elif m == "lora":
            y = y + ((x @ self.A.t()) * self.s) @ self.B.t()
        return y


def linear_for(method, targeted):
    """The method a given linear gets: adapters only on targeted layers; "full" trains all."""
    if method == "full":
        return "full"
    if method == "frozen" or not targeted:
        return "none"
    return method


class LayerNorm(torch.nn.Module):
    def __init__(self, d, eps, trainable):
        super().__init__()
        self.ln = torch.nn.LayerNorm(d, eps=eps)
        for p in self.ln.parameters():
            p.requires_grad_(trainable)

    def forward(self, x):
        return self.ln(x)


class Bert(torch.nn.Module):
    """BERT encoder (post-LN, erf GELU, learned positions, no dropout) + linear head on token 0."""

    def __init__(self, method, vocab=30522, hidden=768, heads=12, ffn=3072, layers=4, max_pos=512, r=8, alpha=8.0):
        super().__init__()
        g = torch.Generator().manual_seed(42)
        full = method == "full"
        self.heads = heads
        self.word = torch.nn.Parameter(torch.randn(vocab, hidden, generator=g) * 0.02, requires_grad=full)
        self.pos = torch.nn.Parameter(torch.randn(max_pos, hidden, generator=g) * 0.02, requires_grad=full)
        self.typ = torch.nn.Parameter(torch.randn(2, hidden, generator=g) * 0.02, requires_grad=full)
        self.ln = LayerNorm(hidden, 1e-12, full)
        mk = lambda i, o: Adapted(i, o, linear_for(method, True), r, alpha, gen=g)  # noqa: E731
        self.layers = torch.nn.ModuleList()
        for _ in range(layers):
            L = torch.nn.Module()
            L.q, L.k, L.v, L.o = mk(hidden, hidden), mk(hidden, hidden), mk(hidden, hidden), mk(hidden, hidden)
            L.ln1 = LayerNorm(hidden, 1e-12, full)
            L.up, L.down = mk(hidden, ffn), mk(ffn, hidden)
            L.ln2 = LayerNorm(hidden, 1e-12, full)
            self.layers.append(L)
        self.head = torch.nn.Linear(hidden, 2)  # trainable in every method

    def forward(self, ids, mask, labels):
        b, l = ids.shape
        x = self.word[ids] + self.pos[:l].unsqueeze(0) + self.typ[torch.zeros_like(ids)]
        x = self.ln(x)
        bias = ((1.0 - mask) * -1e30).view(b, 1, 1, l)
        h = self.heads
        for L in self.layers:
            hd = x.shape[-1] // h
            split = lambda t: t.view(b, l, h, hd).transpose(1, 2)  # noqa: E731
            q, k, v = split(L.q(x)), split(L.k(x)), split(L.v(x))
            p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1)
            o = (p @ v).transpose(1, 2).reshape(b, l, -1)
            a = L.ln1(L.o(o) + x)
            x = L.ln2(L.down(F.gelu(L.up(a))) + a)
        return F.cross_entropy(self.head(x[:, 0]), labels)


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps, trainable):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(d), requires_grad=trainable)
        self.eps = eps

    def forward(self, x):
        return self.w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


# The Llama shapes of the Go presets (bench/workloads.go LlamaTiny, bench/llamackpt.go Llama1B and
# Llama7B): batch, sequence, and the decoder's config.
LLAMAS = {
    "llama-tiny": dict(batch=4, seq=256, vocab=8192, hidden=512, heads=8, kv_heads=2, ffn=1536, layers=8,
                       tied=False, rope_theta=10000.0, eps=1e-6),
    "llama-1b": dict(batch=1, seq=256, vocab=128256, hidden=2048, heads=32, kv_heads=8, ffn=8192, layers=16,
                     tied=True, rope_theta=500000.0, eps=1e-5),
    "llama-7b": dict(batch=1, seq=128, vocab=32000, hidden=4096, heads=32, kv_heads=32, ffn=11008, layers=32,
                     tied=False, rope_theta=10000.0, eps=1e-6),
}


class Llama(torch.nn.Module):
    """Llama decoder (RMSNorm, RoPE rotate_half, GQA, SwiGLU, tied or untied head), LM loss on every
    position. The frozen matrices (embeddings, projections, LM head) are held in base_dtype."""

    def __init__(self, method, vocab=8192, hidden=512, heads=8, kv_heads=2, ffn=1536, layers=8, r=8, alpha=8.0,
                 tied=False, rope_theta=10000.0, eps=1e-6, base_dtype=torch.float32):
        super().__init__()
        g = torch.Generator().manual_seed(42)
        full = method == "full"
        dtype = torch.float32 if full else base_dtype
        self.heads, self.kv, self.hd, self.rope_theta = heads, kv_heads, hidden // heads, rope_theta
        self.embed = torch.nn.Parameter(frozen_randn((vocab, hidden), g, dtype), requires_grad=full)
        self.lm_head = None if tied else torch.nn.Parameter(frozen_randn((vocab, hidden), g, dtype), requires_grad=full)
        self.norm = RMSNorm(hidden, eps, full)
        mk = lambda i, o: Adapted(i, o, linear_for(method, True), r, alpha, bias=False, gen=g, base_dtype=base_dtype)  # noqa: E731
        kvd = kv_heads * self.hd
        self.layers = torch.nn.ModuleList()
        for _ in range(layers):
            L = torch.nn.Module()
            L.n1, L.n2 = RMSNorm(hidden, eps, full), RMSNorm(hidden, eps, full)
            L.q, L.k, L.v, L.o = mk(hidden, hidden), mk(hidden, kvd), mk(hidden, kvd), mk(hidden, hidden)
            L.gate, L.up, L.down = mk(hidden, ffn), mk(hidden, ffn), mk(ffn, hidden)
            self.layers.append(L)

    def forward(self, ids, targets):
        b, l = ids.shape
        hd = self.hd
        inv = 1.0 / (self.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        freqs = torch.arange(l, dtype=torch.float32)[:, None] * inv[None]
        emb = torch.cat([freqs, freqs], -1)
        cos, sin = emb.cos(), emb.sin()

        def rope(t):
            t1, t2 = t[..., : hd // 2], t[..., hd // 2:]
            return t * cos + torch.cat([-t2, t1], -1) * sin

        causal = torch.full((l, l), -1e30).triu(1)
        grp = self.heads // self.kv
        x = self.embed[ids].float()
        for L in self.layers:
            n = L.n1(x)
            q = rope(L.q(n).view(b, l, self.heads, hd).transpose(1, 2))
            k = rope(L.k(n).view(b, l, self.kv, hd).transpose(1, 2))
            v = L.v(n).view(b, l, self.kv, hd).transpose(1, 2)
            k = k[:, :, None].expand(b, self.kv, grp, l, hd).reshape(b, self.heads, l, hd)
            v = v[:, :, None].expand(b, self.kv, grp, l, hd).reshape(b, self.heads, l, hd)
            p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + causal, dim=-1)
            x = x + L.o((p @ v).transpose(1, 2).reshape(b, l, -1))
            n = L.n2(x)
            x = x + L.down(F.silu(L.gate(n)) * L.up(n))
        head = self.embed if self.lm_head is None else self.lm_head
        logits = half_linear(self.norm(x), head)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


class UseLite(torch.nn.Module):
    """USE-Lite's shapes (random weights): 2 pre-LN layers (256 then 512 wide, 4 heads, ReLU FFN 1536,
    a 256→512 residual projection in layer 0), masked mean pooling, tanh pooler, L2 norm, linear head."""

    def __init__(self, method, r=8, alpha=8.0):
        super().__init__()
        g = torch.Generator().manual_seed(42)
        full = method == "full"
        self.emb = torch.nn.Parameter(torch.randn(8002, 256, generator=g) * 0.02, requires_grad=full)
        mk = lambda i, o: Adapted(i, o, linear_for(method, True), r, alpha, gen=g)  # noqa: E731
        self.layers = torch.nn.ModuleList()
        for d in (256, 512):
            L = torch.nn.Module()
            L.d = d
            L.n1, L.n2 = LayerNorm(d, 1e-6, full), LayerNorm(512, 1e-6, full)
            L.q, L.k, L.v, L.o = mk(d, d), mk(d, d), mk(d, d), mk(d, 512)
            L.res = mk(d, 512) if d != 512 else None
            L.c1, L.c2 = mk(512, 1536), mk(1536, 512)
            self.layers.append(L)
        self.pooler = mk(512, 512)
        self.head = torch.nn.Linear(512, 2)

    def forward(self, ids, mask, labels):
        b, l = ids.shape
        pos = torch.arange(l, dtype=torch.float32)[:, None] * torch.exp(-torch.arange(128, dtype=torch.float32) * 0.07)[None]
        signal = torch.cat([pos.sin(), pos.cos()], -1)
        x = (2 * self.emb[ids] + signal) * mask[..., None]
        bias = ((1.0 - mask) * -1e9).view(b, 1, 1, l)
        for L in self.layers:
            dh = L.d // 4
            h = L.n1(x)
            split = lambda t: t.view(b, l, 4, dh).transpose(1, 2)  # noqa: E731
            q, k, v = split(L.q(h) * dh ** -0.5), split(L.k(h)), split(L.v(h))
            p = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)
            o = L.o((p @ v).transpose(1, 2).reshape(b, l, L.d))
            y = o + (L.res(x) if L.res is not None else x)
            x = L.c2(F.relu(L.c1(L.n2(y)))) + y
        pooled = (x * mask[..., None]).sum(1) / mask.sum(-1, keepdim=True).clamp(min=1)
        e = torch.tanh(self.pooler(pooled))
        e = e * torch.rsqrt((e * e).sum(-1, keepdim=True).clamp(min=1e-12))
        return F.cross_entropy(self.head(e * math.sqrt(512)), labels)


def build(workload, demo_seq, base_dtype=torch.float32):
    """Returns (step_closure, gflop_per_step, shape) for a workload name; base_dtype is the frozen
    matrices' dtype for llama-1b and llama-7b."""
    preset, _, variant = workload.partition("/")
    g = torch.Generator().manual_seed(1)
    if preset == "layer":
        size, _, method = variant.partition("/")
        dims, _, r = size.partition("r")
        d_in, d_out = (int(v) for v in dims.split("x"))
        r = int(r)
        n = LAYER_TOKENS
        lin = Adapted(d_in, d_out, method, r, float(r), bias=False, gen=g)
        x = torch.randn(n, d_in, generator=g, requires_grad=True)
        params = [p for p in lin.parameters() if p.requires_grad]
        flops = 4 * n * d_in * d_out + 6 * n * r * (d_in + d_out)

        def step():  # forward + gradients w.r.t. the input and the adapter, as the Go workload
            y = lin(x)
            grads = torch.autograd.grad(y.sum(), [x] + params)
            del grads

        return step, flops / 1e9, f"x[{n},{d_in}] W[{d_out},{d_in}] r={r}"
    method = variant
    if preset == "bert-base-4l":
        m = Bert(method)
        b, l, h, f, layers = 8, 128, 768, 3072, 4
        ids = torch.randint(0, 30522, (b, l), generator=g)
        mask = torch.ones(b, l)
        labels = torch.arange(b) % 2
        inputs = (ids, mask, labels)
        lin = 2 * b * l * (4 * h * h + 2 * h * f) * layers
        fwd = lin + 4 * b * l * l * h * layers
        shape = f"B={b} L={l} hidden={h} heads=12 ffn={f} layers={layers} vocab=30522 r=8"
    elif preset in LLAMAS:
        c = dict(LLAMAS[preset])
        b, l = c.pop("batch"), c.pop("seq")
        m = Llama(method, base_dtype=base_dtype if preset != "llama-tiny" else torch.float32, **c)
        h, f, layers, vocab, kv = c["hidden"], c["ffn"], c["layers"], c["vocab"], c["kv_heads"] * (c["hidden"] // c["heads"])
        ids = torch.randint(0, vocab, (b, l), generator=g)
        targets = torch.randint(0, vocab, (b, l), generator=g)
        inputs = (ids, targets)
        lin = 2 * b * l * (2 * h * h + 2 * h * kv + 3 * h * f) * layers + 2 * b * l * h * vocab
        fwd = lin + 4 * b * l * l * h * layers
        shape = f"B={b} L={l} hidden={h} heads={c['heads']}/{c['kv_heads']} ffn={f} layers={layers} vocab={vocab} r=8"
        if c["tied"]:
            shape += " tied"
    elif preset == "demo":
        if not demo_seq:
            raise SystemExit("demo workloads need --demo-seq (the padded length of the Go run)")
        m = UseLite(method)
        b, l = 32, demo_seq
        ids = torch.randint(1, 8000, (b, l), generator=g)
        mask = torch.ones(b, l)
        labels = torch.arange(b) % 2
        inputs = (ids, mask, labels)
        n = b * l
        lin = 2 * n * (3 * 256 * 256 + 2 * 256 * 512 + 2 * 512 * 1536) + 2 * n * (4 * 512 * 512 + 2 * 512 * 1536) + 2 * b * 512 * 512
        fwd = lin + 4 * b * l * l * 256 + 4 * b * l * l * 512
        shape = f"B={b} L={l} (all real tokens) USE-Lite shapes, random weights, r=8"
    else:
        raise SystemExit(f"unknown workload {workload}")
    trainable = lin if method == "full" else 0
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = m(*inputs)
        loss.backward()
        opt.step()

    return step, (2 * fwd + trainable) / 1e9, shape


def blas_library():
    """The BLAS shared library mapped into this process (Debian's python3-torch links libblas.so.3,
    which is the slow reference BLAS unless libopenblas0 provides the alternative)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return "unknown"
    for lib in sorted(libs):
        real = os.path.realpath(lib)
        if "openblas" in real.lower() or "mkl" in real.lower():
            return real
    return ", ".join(os.path.realpath(v) for v in sorted(libs)) or "none mapped"


BIG = ("llama-1b", "llama-7b")  # the presets whose frozen base --base-dtype sets


def base_dtype_for(preset, base):
    """The frozen matrices' dtype for preset under --base-dtype base, as the Go side holds them
    (auto and bf16: bf16; f32: fp32), or a reason the comparison cannot run."""
    if preset not in BIG or base == "f32":
        return torch.float32, None
    if base in ("auto", "bf16"):
        return torch.bfloat16, None
    return None, f"--base-dtype {base}: PyTorch {torch.__version__} has no float16 autocast or matmul on the CPU"


def machine_fields(threads):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = blas_library()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "runtime": f"torch {torch.__version__} python {platform.python_version()}",
        "backend": f"set_num_threads({threads}) OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} "
                   f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')} "
                   f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')} blas={blas}",
        "loadavg_1m": open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "",
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads (default 1; one per core with a bf16 base)")
    ap.add_argument("--demo-seq", type=int, default=0)
    ap.add_argument("--base-dtype", default="auto", choices=["auto", "bf16", "f16", "f32"],
                    help="llama-1b, llama-7b: the frozen matrices' dtype (auto = bf16, as the Go presets)")
    a = ap.parse_args()
    preset, _, variant = a.workload.partition("/")
    method = variant.rsplit("/", 1)[-1]
    base, why = base_dtype_for(preset, a.base_dtype)
    threads = a.threads or (os.cpu_count() if base == torch.bfloat16 else 1)
    torch.set_num_threads(threads)
    if why:
        print(json.dumps({"workload": a.workload, "method": method, "impl": "torch", "skipped": why, **machine_fields(threads)}))
        return
    big = preset in BIG
    log = (lambda msg: print(f"{a.workload} (torch): {msg}", file=sys.stderr, flush=True)) if big else (lambda msg: None)
    t0 = time.perf_counter()
    log(f"building the random model ({'bf16' if base == torch.bfloat16 else 'fp32'} base)")
    step, gflop, shape = build(a.workload, a.demo_seq, base)
    load = time.perf_counter() - t0
    log(f"built in {load:.1f} s")
    for i in range(a.warmup):
        t = time.perf_counter()
        step()
        log(f"warm-up step {i + 1}/{a.warmup}: {time.perf_counter() - t:.1f} s")
    setup = time.perf_counter() - t0
    ms = []
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(a.steps):
        t = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t) * 1e3)
        log(f"step {i + 1}/{a.steps}: {ms[-1] / 1e3:.1f} s")
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_ms = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) * 1e3 / a.steps
    med = statistics.median(ms)
    mf = machine_fields(threads)
    blas = mf["backend"].rsplit("blas=", 1)[-1]
    if "openblas" not in blas.lower() and "mkl" not in blas.lower():
        print(f"warning: PyTorch is using {blas}, not OpenBLAS: install libopenblas0-pthread "
              "(Debian's reference libblas.so.3 is ~15x slower)", file=sys.stderr)
    out = {
        "workload": a.workload, "method": "singlora" if method == "naive" else method, "impl": "torch",
        "ms_per_step_median": med, "ms_per_step_min": min(ms), "ms_per_step_max": max(ms),
        "cpu_ms_per_step": cpu_ms, "steps": a.steps, "warmup": a.warmup, "gflops": gflop / (med / 1e3), "gflop_per_step": gflop,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "setup_s": setup, "shape": shape,
    }
    if big:  # as the Go checkpoint presets; load_s here is building the random weights in memory
        c = LLAMAS[preset]
        out.update(tokens_per_s=c["batch"] * c["seq"] / (med / 1e3), base_dtype="bf16" if base == torch.bfloat16 else "f32",
                   load_s=load)
    out.update(mf)
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
