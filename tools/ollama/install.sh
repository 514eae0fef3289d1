#!/usr/bin/env bash
# install.sh: installs ollama, the second runtime of the GGUF parity test (cmd/singlora
# TestGGUFServedByOllama), into a cache folder outside the repository ($SINGLORA_OLLAMA, default
# ~/.cache/singlora/ollama):
#
#   bin/ollama                      ollama v0.33.0, built by `go install` from the Go module proxy
#   lib/ollama/llama-server         llama.cpp's CPU server and quantizer, which ollama v0.33.0 runs
#   lib/ollama/llama-quantize       as subprocesses (it looks for them in ../lib/ollama next to its
#                                   binary) but does not build itself
#
# llama-server and llama-quantize are built with cmake from the llama.cpp source that the npm
# package node-llama-cpp carries (llama/gitRelease.bundle; tools/llamacpp/install.sh installs it,
# so run that first). Both parts are skipped when already there: the ollama binary's module
# version is read back with `go version -m`, the llama.cpp build is stamped with the source
# commit, the build options and the CPU's flags (it is a -march=native build). Nothing else is
# downloaded: the Go modules come from the module proxy ($GOPROXY), the C++ from the npm package.
set -euo pipefail
version=v0.33.0 # keep equal to ollamaVersion in cmd/singlora/export_ollama_test.go
dir=${SINGLORA_OLLAMA:-$HOME/.cache/singlora/ollama}
nlc=${SINGLORA_NODE_LLAMA_CPP:-$HOME/.cache/singlora/node-llama-cpp}
bundle=$nlc/node_modules/node-llama-cpp/llama/gitRelease.bundle
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
	echo "tools/ollama/install.sh: only linux-x64 is set up (this is $(uname -s)-$(uname -m)); the ollama parity test will skip" >&2
	exit 0
fi
jobs=$(nproc 2>/dev/null || echo 2)

# (a) ollama itself. v0.33.0's go.mod says go 1.26.0, and it needs cgo (github.com/mattn/go-sqlite3;
# gcc); the project's go1.27.4 builds it. The project's GOEXPERIMENT and GOFLAGS are not ollama's.
have=$(go version -m "$dir/bin/ollama" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/ollama/ollama" {print $3}' || true)
if [ "$have" != "$version" ]; then
	command -v gcc >/dev/null || { echo "tools/ollama/install.sh: ollama needs cgo: install gcc (apt-get install -y gcc)" >&2; exit 1; }
	start=$SECONDS
	mkdir -p "$dir/bin"
	(cd "$dir" && env -u GOEXPERIMENT GOFLAGS=-buildvcs=false CGO_ENABLED=1 GOTOOLCHAIN="${SINGLORA_OLLAMA_GOTOOLCHAIN:-go1.27.4}" \
		GOBIN="$dir/bin" nice -n 10 go install "github.com/ollama/ollama@$version")
	echo "tools/ollama/install.sh: ollama $version installed in $dir/bin ($((SECONDS - start)) s)"
fi

# (b) llama-server and llama-quantize from node-llama-cpp's llama.cpp source.
if [ ! -f "$bundle" ]; then
	echo "tools/ollama/install.sh: $bundle is missing: run tools/llamacpp/install.sh first (node-llama-cpp carries the llama.cpp source)" >&2
	exit 1
fi
commit=$(git bundle list-heads "$bundle" | awk '$2 == "HEAD" {print $1}')
[ -n "$commit" ] || { echo "tools/ollama/install.sh: $bundle names no HEAD commit" >&2; exit 1; }
opts=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON -DGGML_OPENMP=OFF -DGGML_BACKEND_DL=OFF
	-DGGML_CCACHE=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
	-DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON)
cpu=$(grep -m1 '^flags' /proc/cpuinfo | md5sum | cut -c1-12)
stamp="llama.cpp $commit (node-llama-cpp $(node -p "require('$nlc/node_modules/node-llama-cpp/package.json').version" 2>/dev/null || echo '?')) cpu $cpu ${opts[*]}"
lib=$dir/lib/ollama
if [ -x "$lib/llama-server" ] && [ -x "$lib/llama-quantize" ] && [ "$(cat "$lib/.stamp" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi
if ! command -v cmake >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "tools/ollama/install.sh: installing cmake with apt-get (to build llama-server)" >&2
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
	else
		echo "tools/ollama/install.sh: cmake is required to build llama-server (apt-get install -y cmake)" >&2
		exit 1
	fi
fi
command -v g++ >/dev/null || { echo "tools/ollama/install.sh: g++ is required to build llama-server (apt-get install -y g++)" >&2; exit 1; }
start=$SECONDS
work=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
git -c advice.detachedHead=false clone -q "$bundle" "$work/src"
git -C "$work/src" checkout -q "$commit"
nice -n 10 cmake -S "$work/src" -B "$work/build" "${opts[@]}" >"$work/configure.log" 2>&1 || { cat "$work/configure.log" >&2; exit 1; }
nice -n 10 cmake --build "$work/build" --target llama-server llama-quantize -j "$jobs" >"$work/build.log" 2>&1 || { tail -50 "$work/build.log" >&2; exit 1; }
mkdir -p "$lib"
for b in llama-server llama-quantize; do
	install -m 755 "$work/build/bin/$b" "$lib/$b.new" && mv -f "$lib/$b.new" "$lib/$b"
done
echo "$stamp" >"$lib/.stamp"
echo "tools/ollama/install.sh: llama-server and llama-quantize (llama.cpp ${commit:0:12}) built into $lib ($((SECONDS - start)) s)"
