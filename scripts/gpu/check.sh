#!/usr/bin/env bash
# scripts/gpu/check.sh: issue 16's GPU check in one go — singlora on an NVIDIA GPU through GoMLX's
# XLA backend (jax's CUDA PJRT plugin) against the pure-Go backend, and PEFT/transformers as peers.
# docs/GPU.md says how to build what it needs and the exact device command.
#
# Needs (carried, built on the CPU machine): bin/singlora-xla (make build-xla),
# bin/backend-xla.test and bin/gpu-mktiny (scripts/gpu/build.sh builds all three).
# On the GPU machine: /opt/torch/.venv with jax-cuda13-pjrt (the plugin), the nvidia-* wheels,
# torch, transformers, peft. No network is used: the tiny checkpoint and data are written here.
#
# Environment: OUT (results; default /tmp/singlora-gpu-out), BUDGET (seconds for the whole run, default 500),
# DRY=1 (no GPU: the "xla" side runs on the go backend as go:ops_sequential, the GPU-only steps
# are skipped; checks the script itself on a CPU machine), VENV, PLUGIN (the PJRT plugin .so),
# WORK (scratch for checkpoints and caches; never under OUT, whose files travel back).
#
# Every step has a hard timeout and the script goes on when one fails; each step writes
# OUT/<step>.log (stderr) and OUT/<step>.out (stdout), a line in OUT/steps.jsonl, and its JSON
# results as lines of OUT/results.jsonl; OUT/summary.md gathers them at the end.
set -u
cd "$(dirname "$0")/../.."
START=$(date +%s)
OUT=${OUT:-/tmp/singlora-gpu-out}
DRY=${DRY:-0}
BUDGET=${BUDGET:-500}
BIN=${BIN:-$PWD/bin/singlora-xla}
TESTBIN=${TESTBIN:-$PWD/bin/backend-xla.test}
MKTINY=${MKTINY:-$PWD/bin/gpu-mktiny}
VENV=${VENV:-/opt/torch/.venv}
WORK=${WORK:-$(mktemp -d /tmp/singlora-gpu.XXXXXX)}
mkdir -p "$OUT" "$WORK"
: >"$OUT/steps.jsonl"
: >"$OUT/results.jsonl"
: >"$OUT/check.log"

log() { echo "$*" | tee -a "$OUT/check.log"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t' '  ')"; }
record() { # record STEP RC SECONDS NOTE
	printf '{"step":%s,"rc":%s,"seconds":%s,"note":%s}\n' "$(json_str "$1")" "$2" "$3" "$(json_str "$4")" >>"$OUT/steps.jsonl"
}
skip() { # skip STEP WHY
	log "== $1: skipped ($2)"
	record "$1" '"skip"' 0 "$2"
}

# step NAME LIMIT CMD...: runs CMD under a hard timeout (TERM at LIMIT or at the budget's end,
# KILL 10 s later), stdout to OUT/NAME.out, stderr to OUT/NAME.log; every line of stdout that
# is a JSON object goes to results.jsonl as {"step": NAME, "result": ...}. Returns CMD's status.
step() {
	local name=$1 limit=$2
	shift 2
	local l
	l=$(left)
	if ((l < 15)); then
		skip "$name" "no time left in the ${BUDGET}s budget"
		return 1
	fi
	((limit > l)) && limit=$l
	log "== $name (timeout ${limit}s): $*"
	local t0 t1 rc note=""
	t0=$(date +%s%N)
	timeout -k 10 "$limit" "$@" >"$OUT/$name.out" 2>"$OUT/$name.log"
	rc=$?
	t1=$(date +%s%N)
	((rc == 124 || rc == 137)) && note="timed out after ${limit}s"
	tail -n 4 "$OUT/$name.log" | cut -c1-300 | sed 's/^/   | /' | tee -a "$OUT/check.log"
	grep '^{' "$OUT/$name.out" | while IFS= read -r line; do
		printf '{"step":%s,"result":%s}\n' "$(json_str "$name")" "$line" >>"$OUT/results.jsonl"
	done
	log "   rc=$rc $(((t1 - t0) / 1000000)) ms $note"
	record "$name" "$rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/1e9}')" "$note"
	return $rc
}

PYC=$(command -v python3 || echo "$VENV/bin/python")

# --- the backends --------------------------------------------------------------------------
export GOMLX_NO_AUTO_INSTALL=1 GOPJRT_CUDA_CHECKS=0
if [ "$DRY" = 1 ]; then
	XLA="go:ops_sequential" XLA_FAST="go:ops_sequential" XLA_NAMED="go:ops_sequential"
	PY=${PY:-python3}
else
	PY=${PY:-$VENV/bin/python}
	SITE=$(ls -d "$VENV"/lib/python3*/site-packages 2>/dev/null | head -n 1)
	PLUGIN=${PLUGIN:-$(ls "$SITE"/jax_plugins/xla_cuda*/xla_cuda_plugin.so 2>/dev/null | head -n 1)}
	[ -z "$PLUGIN" ] && PLUGIN=$(find "$VENV" -name 'xla_cuda_plugin.so' 2>/dev/null | head -n 1)
	NV=$SITE/nvidia
	# The plugin's own RPATH finds some of the pip nvidia libraries; jax preloads the rest from
	# nvidia/*/lib, so the same folders go on LD_LIBRARY_PATH here.
	for d in "$NV"/*/lib; do [ -d "$d" ] && LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; done
	export LD_LIBRARY_PATH
	# XLA compiles PTX with ptxas and links libdevice from its "CUDA data dir".
	CUDA_DIR=""
	for d in "$NV/cu13" "$NV/cuda_nvcc" "$NV"; do
		if [ -x "$d/bin/ptxas" ] || [ -d "$d/nvvm/libdevice" ]; then CUDA_DIR=$d && break; fi
	done
	if [ -n "$CUDA_DIR" ]; then
		export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_cuda_data_dir=$CUDA_DIR"
		export PATH="$CUDA_DIR/bin:$PATH"
	fi
	# The plugin-name form (xla:cuda) finds pjrt_c_api_cuda_plugin.so in PJRT_PLUGIN_LIBRARY_PATH.
	mkdir -p "$WORK/pjrt"
	[ -n "$PLUGIN" ] && ln -sf "$PLUGIN" "$WORK/pjrt/pjrt_c_api_cuda_plugin.so"
	[ -d "$NV" ] && ln -sfn "$NV" "$WORK/nvidia"
	export PJRT_PLUGIN_LIBRARY_PATH=$WORK/pjrt
	XLA="xla:$PLUGIN,tf32=false"   # exact comparisons: float32 products without TF32
	XLA_FAST="xla:$PLUGIN"         # speed: go-xla's default for CUDA (TF32 products)
	XLA_NAMED="xla:cuda,tf32=false" # the name form, through PJRT_PLUGIN_LIBRARY_PATH
fi

{
	echo "date: $(date -u +%FT%TZ)  DRY=$DRY  BUDGET=${BUDGET}s  WORK=$WORK"
	echo "host: $(uname -srm), $(nproc) cores, $(free -g 2>/dev/null | awk '/Mem:/{print $2 " GiB"}')"
	echo "binaries: $(ls -l "$BIN" "$TESTBIN" "$MKTINY" 2>&1 | awk '{print $5, $NF}' | tr '\n' ' ')"
	echo "backends: exact=$XLA fast=$XLA_FAST named=$XLA_NAMED"
	echo "PLUGIN=${PLUGIN:-} PJRT_PLUGIN_LIBRARY_PATH=${PJRT_PLUGIN_LIBRARY_PATH:-} XLA_FLAGS=${XLA_FLAGS:-}"
	echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
	echo "python: $PY"
} | tee "$OUT/env.txt" | tee -a "$OUT/check.log"

# --- 0. the machine ------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
	skip nvidia-smi "DRY=1"
	skip ldd-plugin "DRY=1"
else
	step nvidia-smi 20 nvidia-smi
	if [ -n "$PLUGIN" ]; then
		step ldd-plugin 20 sh -c "ldd '$PLUGIN' | grep -i 'not found' || echo 'ldd: every library found'"
	else
		skip ldd-plugin "no xla_cuda_plugin.so under $VENV"
	fi
fi

# --- 1. smoke: matmul vs float64, a While loop, tiny GPT vs the go backend ------------------
step smoke 150 env SINGLORA_XLA_SMOKE="$XLA" "$TESTBIN" -test.run '^(TestXLASmoke|TestXLAPluginErrors|TestValidate)$' -test.v
step smoke-named 90 env SINGLORA_XLA_SMOKE="$XLA_NAMED" "$TESTBIN" -test.run '^TestXLASmoke$' -test.v
grep -h '^XLA_SMOKE ' "$OUT/smoke.out" "$OUT/smoke-named.out" 2>/dev/null | sed 's/^XLA_SMOKE //' |
	while IFS= read -r line; do printf '{"step":"smoke","result":%s}\n' "$line" >>"$OUT/results.jsonl"; done

# --- 2. the tiny checkpoint and data ---------------------------------------------------------
step mktiny 30 "$MKTINY" -out "$WORK/tiny"
TINY=$WORK/tiny/tiny-llama
TRAIN=$WORK/tiny/train.jsonl
VAL=$WORK/tiny/val.jsonl

# --- 3. training steps: bench presets on both backends --------------------------------------
CACHE=$WORK/cache
XSTEPS=(--steps 10 --warmup 3) GSTEPS=(--steps 4 --warmup 1)
[ "$DRY" = 1 ] && XSTEPS=(--steps 2 --warmup 1) GSTEPS=(--steps 2 --warmup 1)
for p in llama-tiny bert-base-4l; do
	step "bench-xla-$p" 150 "$BIN" bench --backend "$XLA_FAST" --preset "$p" --json "${XSTEPS[@]}" --cache "$CACHE"
	step "bench-go-$p" 120 "$BIN" bench --backend go --preset "$p" --json "${GSTEPS[@]}" --cache "$CACHE"
done

# --- 4. train: the same run on both backends, compared --------------------------------------
RUNS=$WORK/runs
# The same run, flag for flag, on each backend (30 AdamW steps, batch 8, seed 7, evaluations at 10, 20, 30).
RUN_ARGS=(train --model "$TINY" --data "$TRAIN" --val "$VAL" --steps 30 --batch 8 --lr 5e-3 --eval-every 10 --quiet --json)
for m in lora singlora; do
	step "train-go-$m" 90 "$BIN" "${RUN_ARGS[@]}" --backend go --method "$m" --seed 7 --run "$RUNS/$m-go"
	step "train-xla-$m" 120 "$BIN" "${RUN_ARGS[@]}" --backend "$XLA" --method "$m" --seed 7 --run "$RUNS/$m-xla"
	step "compare-$m" 30 "$PYC" scripts/gpu/compare.py runs "$RUNS/$m-go" "$RUNS/$m-xla"
done
# The same seed twice on the XLA backend: is it deterministic there?
step train-xla-lora-again 120 "$BIN" "${RUN_ARGS[@]}" --backend "$XLA" --method lora --seed 7 --run "$RUNS/lora-xla-again"
step compare-xla-repeat 30 "$PYC" scripts/gpu/compare.py runs "$RUNS/lora-xla" "$RUNS/lora-xla-again" --loss-tol 0 --adapter-tol 0
# Another seed must differ: the comparison can fail (rc 1 expected).
step train-go-lora-seed8 60 "$BIN" "${RUN_ARGS[@]}" --backend go --method lora --seed 8 --run "$RUNS/lora-go-seed8"
if step compare-other-seed 30 "$PYC" scripts/gpu/compare.py runs "$RUNS/lora-go" "$RUNS/lora-go-seed8"; then
	log "   !! runs with different seeds compared equal: the comparison is broken"
fi
# The adapter trained on XLA, reloaded: greedy generation on both backends must agree.
GEN_ARGS=(generate --model "$TINY" --adapter "$RUNS/lora-xla/adapter" --prompt "the fox" --max-new-tokens 6)
step generate-go 60 "$BIN" "${GEN_ARGS[@]}" --backend go
step generate-xla 90 "$BIN" "${GEN_ARGS[@]}" --backend "$XLA"
if [ -s "$OUT/generate-go.out" ]; then
	same=false
	cmp -s "$OUT/generate-go.out" "$OUT/generate-xla.out" && same=true
	printf '{"step":"generate","result":{"go":%s,"xla":%s,"same":%s}}\n' "$(json_str "$(cat "$OUT/generate-go.out")")" \
		"$(json_str "$(cat "$OUT/generate-xla.out" 2>/dev/null)")" "$same" >>"$OUT/results.jsonl"
	log "   generate: go and xla outputs the same: $same"
fi
mkdir -p "$OUT/runs"
for r in "$RUNS"/*; do
	[ -d "$r" ] || continue
	mkdir -p "$OUT/runs/$(basename "$r")"
	cp -r "$r/metrics.jsonl" "$r/summary.json" "$r/config.json" "$r/adapter" "$OUT/runs/$(basename "$r")/" 2>/dev/null
done

# --- 5. the PEFT/transformers peer on the GPU -------------------------------------------------
if "$PY" -c 'import torch, transformers, peft, tokenizers' 2>/dev/null; then
	DEV=cuda
	[ "$DRY" = 1 ] && DEV=cpu
	step peft-peer 180 "$PY" scripts/gpu/peft_peer.py --model "$TINY" --train "$TRAIN" --val "$VAL" \
		--run "$RUNS/lora-xla" --run "$RUNS/lora-go" --device "$DEV"
else
	skip peft-peer "$PY has no torch/transformers/peft/tokenizers"
fi

# --- 6. billion-parameter shapes in bf16, as time allows ------------------------------------
if [ "$DRY" = 1 ]; then
	skip bench-xla-llama-1b "DRY=1 (a 2.5 GB checkpoint)"
	skip bench-xla-llama-7b "DRY=1 (a 13.5 GB checkpoint)"
else
	if (($(left) > 150)); then
		step bench-xla-llama-1b 240 "$BIN" bench --backend "$XLA_FAST" --preset llama-1b --base-dtype bf16 --json --cache "$CACHE"
	else
		skip bench-xla-llama-1b "under 150 s left"
	fi
	if (($(left) > 200)); then
		step bench-xla-llama-7b 300 "$BIN" bench --backend "$XLA_FAST" --preset llama-7b --base-dtype bf16 --json --cache "$CACHE"
	else
		skip bench-xla-llama-7b "under 200 s left"
	fi
fi

# --- summary ---------------------------------------------------------------------------------
"$PYC" scripts/gpu/compare.py summary "$OUT" >/dev/null 2>"$OUT/summary.log" || log "summary failed: $(cat "$OUT/summary.log")"
log "done in $(($(date +%s) - START)) s; results in $OUT (summary.md, results.jsonl, steps.jsonl)"
[ "$DRY" = 1 ] || rm -rf "$WORK"
