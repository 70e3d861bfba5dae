'use strict';
// Just enough of the protobuf wire format to list the nodes of an ONNX ModelProto:
// op types and domains (including subgraphs of If/Loop/Scan), opset imports and the IR version.
// Field numbers are from onnx/onnx.proto3.
const fs = require('fs');

function* fields(buf, start, end) {
  let p = start;
  const varint = () => {
    let v = 0, mul = 1, b;
    do {
      if (p >= end) throw new Error('truncated varint');
      b = buf[p++]; v += (b & 0x7f) * mul; mul *= 128;
    } while (b & 0x80);
    return v;
  };
  while (p < end) {
    const key = varint(), field = Math.floor(key / 8), wt = key % 8;
    if (wt === 0) { yield { field, wt, value: varint() }; }
    else if (wt === 1) { p += 8; }
    else if (wt === 5) { p += 4; }
    else if (wt === 2) {
      const len = varint();
      if (p + len > end) throw new Error('truncated length-delimited field');
      yield { field, wt, start: p, end: p + len }; p += len;
    } else throw new Error(`unsupported wire type ${wt}`);
  }
  if (p !== end) throw new Error('message overruns its bounds');
}

const str = (buf, f) => buf.toString('utf8', f.start, f.end);

// GraphProto: 1 node. NodeProto: 4 op_type, 7 domain, 5 attribute. AttributeProto: 6 g, 11 graphs.
function walkGraph(buf, s, e, hist, depth) {
  let n = 0;
  for (const f of fields(buf, s, e)) {
    if (f.field !== 1 || f.wt !== 2) continue;
    let op = '', domain = '';
    const subs = [];
    for (const nf of fields(buf, f.start, f.end)) {
      if (nf.wt !== 2) continue;
      if (nf.field === 4) op = str(buf, nf);
      else if (nf.field === 7) domain = str(buf, nf);
      else if (nf.field === 5) {
        for (const af of fields(buf, nf.start, nf.end)) {
          if (af.wt === 2 && (af.field === 6 || af.field === 11)) subs.push(af);
        }
      }
    }
    const key = domain && domain !== 'ai.onnx' ? `${domain}:${op}` : op;
    hist[key] = (hist[key] || 0) + 1; n++;
    for (const g of subs) n += walkGraph(buf, g.start, g.end, hist, depth + 1);
  }
  return n;
}

// -> { irVersion, opsets: {domain: version}, nodes, ops: {op: count} sorted by count desc }
function opHistogram(path) {
  let buf;
  try { buf = fs.readFileSync(path); } catch (e) { throw new Error(`${path}: cannot read: ${e.code || e.message}`); }
  const hist = {}, opsets = {};
  let irVersion = null, nodes = 0, sawGraph = false;
  try {
    for (const f of fields(buf, 0, buf.length)) {
      if (f.field === 1 && f.wt === 0) irVersion = f.value;
      else if (f.field === 7 && f.wt === 2) { sawGraph = true; nodes += walkGraph(buf, f.start, f.end, hist, 0); }
      else if (f.field === 8 && f.wt === 2) {
        let d = '', v = null;
        for (const of of fields(buf, f.start, f.end)) {
          if (of.field === 1 && of.wt === 2) d = str(buf, of);
          else if (of.field === 2 && of.wt === 0) v = of.value;
        }
        opsets[d || 'ai.onnx'] = v;
      }
    }
  } catch (e) { throw new Error(`${path}: not a valid ONNX model (${e.message})`); }
  if (!sawGraph) throw new Error(`${path}: not a valid ONNX model (no graph)`);
  const ops = Object.fromEntries(Object.entries(hist).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));
  return { irVersion, opsets, nodes, ops };
}

module.exports = { opHistogram };
