#!/bin/sh
# Installs Hugging Face's tokenizers (Rust, prebuilt for the platform inside the npm package) into
# DIR (default /tmp/singlora-tokenizers) for tokenizer/bpe's peer test:
#   sh tools/tokenizers/install.sh && SINGLORA_TOKENIZERS_NODE_PATH=/tmp/singlora-tokenizers/node_modules go test ./tokenizer/bpe -run Peer
set -e
dir=${1:-/tmp/singlora-tokenizers}
mkdir -p "$dir"
cd "$dir"
npm install --silent --no-audit --no-fund tokenizers@0.23.2
echo "$dir/node_modules"
