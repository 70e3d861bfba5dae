#!/usr/bin/env node
'use strict';
// ocr_eval.js: character and line accuracy of a PP-OCR text-line recognizer in ONNX Runtime.
//
//   node scripts/ocr/ocr_eval.js MODEL.onnx DATA_DIR KEYS.txt [--batch 16] [--opt basic|extended|all|disable]
//        [--threads N] [--spaces strip|keep|ignore] [--show K]
//
// DATA_DIR holds x.npy (float32 [N,3,48,W], preprocessed) and labels.txt (N lines), as written by
// scripts/ocr/make_lines.py. Output classes: 0 = CTC blank, 1..L = the L lines of KEYS.txt in order,
// L+1 = ' ' (PaddleOCR's use_space_char); the model's class count must equal L + 2. Decoding is greedy
// CTC (argmax per time step, collapse repeats, drop blanks).
//
// Prints one JSON line: {"char_accuracy": 1 - sum(edit distance)/sum(label length), "line_accuracy":
// exact-match fraction, "n": N, ...}; lengths and distances are over Unicode code points.
// --spaces: strip (default) trims leading/trailing spaces of the prediction (the recognizer often emits a
// space class at the image margins and at the start of the zero padding); keep compares as decoded;
// ignore removes every space from prediction and label (PaddleOCR's RecMetric ignore_space=True).
// --show K also prints the first K mismatching lines (label / prediction) on stderr.
// Exit codes: 0 ok, 1 usage, 2 a model or data file failed to load or run.

const fs = require('fs');
const path = require('path');
const ORT_DIR = path.join(__dirname, '..', 'ort');
const { readNpy } = require(path.join(ORT_DIR, 'npy.js'));

const USAGE = 'usage: node ocr_eval.js MODEL.onnx DATA_DIR KEYS.txt [--batch 16] [--opt basic|extended|all|disable] ' +
  '[--threads N] [--spaces strip|keep|ignore] [--show K]';

class CliError extends Error { constructor(code, msg) { super(msg); this.code = code; } }

function parseArgs(argv) {
  const pos = [], opt = { batch: '16', opt: 'basic', spaces: 'strip' };
  const known = new Set(['batch', 'opt', 'threads', 'show', 'spaces']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') { opt.help = true; continue; }
    if (a.startsWith('--')) {
      let key = a.slice(2), val;
      const eq = key.indexOf('=');
      if (eq >= 0) { val = key.slice(eq + 1); key = key.slice(0, eq); }
      else {
        if (i + 1 >= argv.length) throw new CliError(1, `option ${a} needs a value\n${USAGE}`);
        val = argv[++i];
      }
      if (!known.has(key)) throw new CliError(1, `unknown option --${key}\n${USAGE}`);
      opt[key] = val;
    } else pos.push(a);
  }
  return { pos, opt };
}

function intOpt(opt, key, min) {
  const v = Number(opt[key]);
  if (!Number.isInteger(v) || v < min) throw new CliError(1, `--${key} must be an integer >= ${min}, got '${opt[key]}'`);
  return v;
}

function readText(file, what) {
  try { return fs.readFileSync(file, 'utf8'); }
  catch (e) { throw new CliError(2, `${what} ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`); }
}

// Levenshtein distance between two arrays of code points.
function editDistance(a, b) {
  let prev = new Array(b.length + 1), cur = new Array(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}

// Greedy CTC over probs [T, C] starting at offset `base` of `data`.
function ctcGreedy(data, base, T, C, classes) {
  let out = '', last = -1;
  for (let t = 0; t < T; t++) {
    const row = base + t * C;
    let best = 0, bv = data[row];
    for (let c = 1; c < C; c++) if (data[row + c] > bv) { bv = data[row + c]; best = c; }
    if (best !== last && best !== 0) out += classes[best];
    last = best;
  }
  return out;
}

async function main() {
  const { pos, opt } = parseArgs(process.argv.slice(2));
  if (opt.help) { console.log(USAGE); return; }
  if (pos.length !== 3) throw new CliError(1, USAGE);
  const [modelPath, dataDir, keysPath] = pos;
  const batch = intOpt(opt, 'batch', 1);
  const show = opt.show === undefined ? 0 : intOpt(opt, 'show', 0);
  const levels = { basic: 'basic', extended: 'extended', all: 'all', disable: 'disabled' };
  if (!['strip', 'keep', 'ignore'].includes(opt.spaces)) throw new CliError(1, `--spaces must be strip, keep or ignore; got '${opt.spaces}'`);
  const norm = opt.spaces === 'strip' ? (p => p.replace(/^ +| +$/g, '')) : opt.spaces === 'ignore' ? (p => p.replace(/ /g, '')) : (p => p);
  if (!levels[opt.opt]) throw new CliError(1, `--opt must be one of basic, extended, all, disable; got '${opt.opt}'`);

  // dictionary: blank, the key lines, space
  let keyLines = readText(keysPath, 'keys file').split('\n');
  if (keyLines.length && keyLines[keyLines.length - 1] === '') keyLines.pop();
  keyLines = keyLines.map(s => s.replace(/\r$/, ''));
  const classes = [''].concat(keyLines, [' ']);

  let labels = readText(path.join(dataDir, 'labels.txt'), 'labels').split('\n');
  if (labels.length && labels[labels.length - 1] === '') labels.pop();
  let x;
  try { x = readNpy(path.join(dataDir, 'x.npy')); } catch (e) { throw new CliError(2, e.message); }
  if (x.dtype !== 'float32' || x.shape.length !== 4) {
    throw new CliError(2, `${dataDir}/x.npy: expected float32 [N,3,H,W], got ${x.dtype} [${x.shape}]`);
  }
  const [N, Ch, Hh, Ww] = x.shape;
  if (labels.length !== N) throw new CliError(2, `${dataDir}: ${N} images in x.npy but ${labels.length} labels`);

  let ort;
  try { ort = require(path.join(ORT_DIR, 'node_modules', 'onnxruntime-node')); }
  catch (e) { throw new CliError(2, `cannot load onnxruntime-node from ${ORT_DIR}/node_modules (run scripts/setup-deps.sh): ${e.message.split('\n')[0]}`); }
  ort.env.logLevel = 'fatal';
  const so = { graphOptimizationLevel: levels[opt.opt], executionMode: 'sequential', interOpNumThreads: 1, logSeverityLevel: 4 };
  if (opt.threads !== undefined) so.intraOpNumThreads = intOpt(opt, 'threads', 0);
  if (!fs.existsSync(modelPath)) throw new CliError(2, `model ${modelPath}: no such file`);
  let sess;
  try { sess = await ort.InferenceSession.create(modelPath, so); }
  catch (e) { throw new CliError(2, `cannot load model ${modelPath}: ${e.message}`); }
  const inName = sess.inputNames[0], outName = sess.outputNames[0];

  const per = Ch * Hh * Ww;
  let dist = 0, total = 0, exact = 0, shown = 0;
  const t0 = Date.now();
  for (let s = 0; s < N; s += batch) {
    const n = Math.min(batch, N - s);
    const feed = new ort.Tensor('float32', x.data.subarray(s * per, (s + n) * per), [n, Ch, Hh, Ww]);
    let res;
    try { res = await sess.run({ [inName]: feed }); }
    catch (e) { throw new CliError(2, `model ${modelPath} failed to run: ${e.message}`); }
    const y = res[outName];
    if (y.dims.length !== 3 || y.dims[0] !== n) throw new CliError(2, `unexpected output shape [${y.dims}]`);
    const [, T, C] = y.dims;
    if (C !== classes.length) {
      throw new CliError(2, `model has ${C} classes but ${keysPath} gives ${classes.length} (blank + ${keyLines.length} keys + space)`);
    }
    for (let i = 0; i < n; i++) {
      const pred = norm(ctcGreedy(y.data, i * T * C, T, C, classes));
      const lab = opt.spaces === 'ignore' ? norm(labels[s + i]) : labels[s + i];
      const a = Array.from(lab), b = Array.from(pred);
      const d = editDistance(a, b);
      dist += d; total += a.length;
      if (d === 0) exact++;
      else if (shown < show) { shown++; process.stderr.write(`[${s + i}] label ${JSON.stringify(lab)}\n      pred  ${JSON.stringify(pred)}\n`); }
    }
  }
  const r = {
    char_accuracy: total ? 1 - dist / total : 0, line_accuracy: exact / N, n: N,
    edit_distance: dist, chars: total, opt: opt.opt, spaces: opt.spaces, seconds: (Date.now() - t0) / 1000,
    model: modelPath,
  };
  console.log(JSON.stringify(r));
}

main().catch(e => {
  if (e instanceof CliError) { process.stderr.write(`ocr_eval: ${e.message}\n`); process.exit(e.code); }
  process.stderr.write(`ocr_eval: ${e.stack || e}\n`);
  process.exit(2);
});
