'use strict';
// ONNX Runtime latency of token models: each MODEL.onnx fed the first B x S tokens of TOKENS.i64
// (int64, the model's first input), graph optimisation "all", sequential, after 3 warm-up runs.
// Runs are interleaved round-robin over the models (each round runs every model once), so a
// machine's load drifts over all of them alike. Prints one JSON line per model: median ms per run.
//   node benchmarks/bench_ort_latency.js TOKENS.i64 BxS MODEL.onnx... [--threads N] [--iters N]
const path = require('path');
const fs = require('fs');
const ort = require(path.join(__dirname, '..', 'scripts', 'ort', 'node_modules', 'onnxruntime-node'));

const args = process.argv.slice(2);
let threads = 1, iters = 15;
const pos = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--threads') threads = Number(args[++i]);
  else if (args[i] === '--iters') iters = Number(args[++i]);
  else pos.push(args[i]);
}
if (pos.length < 3) {
  console.error('usage: bench_ort_latency.js TOKENS.i64 BxS MODEL.onnx... [--threads N] [--iters N]');
  process.exit(2);
}
const [tokens, bxs, ...models] = pos;
const shape = bxs.split('x').map(Number);
const n = shape[0] * shape[1];
const buf = fs.readFileSync(tokens);
if (buf.length < n * 8) {
  console.error(`${tokens}: ${buf.length / 8} tokens, ${n} needed for ${bxs}`);
  process.exit(2);
}
const ids = new BigInt64Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + n * 8));
(async () => {
  const sessions = [];
  for (const m of models) {
    const s = await ort.InferenceSession.create(m, {
      intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
    });
    const feeds = { [s.inputNames[0]]: new ort.Tensor('int64', ids, shape) };
    for (let w = 0; w < 3; w++) await s.run(feeds);
    sessions.push({ model: m, s, feeds, times: [] });
  }
  for (let i = 0; i < iters; i++)
    for (const x of sessions) {
      const t0 = process.hrtime.bigint();
      await x.s.run(x.feeds);
      x.times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  for (const x of sessions) {
    x.times.sort((a, b) => a - b);
    const median = x.times[Math.floor(x.times.length / 2)];
    console.log(JSON.stringify({ model: path.basename(x.model), shape: bxs, threads, ms: +median.toFixed(3),
                                 min_ms: +x.times[0].toFixed(3) }));
  }
})().catch((e) => { console.error(e.message || e); process.exit(1); });
