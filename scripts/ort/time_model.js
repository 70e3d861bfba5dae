#!/usr/bin/env node
'use strict';
// time_model.js: ONNX Runtime (onnxruntime-node, CPU) latency of one or more models: median of N timed runs after
// warm-up, on one fixed input. Several models are timed interleaved (run i of every model, then run i+1 ...), so
// a load change on a shared machine hits them alike and their ratios stay meaningful. Prints one JSON line per
// model on stdout; diagnostics on stderr.
// Exit codes: 0 ok, 1 usage, 2 the model or data failed to load or run.

const fs = require('fs');
const path = require('path');

const USAGE = `usage: node time_model.js MODEL.onnx [MODEL2.onnx ...] [options]

  --runs N          timed runs (default 50); the median, min, p10 and p90 are printed
  --warmup N        untimed runs first (default 10)
  --opt LEVEL       graph optimisation: disable|basic|extended|all (default all)
  --threads N       intra-op threads (default 1; 0 = ONNX Runtime's choice)
  --tokens FILE     int64 model input: the first --batch x --seq tokens of a raw .i64 file
                    (default: tokens i % 100)
  --seq N           token window length (default 128)
  --batch N         batch (default 1)
  --data FILE       float model input: a zoo file NAME_NxCxHxW_f32.bin (first --batch rows; symbolic
                    non-batch dims of the model's input take the file name's)
                    (default: zeros of the model's shape with --batch as the first dim)
  --config KEY=VAL  session config entry (repeatable)

Models with several inputs get each input as above. Output, one line per model, in the order given:
  {"model":..,"opt":..,"threads":..,"input":[..shape],"runs":N,"median_ms":..,"min_ms":..,"p10_ms":..,"p90_ms":..}`;

function fail(code, msg) { process.stderr.write(`time_model: ${msg}\n`); process.exit(code); }

function parseArgs(argv) {
  const pos = [], opt = { config: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') { opt.help = true; continue; }
    if (a.startsWith('--')) {
      let k = a.slice(2), v;
      const eq = k.indexOf('=');
      if (eq >= 0) { v = k.slice(eq + 1); k = k.slice(0, eq); } else {
        if (i + 1 >= argv.length) fail(1, `option ${a} needs a value`);
        v = argv[++i];
      }
      if (k === 'config') opt.config.push(v); else opt[k] = v;
    } else pos.push(a);
  }
  return { pos, opt };
}

function intOpt(opt, k, def, min) {
  if (opt[k] === undefined) return def;
  const v = Number(opt[k]);
  if (!Number.isInteger(v) || v < min) fail(1, `--${k} must be an integer >= ${min}, got '${opt[k]}'`);
  return v;
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))];

async function main() {
  const { pos, opt } = parseArgs(process.argv.slice(2));
  if (opt.help || pos.length < 1) { process.stdout.write(USAGE + '\n'); process.exit(opt.help ? 0 : 1); }
  const known = ['runs', 'warmup', 'opt', 'threads', 'tokens', 'seq', 'batch', 'data', 'config'];
  for (const k of Object.keys(opt)) if (!known.includes(k)) fail(1, `unknown option --${k}`);
  const runs = intOpt(opt, 'runs', 50, 1), warmup = intOpt(opt, 'warmup', 10, 0);
  const threads = intOpt(opt, 'threads', 1, 0), seq = intOpt(opt, 'seq', 128, 1), batch = intOpt(opt, 'batch', 1, 1);
  const levels = { disable: 'disabled', disabled: 'disabled', basic: 'basic', extended: 'extended', all: 'all' };
  const level = levels[opt.opt || 'all'];
  if (!level) fail(1, `--opt must be disable, basic, extended or all; got '${opt.opt}'`);
  for (const f of pos) if (!fs.existsSync(f)) fail(2, `model ${f}: no such file`);

  let ort;
  try { ort = require('onnxruntime-node'); } catch (e) {
    fail(2, `cannot load onnxruntime-node from ${path.join(__dirname, 'node_modules')}; install it with scripts/setup-deps.sh`);
  }
  ort.env.logLevel = 'fatal';
  const so = { graphOptimizationLevel: level, executionMode: 'sequential', interOpNumThreads: 1, logSeverityLevel: 4 };
  if (threads > 0) so.intraOpNumThreads = threads;
  if (opt.config.length) so.extra = Object.fromEntries(opt.config.map(s => { const i = s.indexOf('='); return [s.slice(0, i), s.slice(i + 1)]; }));

  const models = [];
  for (const file of pos) {
    let sess;
    try { sess = await ort.InferenceSession.create(file, so); } catch (e) { fail(2, `cannot load model ${file}: ${e.message}`); }
    const { feeds, shapes } = makeFeeds(ort, sess, opt, batch, seq);
    models.push({ file, sess, feeds, shapes, ms: [] });
  }
  const runOnce = async m => {
    try { return await m.sess.run(m.feeds); } catch (e) { fail(2, `model ${m.file} failed to run: ${e.message}`); }
  };
  for (let i = 0; i < warmup; i++) for (const m of models) await runOnce(m);
  for (let i = 0; i < runs; i++) {
    for (const m of models) {
      const t0 = process.hrtime.bigint();
      await runOnce(m);
      m.ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  const r = x => Number(x.toFixed(4));
  for (const m of models) {
    const ms = m.ms.sort((a, b) => a - b);
    process.stdout.write(JSON.stringify({ model: m.file, opt: level, threads, input: m.shapes, runs, warmup,
      median_ms: r(quantile(ms, 0.5)), min_ms: r(ms[0]), p10_ms: r(quantile(ms, 0.1)), p90_ms: r(quantile(ms, 0.9)) }) + '\n');
  }
}

function makeFeeds(ort, sess, opt, batch, seq) {
  const feeds = {}, shapes = {};
  for (const name of sess.inputNames) {
    const meta = (sess.inputMetadata || []).find(m => m.name === name) || {};
    const type = meta.type || 'int64';
    const mshape = meta.shape || [];
    if (type === 'int64') {
      const shape = [batch, seq], n = batch * seq, data = new BigInt64Array(n);
      if (opt.tokens) {
        const buf = fs.readFileSync(opt.tokens);
        if (buf.length < n * 8) fail(2, `--tokens ${opt.tokens}: fewer than ${n} tokens`);
        data.set(new BigInt64Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + n * 8)));
      } else for (let i = 0; i < n; i++) data[i] = BigInt(i % 100);
      feeds[name] = new ort.Tensor('int64', data, shape); shapes[name] = shape;
    } else if (type === 'float32') {
      // Symbolic dims other than the batch come from the --data file's name (NAME_NxCxHxW_f32.bin), e.g. a text
      // recognizer's line width.
      const named = opt.data && /_(\d+(?:x\d+)+)_f32\.bin$/.exec(opt.data);
      const fileDims = named ? named[1].split('x').map(Number) : [];
      const shape = mshape.map((d, i) => (i === 0 ? batch : typeof d === 'number' && d > 0 ? d
        : fileDims.length === mshape.length ? fileDims[i] : fail(1, `input ${name}: symbolic dim ${i} (name the --data file NAME_NxCxHxW_f32.bin)`)));
      const n = shape.reduce((a, b) => a * b, 1), data = new Float32Array(n);
      if (opt.data) {
        const buf = fs.readFileSync(opt.data);
        if (buf.length < n * 4) fail(2, `--data ${opt.data}: fewer than ${n} floats`);
        data.set(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + n * 4)));
      }
      feeds[name] = new ort.Tensor('float32', data, shape); shapes[name] = shape;
    } else fail(2, `input ${name}: type ${type} not supported`);
  }
  return { feeds, shapes };
}

main().catch(e => fail(2, `internal error: ${e && e.stack || e}`));
