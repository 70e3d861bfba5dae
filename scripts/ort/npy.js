'use strict';
// Minimal .npy (NumPy format v1/v2/v3) reader and writer: little-endian, C order, numeric dtypes only.
// read  -> { dtype: 'float32'|'int64'|..., shape: number[], data: TypedArray }
// write <- (path, dtype, shape, data)
const fs = require('fs');

// numpy descr <-> ORT tensor type. Big-endian ('>') is rejected.
const DESCR = {
  '<f4': 'float32', '<f8': 'float64', '<f2': 'float16',
  '<i8': 'int64', '<i4': 'int32', '<i2': 'int16', '|i1': 'int8',
  '<u8': 'uint64', '<u4': 'uint32', '<u2': 'uint16', '|u1': 'uint8', '|b1': 'bool',
};
const ARRAY = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array,
  int64: BigInt64Array, int32: Int32Array, int16: Int16Array, int8: Int8Array,
  uint64: BigUint64Array, uint32: Uint32Array, uint16: Uint16Array, uint8: Uint8Array, bool: Uint8Array,
};
const DESCR_OF = Object.fromEntries(Object.entries(DESCR).map(([k, v]) => [v, k]));

function fail(path, msg) { throw new Error(`${path}: ${msg}`); }

function parseHeader(path, text) {
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(text);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) fail(path, `malformed .npy header: ${text.trim()}`);
  if (fortran[1] === 'True') fail(path, 'Fortran-order .npy arrays are not supported (save with C order)');
  let d = descr[1];
  if (d === '=f4' || d === '=f8' || d === '=i8' || d === '=i4') d = '<' + d.slice(1);
  if (d === '<i1' || d === '<u1' || d === '<b1') d = '|' + d.slice(1);
  const dtype = DESCR[d];
  if (!dtype) fail(path, `unsupported .npy dtype '${descr[1]}' (supported: ${Object.keys(DESCR).join(' ')})`);
  const dims = shape[1].split(',').map(s => s.trim()).filter(s => s.length).map(Number);
  if (dims.some(x => !Number.isInteger(x) || x < 0)) fail(path, `bad shape in .npy header: (${shape[1]})`);
  return { dtype, shape: dims };
}

function readNpy(path) {
  let buf;
  try { buf = fs.readFileSync(path); } catch (e) { fail(path, `cannot read: ${e.code || e.message}`); }
  if (buf.length < 10 || buf[0] !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') fail(path, 'not a .npy file (bad magic)');
  const major = buf[6];
  let hlen, off;
  if (major === 1) { hlen = buf.readUInt16LE(8); off = 10; }
  else if (major === 2 || major === 3) { hlen = buf.readUInt32LE(8); off = 12; }
  else fail(path, `unsupported .npy version ${major}`);
  if (off + hlen > buf.length) fail(path, 'truncated .npy header');
  const { dtype, shape } = parseHeader(path, buf.toString(major === 3 ? 'utf8' : 'latin1', off, off + hlen));
  const count = shape.reduce((a, b) => a * b, 1);
  const Arr = ARRAY[dtype];
  const start = off + hlen, nbytes = count * Arr.BYTES_PER_ELEMENT;
  if (buf.length - start < nbytes) fail(path, `truncated .npy data: need ${nbytes} bytes for shape [${shape}] ${dtype}, have ${buf.length - start}`);
  // copy into a fresh, aligned buffer
  const data = new Arr(count);
  new Uint8Array(data.buffer).set(buf.subarray(start, start + nbytes));
  return { dtype, shape, data };
}

function writeNpy(path, dtype, shape, data) {
  const descr = DESCR_OF[dtype];
  if (!descr) throw new Error(`${path}: cannot write dtype ${dtype} as .npy`);
  const shp = shape.length === 0 ? '()' : shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shp}, }`;
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre[0] = 0x93; pre.write('NUMPY', 1, 'latin1'); pre[6] = 1; pre[7] = 0; pre.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const tmp = `${path}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
  fs.renameSync(tmp, path);
}

module.exports = { readNpy, writeNpy, ARRAY };
