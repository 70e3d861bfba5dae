'use strict';
// ONNX Runtime side of the executor benchmark: same models, batches and thread count as
// bench_executor.cc, graph optimisation "all". Prints one JSON line per case.
//   node benchmarks/bench_executor_ort.js ZOO_DIR [--threads N] [--iters N]
const path = require('path');
const fs = require('fs');
const ort = require(path.join(__dirname, '..', 'scripts', 'ort', 'node_modules', 'onnxruntime-node'));

const args = process.argv.slice(2);
const zoo = args[0];
let threads = 2, iters = 30;
for (let i = 1; i < args.length; i++) {
  if (args[i] === '--threads') threads = Number(args[++i]);
  else if (args[i] === '--iters') iters = Number(args[++i]);
}
const cases = [
  ['digits_cnn.onnx', 'x', 'calib_x_256x1x20x20_f32.bin', 'float32', [1, 1, 20, 20], 'images'],
  ['digits_cnn.onnx', 'x', 'calib_x_256x1x20x20_f32.bin', 'float32', [64, 1, 20, 20], 'images'],
  ['llama-jargon.onnx', 'input_ids', 'llama-jargon.calib.i64', 'int64', [1, 128], 'tokens'],
  ['llama-jargon.onnx', 'input_ids', 'llama-jargon.calib.i64', 'int64', [8, 128], 'tokens'],
  ['gpt-fortunes.onnx', 'input_ids', 'gpt-fortunes.calib.i64', 'int64', [1, 128], 'tokens'],
  ['gpt-fortunes.onnx', 'input_ids', 'gpt-fortunes.calib.i64', 'int64', [8, 128], 'tokens'],
];
(async () => {
  for (const [model, input, data, dtype, shape, unit] of cases) {
    const sess = await ort.InferenceSession.create(path.join(zoo, model), {
      intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
    });
    const n = shape.reduce((a, b) => a * b, 1);
    const buf = fs.readFileSync(path.join(zoo, data));
    const arr = dtype === 'float32'
      ? new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + n * 4))
      : new BigInt64Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + n * 8));
    const feeds = { [input]: new ort.Tensor(dtype, arr, shape) };
    for (let w = 0; w < 3; w++) await sess.run(feeds);
    // Median of the runs, as bench_executor.
    const times = [];
    for (let i = 0; i < iters; i++) {
      const t0 = process.hrtime.bigint();
      await sess.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    times.sort((a, b) => a - b);
    const sec = times[Math.floor(times.length / 2)];
    const items = shape[0] * (unit === 'tokens' ? shape[1] : 1);
    console.log(JSON.stringify({ model, batch: `[${shape.join(', ')}]`, ms: +(sec * 1e3).toFixed(4), items_per_s: +(items / sec).toFixed(1) }));
  }
})().catch(e => { console.error(e.message || e); process.exit(2); });
