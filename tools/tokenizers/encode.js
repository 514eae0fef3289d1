// encode.js TOKENIZER_JSON: reads a JSON array of strings on standard input and prints, for each,
// a JSON line {"ids": [...], "with_special": [...], "decoded": "..."} computed by Hugging Face's
// tokenizers library (the Rust implementation, npm package tokenizers@0.23.2: install it with
// tools/tokenizers/install.sh and point NODE_PATH at its node_modules). The peer of
// tokenizer/bpe's TestTokenizersPeer.
const { Tokenizer } = require('tokenizers');
const fs = require('fs');

async function main() {
  const tok = Tokenizer.fromFile(process.argv[2]);
  const texts = JSON.parse(fs.readFileSync(0, 'utf8'));
  for (const text of texts) {
    const plain = await tok.encode(text, null, { addSpecialTokens: false });
    const special = await tok.encode(text);
    const ids = Array.from(plain.getIds());
    const decoded = await tok.decode(ids, false);
    process.stdout.write(JSON.stringify({ ids, with_special: Array.from(special.getIds()), decoded }) + '\n');
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
