// Runs a GGUF file in llama.cpp (through node-llama-cpp's prebuilt CPU binaries) and prints
// what it did as JSON, for tests/ZeTT.Runtime.Tests/Formats/LlamaCppTests.cs.
//
//   node llama-check.mjs JOB.json   with JOB = {
//     "nodeLlamaCpp": "<dir holding node_modules/node-llama-cpp>",
//     "model": "<file.gguf>",
//     "vocabOnly": false,
//     "tokenize": ["text", ...],          // llama_tokenize(text, add_special=false, parse_special=false)
//     "generate": {"prompt": [ids], "steps": N},   // greedy (temperature 0)
//     "probabilities": {"prompt": [ids]}, // next-token distribution after the prompt
//     "kvF32": true                       // fp32 KV cache instead of llama.cpp's F16 default
//   }
// Never downloads or compiles: build "never", prebuilt binaries only, no GPU.
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";

const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const entry = path.join(job.nodeLlamaCpp, "node_modules", "node-llama-cpp", "dist", "index.js");
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(entry).href);
const llama = await getLlama({
    build: "never", gpu: false, usePrebuiltBinaries: true, skipDownload: true,
    progressLogs: false, logLevel: LlamaLogLevel.error,
});
const model = await llama.loadModel({modelPath: job.model, vocabOnly: !!job.vocabOnly, gpuLayers: 0});
const out = {};
out.bos = model.tokens.bos;
out.eos = model.tokens.eos;
if (job.tokenize) {
    out.tokenize = job.tokenize.map(t => Array.from(model.tokenize(t, false)));
}
if (job.generate || job.probabilities) {
    const context = await model.createContext({contextSize: job.contextSize ?? 512, batchSize: 512,
        threads: 1, sequences: 1,
        // fp32 keys and values when asked (llama.cpp's default cache is F16), for logit checks.
        ...(job.kvF32 ? {experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"} : {})});
    const sequence = context.getSequence();
    if (job.generate) {
        const ids = [];
        for await (const token of sequence.evaluate(job.generate.prompt, {temperature: 0})) {
            ids.push(token);
            if (ids.length >= job.generate.steps) break;
        }
        out.generate = ids;
        await sequence.clearHistory();
    }
    if (job.probabilities) {
        const input = job.probabilities.prompt.slice();
        const last = input.length - 1;
        input[last] = [input[last], {generateNext: {probabilities: true,
            options: {temperature: 1, topK: 0, topP: 1, minP: 0}}}];
        const result = await sequence.controlledEvaluate(input);
        const probs = result[last].next.probabilities;
        out.probabilities = Array.from(probs.entries());
    }
    await context.dispose();
}
await model.dispose();
console.log(JSON.stringify(out));
