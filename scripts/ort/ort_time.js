#!/usr/bin/env node
'use strict';
// ort_time.js: latency of models in ONNX Runtime (onnxruntime-node, CPU), for README figures.
//   node ort_time.js --input NAME=DTYPE:AxBxC [--input ...] [--opt all] [--threads N] [--warmup 5] [--iters 50] A.onnx [B.onnx ...]
// Every model runs on the same seeded inputs (float32: uniform in [-1, 1); int64: uniform in [0, 100)),
// models interleaved round by round so machine noise hits them alike. Prints one JSON line per model:
// median and minimum milliseconds per run.
const ort = require('onnxruntime-node');

function parse(argv) {
  const o = { inputs: [], opt: 'all', threads: 0, warmup: 5, iters: 50, models: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = () => { if (i + 1 >= argv.length) throw new Error(`${a} needs a value`); return argv[++i]; };
    if (a === '--input') {
      const [name, spec] = v().split('=');
      const [dtype, dims] = spec.split(':');
      o.inputs.push({ name, dtype, dims: dims.split('x').map(Number) });
    } else if (a === '--opt') o.opt = v();
    else if (a === '--threads') o.threads = Number(v());
    else if (a === '--warmup') o.warmup = Number(v());
    else if (a === '--iters') o.iters = Number(v());
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
    else o.models.push(a);
  }
  if (!o.models.length || !o.inputs.length) throw new Error('usage: ort_time.js --input NAME=DTYPE:AxB ... MODEL.onnx ...');
  return o;
}

function feeds(inputs) {
  let s = 12345;
  const rand = () => { s = (s * 1103515245 + 12345) >>> 0; return s / 4294967296; };
  const f = {};
  for (const { name, dtype, dims } of inputs) {
    const n = dims.reduce((a, b) => a * b, 1);
    if (dtype === 'float32') f[name] = new ort.Tensor('float32', Float32Array.from({ length: n }, () => 2 * rand() - 1), dims);
    else if (dtype === 'int64') f[name] = new ort.Tensor('int64', BigInt64Array.from({ length: n }, () => BigInt(Math.floor(100 * rand()))), dims);
    else throw new Error(`dtype ${dtype}: only float32 and int64`);
  }
  return f;
}

async function main() {
  const o = parse(process.argv.slice(2));
  const so = { graphOptimizationLevel: o.opt, executionMode: 'sequential', interOpNumThreads: 1, logSeverityLevel: 4 };
  if (o.threads) so.intraOpNumThreads = o.threads;
  const sessions = [];
  for (const m of o.models) sessions.push(await ort.InferenceSession.create(m, so));
  const f = feeds(o.inputs);
  const times = sessions.map(() => []);
  for (let r = 0; r < o.warmup + o.iters; r++)
    for (let k = 0; k < sessions.length; k++) {
      const t0 = process.hrtime.bigint();
      await sessions[k].run(f);
      if (r >= o.warmup) times[k].push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  o.models.forEach((m, k) => {
    const t = times[k].sort((a, b) => a - b);
    console.log(JSON.stringify({ model: m, opt: o.opt, iters: o.iters, median_ms: +t[t.length >> 1].toFixed(3), min_ms: +t[0].toFixed(3) }));
  });
}

main().catch(e => { console.error(`ort_time: ${e.message}`); process.exit(1); });
