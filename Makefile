# singlora: always build and test with GOEXPERIMENT=simd (GoMLX's CPU matmul is 15x slower without it)
# and the Go 1.27 toolchain that go.mod names (served by the module proxy).
export GOEXPERIMENT := simd
export GOTOOLCHAIN := go1.27.4
export GOFLAGS := -buildvcs=false

.PHONY: build test test-short demo fetch bench fuzz vet clean

build:
	go build -o bin/singlora ./cmd/singlora

test:
	go vet ./...
	go test -count=1 -timeout 40m ./...

test-short:
	go test -short -count=1 ./...

vet:
	go vet ./...

clean:
	rm -rf bin
