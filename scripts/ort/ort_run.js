#!/usr/bin/env node
'use strict';
// ort_run.js: run ONNX models in ONNX Runtime (onnxruntime-node, CPU) to cross-check ptq-tool.
// Install its one dependency with scripts/setup-deps.sh (npm install into scripts/ort/node_modules).
// Every result is printed as one JSON object per line on stdout; diagnostics go to stderr.
// Exit codes: 0 ok, 1 usage error, 2 a model or data file failed to load/run, 3 a comparison gate failed.

const fs = require('fs');
const path = require('path');
const { readNpy, writeNpy, ARRAY } = require('./npy');
const { opHistogram } = require('./onnx_proto');

const USAGE = `usage: node ort_run.js COMMAND ...

  compare A.onnx B.onnx   run A and B on the same inputs; one JSON line per output + a summary line
      [--seed S] [--batch N] [--seq N] [--spatial N] [--vocab V] [--dims name=1x3x48x320]...
      [--input name=file.npy]... [--inputs-from FILE] [--min-cosine C] [--max-abs X]
  ppl MODEL.onnx TOKENS.i64 [--windows 200] [--seq 128] [--batch 8]
      perplexity over non-overlapping windows (zoo protocol, see shared/zoo/README.md)
  accuracy MODEL.onnx X.bin Y.bin|- [--shape 1000x1x20x20] [--batch 250] [--agree B.onnx]
      argmax accuracy; --agree also prints B's accuracy and the top-1 agreement of A and B
  run MODEL.onnx -o OUT_DIR [--input name=file.npy]... [input options as for compare]
      writes each output as OUT_DIR/<name>.npy, synthesized inputs as OUT_DIR/inputs/<name>.npy,
      and OUT_DIR/manifest.json (tensor name -> file, dtype, shape)
  optimized MODEL.onnx OUT.onnx [--opt all]
      saves ONNX Runtime's optimized graph and prints op-type histograms of both models
  info MODEL.onnx         inputs, outputs, opsets and op-type histogram

common options:
  --opt basic|extended|all|disable   graph optimization level (default basic; 'optimized' defaults to all)
  --threads N        intra-op threads (default: ONNX Runtime's choice)
  --config KEY=VAL   session config entry, e.g. session.qdq_matmulnbits_accuracy_level=0 (repeatable)
  --verbose          ONNX Runtime warnings on stderr

synthesized inputs: float -> N(0,1) from a seeded PRNG (mulberry32 + Box-Muller, per-input stream
  seeded by seed ^ fnv1a(name)); integer -> uniform in [0, vocab) (default vocab 100), except names
  containing "mask" (all ones) and "position" (0..n-1 along the last axis). Symbolic dims: the first
  gets --batch (default 2); the others --seq (default 16), or --spatial (default 64) for rank-4 float
  (NCHW image) inputs. --dims name=AxBxC overrides a whole shape.
--inputs-from FILE feeds the model's first input from a zoo data file: *.i64 token files are cut into
  [batch, seq] windows; *_NxCxHxW_f32.bin / *_N_i64.bin give the first --batch rows; *.npy is used as is.`;

class CliError extends Error {
  constructor(code, msg) { super(msg); this.code = code; }
}
const usageError = msg => new CliError(1, `${msg}\n(run 'node ort_run.js --help' for usage)`);
const inputError = msg => new CliError(2, msg);

// ---------------------------------------------------------------- arguments
const REPEATABLE = new Set(['input', 'dims', 'config']);
const FLAGS = new Set(['verbose', 'help']);

function parseArgs(argv) {
  const pos = [], opt = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h') { opt.help = true; continue; }
    if (a === '-o' || a.startsWith('--')) {
      let key = a === '-o' ? 'out' : a.slice(2), val;
      const eq = key.indexOf('=');
      if (eq >= 0) { val = key.slice(eq + 1); key = key.slice(0, eq); }
      else if (FLAGS.has(key)) val = true;
      else {
        if (i + 1 >= argv.length) throw usageError(`option ${a} needs a value`);
        val = argv[++i];
      }
      if (REPEATABLE.has(key)) (opt[key] = opt[key] || []).push(val);
      else opt[key] = val;
    } else pos.push(a);
  }
  return { pos, opt };
}

function checkOptions(cmd, opt, allowed) {
  const common = ['opt', 'threads', 'config', 'verbose', 'help'];
  for (const k of Object.keys(opt)) {
    if (!allowed.includes(k) && !common.includes(k)) throw usageError(`${cmd}: unknown option --${k}`);
  }
}

function intOpt(opt, key, def, min = 1) {
  if (opt[key] === undefined) return def;
  const v = Number(opt[key]);
  if (!Number.isInteger(v) || v < min) throw usageError(`--${key} must be an integer >= ${min}, got '${opt[key]}'`);
  return v;
}
function numOpt(opt, key, def) {
  if (opt[key] === undefined) return def;
  const v = Number(opt[key]);
  if (!Number.isFinite(v)) throw usageError(`--${key} must be a number, got '${opt[key]}'`);
  return v;
}
function parseDims(s, what) {
  const d = String(s).split(/[x,]/).map(Number);
  if (!s || d.some(x => !Number.isInteger(x) || x < 0)) throw usageError(`${what}: bad shape '${s}' (expected like 1x3x48x320)`);
  return d;
}
function keyVal(s, what) {
  const eq = s.indexOf('=');
  if (eq <= 0) throw usageError(`${what} expects NAME=VALUE, got '${s}'`);
  return [s.slice(0, eq), s.slice(eq + 1)];
}

// ---------------------------------------------------------------- ONNX Runtime
let ortModule = null;
function ort() {
  if (ortModule) return ortModule;
  try { ortModule = require('onnxruntime-node'); }
  catch (e) {
    throw new CliError(2, `cannot load onnxruntime-node from ${path.join(__dirname, 'node_modules')} (${e.message.split('\n')[0]}); ` +
      'install it with scripts/setup-deps.sh');
  }
  return ortModule;
}

const LEVELS = { disable: 'disabled', disabled: 'disabled', basic: 'basic', extended: 'extended', layout: 'layout', all: 'all' };

function checkReadable(file, what) {
  let st;
  try { st = fs.statSync(file); } catch (e) { throw inputError(`${what} ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`); }
  if (!st.isFile()) throw inputError(`${what} ${file}: not a regular file`);
}

async function openSession(file, opt, defLevel = 'basic', extra = {}) {
  checkReadable(file, 'model');
  const lvl = LEVELS[opt.opt || defLevel];
  if (!lvl) throw usageError(`--opt must be one of basic, extended, all, disable; got '${opt.opt}'`);
  const o = ort();
  o.env.logLevel = opt.verbose ? 'warning' : 'fatal';   // errors are reported by ort_run itself
  const so = { graphOptimizationLevel: lvl, executionMode: 'sequential', interOpNumThreads: 1,
               logSeverityLevel: opt.verbose ? 2 : 4, ...extra };
  if (opt.threads !== undefined) so.intraOpNumThreads = intOpt(opt, 'threads', 0, 0);
  if (opt.config) so.extra = Object.fromEntries(opt.config.map(s => keyVal(s, '--config')));
  try { return await o.InferenceSession.create(file, so); }
  catch (e) { throw inputError(`cannot load model ${file}: ${e.message}`); }
}

async function runSession(sess, file, feeds) {
  try { return await sess.run(feeds); }
  catch (e) { throw inputError(`model ${file} failed to run: ${e.message}`); }
}

const tensorMeta = (sess, which) => sess[which].map(m => (m.isTensor === false
  ? { name: m.name, type: 'non-tensor', shape: [] } : { name: m.name, type: m.type, shape: m.shape || [] }));

// ---------------------------------------------------------------- numbers
function fnv1a(s) {
  let h = 0x811c9dc5;
  for (const c of Buffer.from(s, 'utf8')) { h ^= c; h = Math.imul(h, 0x01000193) >>> 0; }
  return h;
}
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function normalStream(rand) {
  let spare = null;
  return () => {
    if (spare !== null) { const s = spare; spare = null; return s; }
    const u1 = 1 - rand(), u2 = rand();            // u1 in (0, 1]
    const r = Math.sqrt(-2 * Math.log(u1)), th = 2 * Math.PI * u2;
    spare = r * Math.sin(th);
    return r * Math.cos(th);
  };
}
const f32buf = new Float32Array(1), u32buf = new Uint32Array(f32buf.buffer);
function f32ToF16(v) {        // round to nearest even
  f32buf[0] = v; const x = u32buf[0];
  const sign = (x >>> 16) & 0x8000, exp = (x >>> 23) & 0xff, man = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = man | 0x800000, shift = 14 - e;
    let h = m >>> shift; const rem = m & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (man >>> 13); const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}
function f16ToF32(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >>> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
const isBig = t => t === 'int64' || t === 'uint64';
const isFloat = t => t === 'float32' || t === 'float64' || t === 'float16';

function toNumbers(type, data) {           // any tensor data -> Float64Array (for statistics)
  if (type === 'string') throw inputError('string tensors cannot be compared numerically');
  const out = new Float64Array(data.length);
  if (type === 'float16' && !(typeof Float16Array !== 'undefined' && data instanceof Float16Array)) {
    for (let i = 0; i < data.length; i++) out[i] = f16ToF32(data[i]);
  } else if (typeof data[0] === 'bigint') for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  else for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  return out;
}
function castTo(type, src, srcType, what) {   // numeric cast between typed arrays
  if (srcType === type) return src;
  const Arr = ARRAY[type];
  if (!Arr) throw inputError(`${what}: cannot feed data of type ${srcType} to an input of type ${type}`);
  if (isFloat(srcType) && !isFloat(type)) throw inputError(`${what}: float data (${srcType}) given for an integer input (${type})`);
  const nums = toNumbers(srcType, src), out = new Arr(nums.length);
  for (let i = 0; i < nums.length; i++) {
    out[i] = type === 'float16' ? f32ToF16(nums[i]) : isBig(type) ? BigInt(Math.trunc(nums[i])) : nums[i];
  }
  return out;
}
const prod = a => a.reduce((x, y) => x * y, 1);
const sanitize = s => s.replace(/[^A-Za-z0-9._-]/g, '_') || '_';
const round = (x, d = 9) => (Number.isFinite(x) ? Number(x.toPrecision(d)) : null);

function readRaw(file, type, what) {
  checkReadable(file, what);
  const buf = fs.readFileSync(file), Arr = ARRAY[type];
  if (buf.length % Arr.BYTES_PER_ELEMENT) throw inputError(`${what} ${file}: size ${buf.length} bytes is not a multiple of ${Arr.BYTES_PER_ELEMENT} (${type})`);
  const a = new Arr(buf.length / Arr.BYTES_PER_ELEMENT);
  new Uint8Array(a.buffer).set(buf);
  return a;
}
function readNpyChecked(file, what) {
  checkReadable(file, what);
  try { return readNpy(file); } catch (e) { throw inputError(`${what} ${e.message}`); }
}

// ---------------------------------------------------------------- inputs
function resolveShape(meta, opt) {
  const over = (opt.dims || []).map(s => keyVal(s, '--dims')).find(([n]) => n === meta.name);
  if (over) {
    const d = parseDims(over[1], `--dims ${meta.name}`);
    if (meta.shape.length && d.length !== meta.shape.length) throw usageError(`--dims ${meta.name}: rank ${d.length}, but the model's input has rank ${meta.shape.length} [${meta.shape}]`);
    meta.shape.forEach((m, i) => {
      if (typeof m === 'number' && m >= 0 && m !== d[i]) throw usageError(`--dims ${meta.name}: dim ${i} is fixed to ${m} in the model, got ${d[i]}`);
    });
    return d;
  }
  const batch = intOpt(opt, 'batch', 2), seq = intOpt(opt, 'seq', 16), spatial = intOpt(opt, 'spatial', 64);
  const image = meta.shape.length === 4 && isFloat(meta.type);
  return meta.shape.map((m, i) => (typeof m === 'number' && m >= 0 ? m : i === 0 ? batch : image ? spatial : seq));
}

function synthesize(meta, shape, opt) {
  const n = prod(shape), type = meta.type, Arr = ARRAY[type];
  if (!Arr) throw inputError(`input '${meta.name}' has type ${type}, which cannot be synthesized: give it with --input`);
  const seed = intOpt(opt, 'seed', 0, 0);
  const rand = mulberry32((seed ^ fnv1a(meta.name)) >>> 0);
  const data = new Arr(n);
  if (isFloat(type)) {
    const normal = normalStream(rand);
    for (let i = 0; i < n; i++) data[i] = type === 'float16' ? f32ToF16(normal()) : normal();
    return data;
  }
  const last = shape.length ? shape[shape.length - 1] : 1;
  let hi = type === 'bool' ? 2 : intOpt(opt, 'vocab', 100);
  if (type === 'int8') hi = Math.min(hi, 128); else if (type === 'uint8') hi = Math.min(hi, 256);
  const val = /mask/i.test(meta.name) ? () => 1
    : /position/i.test(meta.name) ? i => i % last
      : () => Math.floor(rand() * hi);
  for (let i = 0; i < n; i++) data[i] = isBig(type) ? BigInt(val(i)) : val(i);
  return data;
}

function parseZooName(file) {        // calib_x_256x1x20x20_f32.bin -> { shape, type }
  const m = /_(\d+(?:x\d+)*)_(f32|i64)\.bin$/.exec(path.basename(file));
  return m ? { shape: m[1].split('x').map(Number), type: m[2] === 'f32' ? 'float32' : 'int64' } : null;
}

function fromFile(meta, file, opt) {   // --inputs-from
  const batch = intOpt(opt, 'batch', 2);
  if (file.endsWith('.npy')) { const a = readNpyChecked(file, '--inputs-from'); return { ...a, source: file }; }
  if (file.endsWith('.i64')) {
    const toks = readRaw(file, 'int64', '--inputs-from');
    const fixed = meta.shape.length === 2 && typeof meta.shape[1] === 'number' && meta.shape[1] > 0 ? meta.shape[1] : null;
    const seq = fixed || intOpt(opt, 'seq', 16);
    if (toks.length < batch * seq) throw inputError(`--inputs-from ${file}: ${toks.length} tokens, need ${batch}x${seq}`);
    return { dtype: 'int64', shape: [batch, seq], data: toks.slice(0, batch * seq), source: file };
  }
  const z = parseZooName(file);
  if (!z) throw usageError(`--inputs-from ${file}: expected *.npy, *.i64 tokens, or a zoo file named like NAME_NxCxHxW_f32.bin`);
  const all = readRaw(file, z.type, '--inputs-from');
  if (all.length !== prod(z.shape)) throw inputError(`--inputs-from ${file}: ${all.length} elements, the name says [${z.shape}]`);
  const rows = Math.min(batch, z.shape[0]), per = prod(z.shape.slice(1));
  return { dtype: z.type, shape: [rows, ...z.shape.slice(1)], data: all.slice(0, rows * per), source: file };
}

function checkShape(meta, shape, what) {
  if (!meta.shape.length) return;
  if (shape.length !== meta.shape.length) throw inputError(`${what}: shape [${shape}] has rank ${shape.length}, model input '${meta.name}' is [${meta.shape}]`);
  meta.shape.forEach((m, i) => {
    if (typeof m === 'number' && m >= 0 && m !== shape[i]) throw inputError(`${what}: shape [${shape}] does not fit model input '${meta.name}' [${meta.shape}]`);
  });
}

// -> [{ name, type, shape, data, source }]
function buildInputs(sess, opt) {
  const metas = tensorMeta(sess, 'inputMetadata');
  const given = new Map((opt.input || []).map(s => keyVal(s, '--input')));
  for (const n of given.keys()) {
    if (!metas.some(m => m.name === n)) throw usageError(`--input ${n}: the model has no input named '${n}' (inputs: ${metas.map(m => m.name).join(', ')})`);
  }
  return metas.map((meta, idx) => {
    if (meta.type === 'non-tensor') throw inputError(`input '${meta.name}' is not a tensor`);
    let a = null;
    if (given.has(meta.name)) a = { ...readNpyChecked(given.get(meta.name), `--input ${meta.name}`), source: given.get(meta.name) };
    else if (idx === 0 && opt['inputs-from']) a = fromFile(meta, opt['inputs-from'], opt);
    if (a) {
      const what = `input '${meta.name}' from ${a.source}`;
      checkShape(meta, a.shape, what);
      return { name: meta.name, type: meta.type, shape: a.shape, data: castTo(meta.type, a.data, a.dtype, what), source: a.source };
    }
    const shape = resolveShape(meta, opt);
    return { name: meta.name, type: meta.type, shape, data: synthesize(meta, shape, opt), source: 'synthesized' };
  });
}

function feedsFor(sess, file, inputs) {
  const feeds = {}, T = ort().Tensor;
  for (const m of tensorMeta(sess, 'inputMetadata')) {
    const x = inputs.find(i => i.name === m.name);
    if (!x) throw inputError(`model ${file} has an input '${m.name}' that the first model does not have`);
    if (x.type !== m.type) throw inputError(`model ${file}: input '${m.name}' is ${m.type}, the first model's is ${x.type}`);
    feeds[m.name] = new T(x.type, x.data, x.shape);
  }
  return feeds;
}

// ---------------------------------------------------------------- statistics
function compareArrays(a, b) {
  let maxAbs = 0, sumAbs = 0, dot = 0, na = 0, nb = 0, sa = 0, sb = 0, nonA = 0, nonB = 0, mism = 0, sd = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if (x !== y) mism++;
    if (!Number.isFinite(x)) nonA++;
    if (!Number.isFinite(y)) nonB++;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    const d = Math.abs(x - y);
    if (d > maxAbs) maxAbs = d;
    sumAbs += d; sd += d * d; dot += x * y; na += x * x; nb += y * y; sa += Math.abs(x); sb += Math.abs(y);
  }
  const n = a.length || 1;
  const cosine = na === 0 && nb === 0 ? 1 : na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
  return { maxAbs, meanAbs: sumAbs / n, cosine, relL2: na > 0 ? Math.sqrt(sd / na) : (sd > 0 ? Infinity : 0),
           aMeanAbs: sa / n, bMeanAbs: sb / n, nonA, nonB, mismatch: mism };
}

const out = obj => process.stdout.write(JSON.stringify(obj) + '\n');

// ---------------------------------------------------------------- commands
async function cmdCompare(pos, opt) {
  checkOptions('compare', opt, ['seed', 'batch', 'seq', 'spatial', 'vocab', 'dims', 'input', 'inputs-from', 'min-cosine', 'max-abs']);
  if (pos.length !== 2) throw usageError('compare needs two models: compare A.onnx B.onnx');
  const [fa, fb] = pos;
  const minCos = numOpt(opt, 'min-cosine', null), maxAbsGate = numOpt(opt, 'max-abs', null);
  const sa = await openSession(fa, opt), sb = await openSession(fb, opt);
  const inputs = buildInputs(sa, opt);
  let t0 = process.hrtime.bigint();
  const ra = await runSession(sa, fa, feedsFor(sa, fa, inputs));
  const aMs = Number(process.hrtime.bigint() - t0) / 1e6;
  t0 = process.hrtime.bigint();
  const rb = await runSession(sb, fb, feedsFor(sb, fb, inputs));
  const bMs = Number(process.hrtime.bigint() - t0) / 1e6;

  const bNames = sb.outputNames;
  let ok = true, minCosine = 1, maxAbs = 0;
  const failures = [];
  sa.outputNames.forEach((name, i) => {
    const bName = bNames.includes(name) ? name : bNames[i];
    const A = ra[name], B = bName !== undefined ? rb[bName] : undefined;
    const rec = { output: name };
    if (bName !== name) rec.b_output = bName === undefined ? null : bName;
    if (!B) { ok = false; failures.push(`${name}: no matching output in ${fb}`); out({ ...rec, error: 'missing in B' }); return; }
    rec.shape = A.dims; rec.dtype = A.type;
    if (B.dims.length !== A.dims.length || B.dims.some((d, k) => d !== A.dims[k])) {
      ok = false; failures.push(`${name}: shape [${A.dims}] vs [${B.dims}]`);
      out({ ...rec, b_shape: B.dims, error: 'shape mismatch' }); return;
    }
    const s = compareArrays(toNumbers(A.type, A.data), toNumbers(B.type, B.data));
    Object.assign(rec, { max_abs: round(s.maxAbs), mean_abs: round(s.meanAbs), cosine: round(s.cosine, 12),
                         rel_l2: round(s.relL2), a_mean_abs: round(s.aMeanAbs), b_mean_abs: round(s.bMeanAbs) });
    if (!isFloat(A.type) || !isFloat(B.type)) rec.mismatch = s.mismatch;
    if (s.nonA || s.nonB) {
      rec.nonfinite_a = s.nonA; rec.nonfinite_b = s.nonB;
      if (s.nonA !== s.nonB || s.mismatch > 0) { ok = false; failures.push(`${name}: non-finite values (A ${s.nonA}, B ${s.nonB})`); }
    }
    minCosine = Math.min(minCosine, s.cosine); maxAbs = Math.max(maxAbs, s.maxAbs);
    out(rec);
  });
  if (minCos !== null && minCosine < minCos) { ok = false; failures.push(`min cosine ${minCosine} < ${minCos}`); }
  if (maxAbsGate !== null && maxAbs > maxAbsGate) { ok = false; failures.push(`max abs ${maxAbs} > ${maxAbsGate}`); }
  out({ ok, min_cosine: round(minCosine, 12), max_abs: round(maxAbs),
        inputs: inputs.map(x => ({ name: x.name, shape: x.shape, dtype: x.type, source: x.source })),
        a_ms: round(aMs, 4), b_ms: round(bMs, 4), opt: LEVELS[opt.opt || 'basic'] });
  if (!ok) throw new CliError(3, `compare ${fa} vs ${fb} failed: ${failures.join('; ')}`);
}

async function cmdPpl(pos, opt) {
  checkOptions('ppl', opt, ['windows', 'seq', 'batch']);
  if (pos.length !== 2) throw usageError('ppl needs a model and a token file: ppl MODEL.onnx TOKENS.i64');
  const [file, tokFile] = pos;
  const seq = intOpt(opt, 'seq', 128), batch = intOpt(opt, 'batch', 8), want = intOpt(opt, 'windows', 200);
  const toks = readRaw(tokFile, 'int64', 'token file');
  // window w = tokens[seq*w : seq*w+seq]; target of position t is tokens[seq*w+t+1] (so seq*W+1 tokens needed)
  const avail = Math.floor((toks.length - 1) / seq);
  if (avail < 1) throw inputError(`token file ${tokFile}: ${toks.length} tokens, need at least ${seq + 1}`);
  const windows = Math.min(want, avail);
  if (windows < want) process.stderr.write(`ort_run: ${tokFile} holds only ${avail} windows of ${seq} (+1 target); using ${windows}\n`);
  const sess = await openSession(file, opt);
  const metas = tensorMeta(sess, 'inputMetadata');
  const idMeta = metas.find(m => m.name === 'input_ids') || metas[0];
  if (!idMeta || !['int64', 'int32'].includes(idMeta.type)) throw inputError(`model ${file}: first input is not an integer token input`);
  const outName = sess.outputNames.includes('logits') ? 'logits' : sess.outputNames[0];
  let nll = 0, count = 0, correct = 0, vocab = null;
  for (let w0 = 0; w0 < windows; w0 += batch) {
    const b = Math.min(batch, windows - w0);
    const inputs = metas.map(m => {
      if (m === idMeta) {
        const ids = toks.slice(w0 * seq, (w0 + b) * seq);
        return { name: m.name, type: m.type, shape: [b, seq], data: castTo(m.type, ids, 'int64', 'tokens') };
      }
      const shape = resolveShape(m, { ...opt, batch: b, seq });
      return { name: m.name, type: m.type, shape, data: synthesize(m, shape, opt) };
    });
    const res = await runSession(sess, file, feedsFor(sess, file, inputs));
    const L = res[outName], V = L.dims[L.dims.length - 1];
    if (L.dims.length !== 3 || L.dims[0] !== b || L.dims[1] !== seq) throw inputError(`model ${file}: output '${outName}' has shape [${L.dims}], expected [${b}, ${seq}, vocab]`);
    vocab = V;
    const lg = L.data;
    for (let i = 0; i < b; i++) {
      for (let t = 0; t < seq; t++) {
        const tgt = Number(toks[(w0 + i) * seq + t + 1]);
        if (tgt < 0 || tgt >= V) throw inputError(`token file ${tokFile}: token ${tgt} at ${(w0 + i) * seq + t + 1} is outside the vocabulary [0, ${V})`);
        const o = (i * seq + t) * V;
        let mx = -Infinity, arg = 0;
        for (let v = 0; v < V; v++) if (lg[o + v] > mx) { mx = lg[o + v]; arg = v; }
        let se = 0;
        for (let v = 0; v < V; v++) se += Math.exp(lg[o + v] - mx);
        nll += mx + Math.log(se) - lg[o + tgt];
        if (arg === tgt) correct++;
        count++;
      }
    }
  }
  const mean = nll / count;
  out({ ppl: round(Math.exp(mean)), nll: round(mean), windows, seq, positions: count, top1: round(correct / count, 6),
        vocab, model: file, opt: LEVELS[opt.opt || 'basic'] });
}

async function logitsFor(sess, file, X, shape, batch) {
  const metas = tensorMeta(sess, 'inputMetadata');
  if (metas.length !== 1) throw inputError(`model ${file} has ${metas.length} inputs; accuracy needs exactly one`);
  const m = metas[0], n = shape[0], per = prod(shape.slice(1)), T = ort().Tensor;
  checkShape(m, shape, `data of shape [${shape}]`);
  const preds = new Int32Array(n);
  for (let s = 0; s < n; s += batch) {
    const b = Math.min(batch, n - s);
    const x = castTo(m.type, X.slice(s * per, (s + b) * per), 'float32', `model ${file}`);
    const res = await runSession(sess, file, { [m.name]: new T(m.type, x, [b, ...shape.slice(1)]) });
    const L = res[sess.outputNames[0]], C = L.data.length / b;
    const d = toNumbers(L.type, L.data);
    for (let i = 0; i < b; i++) {
      let arg = 0;
      for (let c = 1; c < C; c++) if (d[i * C + c] > d[i * C + arg]) arg = c;
      preds[s + i] = arg;
    }
  }
  return preds;
}

async function cmdAccuracy(pos, opt) {
  checkOptions('accuracy', opt, ['shape', 'batch', 'agree']);
  if (pos.length !== 3) throw usageError('accuracy needs: accuracy MODEL.onnx X.bin Y.bin (Y may be - with --agree)');
  const [file, xFile, yFile] = pos;
  let X, shape;
  if (xFile.endsWith('.npy')) {
    const a = readNpyChecked(xFile, 'data file'); shape = a.shape; X = castTo('float32', a.data, a.dtype, xFile);
  } else {
    const z = parseZooName(xFile);
    shape = opt.shape ? parseDims(opt.shape, '--shape') : z && z.shape;
    if (!shape) throw usageError(`accuracy: give --shape NxCxHxW for ${xFile}`);
    X = readRaw(xFile, 'float32', 'data file');
    if (X.length !== prod(shape)) throw inputError(`data file ${xFile}: ${X.length} float32 values, --shape ${shape.join('x')} needs ${prod(shape)}`);
  }
  let Y = null;
  if (yFile !== '-') {
    const y = yFile.endsWith('.npy') ? readNpyChecked(yFile, 'label file').data : readRaw(yFile, 'int64', 'label file');
    if (y.length !== shape[0]) throw inputError(`label file ${yFile}: ${y.length} labels for ${shape[0]} samples`);
    Y = toNumbers('int64', y);
  } else if (!opt.agree) throw usageError('accuracy: labels are required unless --agree B.onnx is given');
  const batch = intOpt(opt, 'batch', 250);
  const acc = p => { let c = 0; for (let i = 0; i < p.length; i++) if (p[i] === Y[i]) c++; return c; };
  const pa = await logitsFor(await openSession(file, opt), file, X, shape, batch);
  const res = { model: file, n: shape[0] };
  if (Y) { const c = acc(pa); Object.assign(res, { accuracy: round(c / shape[0], 6), correct: c }); }
  if (opt.agree) {
    const pb = await logitsFor(await openSession(opt.agree, opt), opt.agree, X, shape, batch);
    let same = 0;
    for (let i = 0; i < pa.length; i++) if (pa[i] === pb[i]) same++;
    res.b_model = opt.agree;
    if (Y) { const c = acc(pb); res.b_accuracy = round(c / shape[0], 6); res.b_correct = c; }
    res.agreement = round(same / shape[0], 6);
  }
  out(res);
}

async function cmdRun(pos, opt) {
  checkOptions('run', opt, ['out', 'seed', 'batch', 'seq', 'spatial', 'vocab', 'dims', 'input', 'inputs-from']);
  if (pos.length !== 1 || !opt.out) throw usageError('run needs: run MODEL.onnx -o OUT_DIR [--input name=file.npy]...');
  const file = pos[0], dir = opt.out;
  const sess = await openSession(file, opt);
  const inputs = buildInputs(sess, opt);
  const res = await runSession(sess, file, feedsFor(sess, file, inputs));
  try { fs.mkdirSync(dir, { recursive: true }); } catch (e) { throw inputError(`cannot create output directory ${dir}: ${e.message}`); }
  const used = new Set(), manifest = { model: file, opt: LEVELS[opt.opt || 'basic'], inputs: [], outputs: [] };
  const fname = (sub, name) => {
    let base = sanitize(name), f = path.join(sub, `${base}.npy`), k = 2;
    while (used.has(f)) f = path.join(sub, `${base}_${k++}.npy`);
    used.add(f); return f;
  };
  for (const x of inputs) {
    const rec = { name: x.name, dtype: x.type, shape: x.shape, source: x.source };
    if (x.source === 'synthesized') {
      fs.mkdirSync(path.join(dir, 'inputs'), { recursive: true });
      rec.file = fname('inputs', x.name);
      writeNpy(path.join(dir, rec.file), x.type, x.shape, x.data);
    }
    manifest.inputs.push(rec);
  }
  for (const name of sess.outputNames) {
    const t = res[name], rec = { name, dtype: t.type, shape: t.dims };
    if (ARRAY[t.type]) {
      rec.file = fname('', name);
      writeNpy(path.join(dir, rec.file), t.type, t.dims, t.data);
    } else rec.error = `type ${t.type} not written`;
    manifest.outputs.push(rec);
  }
  const mf = path.join(dir, 'manifest.json');
  fs.writeFileSync(mf, JSON.stringify(manifest, null, 2) + '\n');
  out({ ok: true, dir, manifest: mf, outputs: manifest.outputs.map(o => ({ name: o.name, file: o.file, shape: o.shape, dtype: o.dtype })) });
}

async function cmdOptimized(pos, opt) {
  checkOptions('optimized', opt, []);
  if (pos.length !== 2) throw usageError('optimized needs: optimized MODEL.onnx OUT.onnx');
  const [file, outFile] = pos;
  const abs = path.resolve(outFile);
  if (path.resolve(file) === abs) throw usageError('optimized: OUT.onnx must differ from the input model');
  try { fs.mkdirSync(path.dirname(abs), { recursive: true }); } catch (e) { throw inputError(`cannot create directory for ${outFile}: ${e.message}`); }
  const before = opHistogramChecked(file);
  await openSession(file, opt, 'all', { optimizedModelFilePath: abs });
  if (!fs.existsSync(abs)) throw inputError(`ONNX Runtime did not write ${outFile}`);
  const after = opHistogramChecked(abs);
  out({ model: file, optimized: outFile, opt: LEVELS[opt.opt || 'all'], nodes: after.nodes, ops: after.ops,
        input_nodes: before.nodes, input_ops: before.ops, opsets: after.opsets });
}

function opHistogramChecked(file) {
  checkReadable(file, 'model');
  try { return opHistogram(file); } catch (e) { throw inputError(e.message); }
}

async function cmdInfo(pos, opt) {
  checkOptions('info', opt, []);
  if (pos.length !== 1) throw usageError('info needs: info MODEL.onnx');
  const file = pos[0];
  const h = opHistogramChecked(file);
  const sess = await openSession(file, opt);
  out({ model: file, bytes: fs.statSync(file).size, ir_version: h.irVersion, opsets: h.opsets,
        inputs: tensorMeta(sess, 'inputMetadata'), outputs: tensorMeta(sess, 'outputMetadata'), nodes: h.nodes, ops: h.ops });
}

const COMMANDS = { compare: cmdCompare, ppl: cmdPpl, accuracy: cmdAccuracy, run: cmdRun, optimized: cmdOptimized, info: cmdInfo };

async function main() {
  const argv = process.argv.slice(2);
  if (!argv.length || ['-h', '--help', 'help'].includes(argv[0])) { process.stdout.write(USAGE + '\n'); return; }
  const cmd = COMMANDS[argv[0]];
  if (!cmd) throw usageError(`unknown command '${argv[0]}' (commands: ${Object.keys(COMMANDS).join(', ')})`);
  const { pos, opt } = parseArgs(argv.slice(1));
  if (opt.help) { process.stdout.write(USAGE + '\n'); return; }
  await cmd(pos, opt);
}

main().catch(e => {
  if (e instanceof CliError) { process.stderr.write(`ort_run: ${e.message}\n`); process.exitCode = e.code; }
  else { process.stderr.write(`ort_run: internal error: ${e && e.stack || e}\n`); process.exitCode = 2; }
});
