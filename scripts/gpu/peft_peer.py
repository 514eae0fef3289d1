#!/usr/bin/env python3
"""The PEFT/transformers peer of singlora's tiny-Llama LoRA runs (scripts/gpu/check.sh, step peer).

    peft_peer.py --model DIR --train train.jsonl --val val.jsonl --run RUN [--run RUN2 ...]
                 [--device cuda] [--steps N]

Reads the tiny checkpoint with transformers (LlamaForCausalLM, float32, TF32 off) and prints one
JSON object with:

- base_val_loss: the base model's validation completion loss (no adapter);
- reload: for each singlora run folder, its saved LoRA adapter (RUN/adapter, PEFT's format)
  loaded with peft.PeftModel.from_pretrained, the validation loss recomputed in PyTorch, and its
  relative difference from the loss singlora reported (RUN/summary.json val.loss): the same
  number within float32 tolerance if singlora's forward, its adapter format and PEFT agree;
- peft_train: LoRA trained by PEFT with the first run's settings (r, α, all-linear, AdamW with
  PyTorch's defaults and the run's weight decay, gradient clipping, batch) and the learning rate
  of each of its steps replayed from its metrics.jsonl; the data order is PEFT's own (seeded
  torch.randperm), so its losses are a peer curve, not a bit-for-bit copy: step losses, the final
  validation loss, ms/step after the first steps (CUDA-synchronised).

Batches are built as singlora's models/lm.CausalBatch does: prompt + completion tokens, padded
on the right to a multiple of 16 with [PAD] (id 0), the loss on the completion tokens only, a
token-weighted mean; validation in batches of 16, in file order, as CausalJob.Evaluate.
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--run", action="append", default=[], help="a singlora LoRA run folder (repeatable)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=0, help="PEFT training steps (default: the first run's)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    import transformers
    import peft
    from tokenizers import Tokenizer

    res = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
           "device": args.device}
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("--device %s: torch.cuda.is_available() is False" % args.device)
        res["gpu"] = torch.cuda.get_device_name(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(args.device)

    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))

    def enc(s):
        return tok.encode(s, add_special_tokens=False).ids

    def pairs(path):
        return [(enc(e["prompt"]), enc(e["completion"])) for e in read_jsonl(path)]

    train, val = pairs(args.train), pairs(args.val)
    pad = 0

    def batch(examples):
        longest = max(len(p) + len(c) for p, c in examples)
        length = min((longest + 15) // 16 * 16, 256)
        ids = torch.full((len(examples), length), pad, dtype=torch.long)
        tg = torch.full((len(examples), length), pad, dtype=torch.long)
        mask = torch.zeros((len(examples), length), dtype=torch.float32)
        for i, (p, c) in enumerate(examples):
            seq = p + c
            ids[i, :len(seq)] = torch.tensor(seq)
            for j in range(len(seq) - 1):
                tg[i, j] = seq[j + 1]
                if j + 1 >= len(p):
                    mask[i, j] = 1
        return ids.to(dev), tg.to(dev), mask.to(dev)

    def loss_of(model, b):
        ids, tg, mask = b
        logits = model(input_ids=ids).logits.float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tg.reshape(-1), reduction="none")
        ce = ce.reshape(tg.shape)
        return (ce * mask).sum() / mask.sum(), mask.sum()

    @torch.no_grad()
    def evaluate(model):
        model.eval()
        total, n = 0.0, 0.0
        for s in range(0, len(val), 16):
            l, k = loss_of(model, batch(val[s:s + 16]))
            total += float(l) * float(k)
            n += float(k)
        return total / n

    def base_model():
        try:
            m = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        except TypeError:  # transformers before 4.56 names it torch_dtype
            m = transformers.AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
        return m.to(dev)

    base = base_model()
    res["base_val_loss"] = evaluate(base)

    # Reload singlora's adapters into PEFT.
    fields = set(peft.LoraConfig.__dataclass_fields__)
    res["reload"] = []
    for run in args.run:
        r = {"run": run}
        try:
            tmp = tempfile.mkdtemp()
            src = os.path.join(run, "adapter")
            shutil.copy(os.path.join(src, "adapter_model.safetensors"), tmp)
            with open(os.path.join(src, "adapter_config.json")) as f:
                cfg = json.load(f)
            r["dropped_config_keys"] = sorted(k for k in cfg if k not in fields)
            with open(os.path.join(tmp, "adapter_config.json"), "w") as f:
                json.dump({k: v for k, v in cfg.items() if k in fields}, f)
            model = peft.PeftModel.from_pretrained(base_model(), tmp)
            r["peft_val_loss"] = evaluate(model)
            with open(os.path.join(run, "summary.json")) as f:
                r["singlora_val_loss"] = json.load(f)["val"]["loss"]
            r["rel"] = abs(r["peft_val_loss"] - r["singlora_val_loss"]) / abs(r["singlora_val_loss"])
            r["pass"] = r["rel"] <= 1e-4
        except Exception as e:  # keep going: one bad run must not hide the others
            r["error"] = "%s: %s" % (type(e).__name__, e)
        res["reload"].append(r)

    # PEFT training with the first run's settings.
    if args.run:
        run = args.run[0]
        with open(os.path.join(run, "config.json")) as f:
            rc = json.load(f)
        lrs = {}
        with open(os.path.join(run, "metrics.jsonl")) as f:
            for line in f:
                if line.strip():
                    m = json.loads(line)
                    if "step" in m and "lr" in m:
                        lrs[m["step"]] = m["lr"]
        steps = args.steps or max(lrs)
        torch.manual_seed(args.seed)
        lcfg = peft.LoraConfig(r=rc["r"], lora_alpha=rc["lora_alpha"], lora_dropout=rc.get("lora_dropout", 0.0),
                               target_modules="all-linear", use_rslora=rc.get("use_rslora", False))
        model = peft.get_peft_model(base_model(), lcfg)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=rc["lr"], weight_decay=rc.get("weight_decay", 0.01))
        clip = rc.get("clip_grad_norm", 0)
        bs = rc["batch_size"]
        order, pos = [], 0
        losses, times = [], []
        for step in range(1, steps + 1):
            if pos + bs > len(order):
                order, pos = torch.randperm(len(train)).tolist(), 0
            b = batch([train[i] for i in order[pos:pos + bs]])
            pos += bs
            for g in opt.param_groups:
                g["lr"] = lrs.get(step, rc["lr"])
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss, _ = loss_of(model, b)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            losses.append(float(loss))
        timed = times[3:] or times
        res["peft_train"] = {"steps": steps, "batch": bs, "losses": losses, "val_loss": evaluate(model),
                             "trainable_params": sum(p.numel() for p in params),
                             "ms_per_step_median": 1e3 * sorted(timed)[len(timed) // 2]}
    print(json.dumps(res, sort_keys=True))
    bad = [r for r in res["reload"] if not r.get("pass")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
