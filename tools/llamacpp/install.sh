#!/usr/bin/env bash
# install.sh: installs llama.cpp's runtime for the GGUF parity test (cmd/singlora
# TestGGUFServedByLlamaCpp): the npm package node-llama-cpp at an exact version with its prebuilt
# linux-x64 CPU binary package, into a cache folder outside the repository
# ($SINGLORA_NODE_LLAMA_CPP, default ~/.cache/singlora/node-llama-cpp). Install scripts are not
# run (node-llama-cpp's postinstall would look for or build other binaries), and the other
# platforms' and the CUDA/Vulkan binary packages are left out. Nothing is downloaded at run time.
set -euo pipefail
version=3.22.1 # keep equal to nodeLlamaCppVersion in cmd/singlora/export_gguf_test.go
dir=${SINGLORA_NODE_LLAMA_CPP:-$HOME/.cache/singlora/node-llama-cpp}
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
	echo "tools/llamacpp/install.sh: only linux-x64 is set up (this is $(uname -s)-$(uname -m)); the llama.cpp parity test will skip" >&2
	exit 0
fi
have=$(node -p "require('$dir/node_modules/node-llama-cpp/package.json').version" 2>/dev/null || true)
if [ "$have" = "$version" ] && [ -f "$dir/node_modules/@node-llama-cpp/linux-x64/package.json" ]; then
	exit 0
fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name":"singlora-llamacpp","private":true}' >"$dir/package.json"
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --prefix "$dir" --ignore-scripts --omit=optional --no-audit --no-fund \
	--save-exact "node-llama-cpp@$version" "@node-llama-cpp/linux-x64@$version"
