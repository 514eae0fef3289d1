// generate.mjs: greedy decoding in llama.cpp (through the npm package node-llama-cpp), the
// runtime peer of singlora's own generation (gguf/llamacpp tests, docs/GGUF.md).
//
//   node tools/llamacpp/generate.mjs REQUEST.json
//
// REQUEST: {"model": "m.gguf", "lora": "a.gguf" (optional), "n": 8,
//           "prompts": [[1, 2, 3], ...], "texts": ["hello world", ...] (optional)}
// prints one JSON line: {"outputs": [[ids...], ...], "tokens": [[ids...], ...]}
// where outputs[i] are the greedy continuation of prompts[i] (at most n tokens, ending early
// after an end-of-generation token, which is included) and tokens[i] is llama.cpp's
// tokenization of texts[i] (no special tokens added).
//
// node-llama-cpp is imported from $SINGLORA_NODE_LLAMA_CPP (the folder npm installed it in,
// outside the repository; .ci/run installs it), never downloaded: build "never", prebuilt CPU
// binaries only, no GPU.
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const dir = process.env.SINGLORA_NODE_LLAMA_CPP;
if (!dir) {
    console.error("set SINGLORA_NODE_LLAMA_CPP to the folder holding node_modules/node-llama-cpp");
    process.exit(2);
}
const req = JSON.parse(readFileSync(process.argv[2], "utf8"));
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(join(dir, "node_modules", "node-llama-cpp", "dist", "index.js")).href);

const llama = await getLlama({
    gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true,
    progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: 1,
});
const model = await llama.loadModel({modelPath: req.model, gpuLayers: 0});
const contextOptions = {
    contextSize: req.contextSize ?? 256, sequences: 1, threads: 1,
    // Keep the KV cache in F32 as singlora's forward does (llama.cpp's default is F16).
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
};
if (req.lora) contextOptions.lora = {adapters: [{filePath: req.lora, scale: 1}]};
const context = await model.createContext(contextOptions);
const seq = context.getSequence();
const outputs = [];
for (const prompt of req.prompts ?? []) {
    await seq.clearHistory();
    const out = [];
    if (out.length < req.n) {
        for await (const tok of seq.evaluate(prompt, {temperature: 0})) {
            out.push(tok);
            if (out.length >= req.n || model.isEogToken(tok)) break;
        }
    }
    outputs.push(out);
}
const tokens = (req.texts ?? []).map((t) => model.tokenize(t, false));
console.log(JSON.stringify({outputs, tokens}));
await context.dispose();
await model.dispose();
await llama.dispose();
