#!/usr/bin/python3
"""make-outlier-copy.py: write a copy of a transformer ONNX model that computes the same function but
has LLM-like activation outliers on the outputs of its norms (issue 8: the SmoothQuant test bed).

For every norm -- LayerNormalization(x, gamma[, beta]) or a decomposed RMSNorm ending in Mul(x_normed, gamma)
-- K channels are drawn (seeded); gamma (and beta) on those channels are multiplied by F, and the same
input channels of every weight reading the norm output are divided by F:
  MatMul(y, B[in, out])          rows of B
  Gemm(y, B, transB=0)           rows of B;   Gemm(y, B, transB=1) ([out, in]): columns of B
Readers that keep the channel axis (Gather / Slice not on the last axis, Identity, Squeeze/Unsqueeze of
leading axes) are followed; Shape readers are ignored. A weight (or gamma/beta) that is also read elsewhere
is untied (copied) first. Any other reader of a norm output is an error: the copy would not be equivalent.

The copy is then checked in ONNX Runtime (scripts/ort/ort_run.js run) on real inputs -- token windows of
NAME.val.i64 for language models, test digits for image models -- and is only written (atomically) when
the max |ref - copy| / max |ref| of every output is <= --tol (default 1e-4). It also prints, per norm,
the activation outlier ratio max_c(absmax_c) / mean_c(absmax_c) before and after.

Needs Debian's python3-onnx and python3-numpy, node and onnxruntime-node (scripts/setup-deps.sh).
Exit codes: 0 ok, 1 usage, 2 model cannot be adjusted (unsupported reader, ...) or read, or ONNX Runtime failed,
3 equivalence check failed (nothing written), 4 output folder missing.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
ORT_RUN = os.path.join(HERE, 'ort', 'ort_run.js')


class AdjustError(Exception):
    pass


def die(code, msg):
    print(f'make-outlier-copy: {msg}', file=sys.stderr)
    sys.exit(code)


# ------------------------------------------------------------------------------------------ graph helpers
class Graph:
    def __init__(self, model):
        self.model = model
        self.g = model.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.refresh()

    def refresh(self):
        self.producer = {}
        self.readers = {}
        for n in self.g.node:
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                if i:
                    self.readers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in self.g.output}

    def const(self, name):
        """numpy value of an initializer or a Constant node output, else None."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        p = self.producer.get(name)
        if p is not None and p.op_type == 'Constant':
            for a in p.attribute:
                if a.name == 'value':
                    return numpy_helper.to_array(a.t)
        return None

    def attr(self, node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def n_uses(self, name):
        return len(self.readers.get(name, [])) + (1 if name in self.outputs else 0)

    def fresh_name(self, base):
        taken = set(self.inits) | set(self.producer) | {i.name for i in self.g.input}
        k, name = 1, f'{base}_outlier'
        while name in taken:
            k += 1
            name = f'{base}_outlier{k}'
        return name

    def set_init(self, name, arr):
        t = self.inits[name]
        new = numpy_helper.from_array(arr.astype(numpy_helper.to_array(t).dtype), name)
        t.CopyFrom(new)

    def untie(self, node, idx, exclusive_readers):
        """Make input idx of node an initializer only `exclusive_readers` (node names) read; return its name."""
        name = node.input[idx]
        if name not in self.inits:
            raise AdjustError(f'node {node.name or node.output[0]} ({node.op_type}): input {name} is not an initializer')
        readers = self.readers.get(name, [])
        if name not in self.outputs and all(key(r) in exclusive_readers for r in readers):
            return name, False
        new = self.fresh_name(name)
        t = onnx.TensorProto()
        t.CopyFrom(self.inits[name])
        t.name = new
        self.g.initializer.append(t)
        self.inits[new] = self.g.initializer[-1]
        for k, x in enumerate(node.input):
            if x == name:
                node.input[k] = new
        self.refresh()
        return new, True


def node_label(n):
    return n.name or n.output[0]


def key(n):
    """identity of a node (protobuf wrappers are not stable objects): its first output, unique in SSA form"""
    return n.output[0]


# ------------------------------------------------------------------------------------------ find norms
def is_rmsnorm_mul(G, n):
    """Mul(x_normed, gamma): gamma a 1-D initializer, x_normed = Div(x, Sqrt(..)), Mul(x, Div(1, Sqrt(..)))
    or Mul(x, Reciprocal(Sqrt(..)))."""
    if n.op_type != 'Mul' or len(n.input) != 2:
        return None
    for gi in (0, 1):
        gname, xname = n.input[gi], n.input[1 - gi]
        if gname not in G.inits or len(G.inits[gname].dims) != 1:
            continue
        p = G.producer.get(xname)
        if p is None or p.op_type not in ('Div', 'Mul'):
            continue
        if 'Sqrt' in ancestor_ops(G, p, 2):
            return gi
    return None


def ancestor_ops(G, node, depth):
    """op types of the producers of node's inputs, `depth` levels up (through any op)"""
    ops, frontier = set(), [node]
    for _ in range(depth):
        nxt = []
        for n in frontier:
            for i in n.input:
                q = G.producer.get(i)
                if q is not None:
                    ops.add(q.op_type)
                    nxt.append(q)
        frontier = nxt
    return ops


def find_norms(G):
    norms = []
    for n in G.g.node:
        if n.op_type == 'LayerNormalization':
            axis = G.attr(n, 'axis', -1)
            if axis != -1:
                raise AdjustError(f'{node_label(n)}: LayerNormalization over axis {axis} (only the last axis is supported)')
            if n.input[1] not in G.inits or (len(n.input) > 2 and n.input[2] and n.input[2] not in G.inits):
                raise AdjustError(f'{node_label(n)}: scale/bias are not initializers')
            norms.append({'node': n, 'kind': 'LayerNormalization', 'gamma_idx': 1,
                          'beta_idx': 2 if len(n.input) > 2 and n.input[2] else None})
        else:
            gi = is_rmsnorm_mul(G, n)
            if gi is not None:
                norms.append({'node': n, 'kind': 'RMSNorm', 'gamma_idx': gi, 'beta_idx': None})
    return norms


# ------------------------------------------------------------------------------------------ readers
def collect_weight_readers(G, value, width, path=()):
    """-> list of (node, weight_input_index, axis_of_input_channels); raise AdjustError on a reader we can't adjust."""
    found = []
    if value in G.outputs:
        raise AdjustError(f'{value} is a graph output: scaling its channels would change the model')
    for r in G.readers.get(value, []):
        where = ' -> '.join(path + (f'{node_label(r)} ({r.op_type})',))
        op = r.op_type
        if op == 'Shape' or op == 'Size':
            continue
        if op == 'Identity':
            found += collect_weight_readers(G, r.output[0], width, path + (node_label(r),))
            continue
        if op in ('Gather', 'Slice', 'Squeeze', 'Unsqueeze'):
            ok = channel_preserving(G, r, value)
            if not ok:
                raise AdjustError(f'{where}: does not keep the channel axis last (cannot follow it)')
            found += collect_weight_readers(G, r.output[0], width, path + (node_label(r),))
            continue
        if op == 'MatMul':
            if r.input[0] != value or r.input[1] == value:
                raise AdjustError(f'{where}: the norm output is not (only) the left operand')
            w = G.const(r.input[1])
            if w is None or r.input[1] not in G.inits:
                raise AdjustError(f'{where}: weight {r.input[1]} is not an initializer')
            if w.ndim != 2 or w.shape[0] != width:
                raise AdjustError(f'{where}: weight {r.input[1]} has shape {list(w.shape)}, expected [{width}, out]')
            found.append((r, 1, 0))
            continue
        if op == 'Gemm':
            if r.input[0] != value or r.input[1] == value or (len(r.input) > 2 and r.input[2] == value):
                raise AdjustError(f'{where}: the norm output is not (only) the A operand')
            if G.attr(r, 'transA', 0):
                raise AdjustError(f'{where}: transA=1 is not supported')
            if r.input[1] not in G.inits:
                raise AdjustError(f'{where}: weight {r.input[1]} is not an initializer')
            w = G.const(r.input[1])
            axis = 1 if G.attr(r, 'transB', 0) else 0
            if w.ndim != 2 or w.shape[axis] != width:
                raise AdjustError(f'{where}: weight {r.input[1]} has shape {list(w.shape)}, expected {width} input channels on axis {axis}')
            found.append((r, 1, axis))
            continue
        raise AdjustError(f'{where}: reads the norm output and cannot absorb a per-channel scale '
                          f'(supported readers: MatMul/Gemm with an initializer weight, Shape, and channel-preserving '
                          f'Gather/Slice/Squeeze/Unsqueeze/Identity)')
    return found


def channel_preserving(G, r, value):
    """True when r keeps the last (channel) axis of `value` whole and last."""
    op = r.op_type
    if op == 'Gather':
        if r.input[0] != value:
            return False
        rank, axis = value_rank(G, value), G.attr(r, 'axis', 0)
        return rank is not None and -rank <= axis < rank and axis % rank != rank - 1
    if op == 'Slice':
        if r.input[0] != value or len(r.input) < 4 or not r.input[3]:
            return False  # no explicit axes: slices start at axis 0 but may cover the last one
        axes = G.const(r.input[3])
        return axes is not None and all(int(a) >= 0 for a in np.ravel(axes)) and _not_last_axis(G, value, axes)
    if op in ('Squeeze', 'Unsqueeze'):
        axes = G.const(r.input[1]) if len(r.input) > 1 and r.input[1] else G.attr(r, 'axes', None)
        return axes is not None and all(int(a) >= 0 for a in np.ravel(axes)) and _not_last_axis(G, value, axes, op == 'Unsqueeze')
    return False


def _not_last_axis(G, value, axes, unsqueeze=False):
    rank = value_rank(G, value)
    if rank is None:
        return False
    if unsqueeze:
        return all(int(a) < rank for a in np.ravel(axes))   # new axes inserted before the channel axis
    return all(int(a) < rank - 1 for a in np.ravel(axes))


def value_rank(G, value):
    for vi in list(G.g.value_info) + list(G.g.output) + list(G.g.input):
        if vi.name == value and vi.type.tensor_type.HasField('shape'):
            return len(vi.type.tensor_type.shape.dim)
    return None


# ------------------------------------------------------------------------------------------ the rewrite
def plant(model, k, factor, seed, log):
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:  # shape inference is only needed to follow Slice/Squeeze readers
        log(f'note: shape inference failed ({e}); Slice/Squeeze readers cannot be followed')
    G = Graph(model)
    norms = find_norms(G)
    if not norms:
        raise AdjustError('no LayerNormalization or decomposed RMSNorm (Mul(x/sqrt(..), gamma)) found')
    rng = np.random.default_rng(seed)
    plan = []
    # first pass: check every norm can be adjusted before touching anything
    for nm in norms:
        n = nm['node']
        gamma = G.const(n.input[nm['gamma_idx']])
        width = gamma.shape[-1]
        if k > width:
            raise AdjustError(f'{node_label(n)}: --channels {k} > width {width}')
        readers = collect_weight_readers(G, n.output[0], width, (node_label(n),))
        if not readers:
            raise AdjustError(f'{node_label(n)}: no weight reads its output')
        plan.append((nm, width, readers))
    summary = []
    for nm, width, readers in plan:
        n = nm['node']
        ch = np.sort(rng.choice(width, size=k, replace=False))
        scale = np.ones(width, dtype=np.float64)
        scale[ch] = factor
        untied = []
        for idx in [nm['gamma_idx'], nm['beta_idx']]:
            if idx is None:
                continue
            name, was = G.untie(n, idx, {key(n)})
            if was:
                untied.append(name)
            v = G.const(name).astype(np.float64)
            if v.shape != (width,):
                raise AdjustError(f'{node_label(n)}: gamma/beta {name} has shape {list(v.shape)}, expected [{width}]')
            G.set_init(name, v * scale)
        scaled = set()
        for r, wi, axis in readers:
            # a weight shared only by readers of this same norm (same role) is scaled once, in place
            same_role = {key(rr) for rr, wj, ax in readers if rr.input[wj] == r.input[wi] and ax == axis}
            name, was = G.untie(r, wi, same_role)
            if was:
                untied.append(name)
            if name in scaled:
                continue
            scaled.add(name)
            shape = [1, 1]
            shape[axis] = width
            G.set_init(name, G.const(name).astype(np.float64) / scale.reshape(shape))
        summary.append({'norm': node_label(n), 'kind': nm['kind'], 'output': n.output[0], 'width': int(width),
                        'channels': [int(c) for c in ch],
                        'weights': [f'{node_label(r)}:{r.input[wi]}' + ('[:, c]' if axis == 1 else '[c, :]')
                                    for r, wi, axis in readers],
                        'untied': untied})
    return G.model, summary


# ------------------------------------------------------------------------------------------ checking in ORT
def make_inputs(model, data, count, tmp):
    inp = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inp) != 1:
        raise AdjustError(f'the check needs a model with one input (has {len(inp)}); use --no-check')
    i = inp[0]
    et = i.type.tensor_type.elem_type
    if et == TensorProto.INT64:
        toks = np.fromfile(data, dtype='<i8')
        seq = 128
        nwin = len(toks) // seq
        if nwin < 1:
            raise AdjustError(f'{data}: fewer than {seq} tokens')
        idx = np.linspace(0, nwin - 1, num=min(count, nwin)).astype(int)
        x = np.stack([toks[w * seq:(w + 1) * seq] for w in idx]).astype(np.int64)
    elif et == TensorProto.FLOAT:
        m = re.search(r'_(\d+(?:x\d+)*)_f32\.(bin|raw)$', os.path.basename(data))
        if data.endswith('.npy'):
            x = np.load(data).astype(np.float32)
        elif m:
            shape = [int(s) for s in m.group(1).split('x')]
            x = np.fromfile(data, dtype='<f4').reshape(shape)
        else:
            raise AdjustError(f'{data}: expected .npy or a zoo file named like NAME_NxCxHxW_f32.bin')
        x = x[:count]
    else:
        raise AdjustError(f'input {i.name}: element type {et} not supported by the check')
    f = os.path.join(tmp, 'input.npy')
    np.save(f, x)
    return i.name, f, x.shape


def with_outputs(model, names, path):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    onnx.save(m, path)


def ort_run(model_path, in_name, in_file, out_dir, threads):
    cmd = ['node', ORT_RUN, 'run', model_path, '-o', out_dir, '--input', f'{in_name}={in_file}', '--opt', 'basic']
    if threads:
        cmd += ['--threads', str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f'ONNX Runtime failed on {model_path} (exit {p.returncode}): {p.stderr.strip()}')
    man = json.load(open(os.path.join(out_dir, 'manifest.json')))
    return {o['name']: np.load(os.path.join(out_dir, o['file'])) for o in man['outputs'] if 'file' in o}


def outlier_ratio(a):
    a = np.abs(a.reshape(-1, a.shape[-1]).astype(np.float64))
    cmax = a.max(axis=0)
    return float(cmax.max() / max(cmax.mean(), 1e-30))


# ------------------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog='Example: scripts/make-outlier-copy.py '
                                 '../shared/zoo/llama-jargon.onnx -o /tmp/llama-jargon.outlier.onnx '
                                 '--data ../shared/zoo/llama-jargon.val.i64',
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('model')
    ap.add_argument('-o', '--output', required=True)
    ap.add_argument('--channels', type=int, default=3, help='outlier channels per norm (default 3)')
    ap.add_argument('--factor', type=float, default=40.0, help='outlier factor F (default 40)')
    ap.add_argument('--seed', type=int, default=0, help='seed for the channel choice (default 0)')
    ap.add_argument('--data', help='check inputs: NAME.val.i64 tokens (windows of 128) or a float file '
                    '(*_NxCxHxW_f32.bin / .npy); default: guessed next to the model (zoo names)')
    ap.add_argument('--samples', type=int, default=None, help='check samples (default 4 windows / 64 images)')
    ap.add_argument('--tol', type=float, default=1e-4, help='max |ref-copy| / max|ref| allowed (default 1e-4)')
    ap.add_argument('--threads', type=int, default=1, help='ONNX Runtime threads for the check (default 1)')
    ap.add_argument('--no-check', action='store_true', help='skip the ONNX Runtime check (not recommended)')
    ap.add_argument('--json', help='write the summary (channels, weights, check figures) to this file')
    ap.add_argument('-q', '--quiet', action='store_true')
    a = ap.parse_args()
    log = (lambda s: None) if a.quiet else (lambda s: print(s, file=sys.stderr))

    if a.channels < 1 or not (a.factor > 0) or a.factor == 1.0:
        die(1, '--channels must be >= 1 and --factor positive and != 1')
    if os.path.abspath(a.output) == os.path.abspath(a.model):
        die(1, 'the output must differ from the input model')
    try:
        src = onnx.load(a.model)
    except Exception as e:
        die(2, f'cannot read {a.model}: {e}')
    ref = onnx.ModelProto()
    ref.CopyFrom(src)
    try:
        out, summary = plant(src, a.channels, a.factor, a.seed, log)
    except AdjustError as e:
        die(2, f'{a.model}: {e}')
    # shape inference only helped to follow readers: drop its value_info so the copy is the original plus new weights
    del out.graph.value_info[:]
    for v in ref.graph.value_info:
        out.graph.value_info.append(v)
    meta = out.metadata_props.add()
    meta.key, meta.value = 'outlier_copy', json.dumps({'source': os.path.basename(a.model), 'channels': a.channels,
                                                        'factor': a.factor, 'seed': a.seed})
    report = {'model': a.model, 'output': a.output, 'channels': a.channels, 'factor': a.factor, 'seed': a.seed,
              'norms': summary}
    for s in summary:
        log(f"  {s['kind']:18s} {s['norm']}: channels {s['channels']} x{a.factor:g}; "
            f"{len(s['weights'])} weight(s) rescaled" + (f"; untied {s['untied']}" if s['untied'] else ''))

    out_dir = os.path.dirname(os.path.abspath(a.output))
    if not os.path.isdir(out_dir):
        die(4, f'output folder {out_dir} does not exist')
    tmp = tempfile.mkdtemp(prefix='outlier-check-')
    try:
        staged = os.path.join(out_dir, f'.{os.path.basename(a.output)}.tmp{os.getpid()}')
        onnx.save(out, staged)
        if not a.no_check:
            data = a.data or guess_data(a.model, ref)
            if data is None:
                die(1, 'no --data given and none found next to the model; give --data or --no-check')
            is_tokens = data.endswith('.i64')
            count = a.samples or (4 if is_tokens else 64)
            in_name, in_file, in_shape = make_inputs(ref, data, count, tmp)
            norm_outs = [s['output'] for s in summary]
            ra, rb = os.path.join(tmp, 'ref.onnx'), os.path.join(tmp, 'copy.onnx')
            with_outputs(ref, norm_outs, ra)
            with_outputs(out, norm_outs, rb)
            ya = ort_run(a.model, in_name, in_file, os.path.join(tmp, 'a'), a.threads)
            yb = ort_run(staged, in_name, in_file, os.path.join(tmp, 'b'), a.threads)
            pa = ort_run(ra, in_name, in_file, os.path.join(tmp, 'pa'), a.threads)
            pb = ort_run(rb, in_name, in_file, os.path.join(tmp, 'pb'), a.threads)
            check, ok = [], True
            for name in ya:
                A, B = ya[name].astype(np.float64), yb[name].astype(np.float64)
                scale = float(np.abs(A).max()) or 1.0
                rel = float(np.abs(A - B).max()) / scale
                good = bool(np.isfinite(B).all() and rel <= a.tol)
                ok &= good
                check.append({'output': name, 'shape': list(A.shape), 'max_abs': float(np.abs(A - B).max()),
                              'scale': scale, 'max_rel': rel, 'ok': good})
                print(f'check {name} {list(A.shape)} on {in_shape[0]} real input(s) from {os.path.basename(data)}: '
                      f'max|ref-copy| = {check[-1]["max_abs"]:.3g}, max|ref| = {scale:.3g}, '
                      f'relative {rel:.3g} (tol {a.tol:g}) {"ok" if good else "FAILED"}')
            print(f'{"norm":45s} {"ratio before":>12s} {"after":>9s}   (max_c absmax_c / mean_c absmax_c)')
            for s in summary:
                rb_, ra_ = outlier_ratio(pa[s['output']]), outlier_ratio(pb[s['output']])
                s['ratio_before'], s['ratio_after'] = rb_, ra_
                print(f'{s["norm"]:45s} {rb_:12.2f} {ra_:9.2f}')
            report['check'] = {'data': data, 'samples': int(in_shape[0]), 'outputs': check, 'ok': ok}
            if not ok:
                os.unlink(staged)
                if a.json:
                    json.dump(report, open(a.json, 'w'), indent=1)
                die(3, f'the copy is not equivalent to {a.model} (see above); nothing written')
        os.replace(staged, a.output)
        if a.json:
            json.dump(report, open(a.json, 'w'), indent=1)
        print(f'wrote {a.output} ({len(summary)} norms, {a.channels} channels each, x{a.factor:g})')
    except (RuntimeError, AdjustError, OSError, ValueError) as e:
        if os.path.exists(staged):
            os.unlink(staged)
        die(2, str(e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def guess_data(model_path, model):
    d = os.path.dirname(os.path.abspath(model_path))
    base = os.path.basename(model_path)
    base = base[:-5] if base.endswith('.onnx') else base
    cands = [os.path.join(d, f'{base}.val.i64'), os.path.join(d, 'test_x_1000x1x20x20_f32.bin')]
    inp = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    want_tokens = bool(inp) and inp[0].type.tensor_type.elem_type == TensorProto.INT64
    for c in cands:
        if os.path.exists(c) and c.endswith('.i64') == want_tokens:
            return c
    return None


if __name__ == '__main__':
    main()
