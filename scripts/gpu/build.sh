#!/usr/bin/env bash
# scripts/gpu/build.sh: builds, on the CPU machine, the three binaries scripts/gpu/check.sh runs
# on the GPU machine (which has no Go toolchain and no network), and prints their sizes (the
# device carries at most 64 MiB in all). docs/GPU.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOEXPERIMENT=simd GOTOOLCHAIN=go1.27.4 GOFLAGS=-buildvcs=false
make build-xla
CGO_ENABLED=1 go test -c -tags xla -ldflags='-s -w' -o bin/backend-xla.test ./backend
CGO_ENABLED=0 go build -ldflags='-s -w' -o bin/gpu-mktiny ./scripts/gpu/mktiny
ls -l bin/singlora-xla bin/backend-xla.test bin/gpu-mktiny
du -cb bin/singlora-xla bin/backend-xla.test bin/gpu-mktiny | awk 'END{printf "carried: %.1f MiB (limit 64)\n", $1/1048576}'
