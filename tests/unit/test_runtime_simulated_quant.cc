// SessionOptions::simulate_quantization: annotated weights and activations must run bit for bit like
// the same model with explicit DequantizeLinear / QuantizeLinear nodes written into the graph (the
// reference graphs below are built by hand and run without the option).
#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "formats/onnx/onnx_io.h"
#include "lib/runtime/session.h"
#include "lib/runtime/simulate_quant.h"
#include "lib/util/error.h"

namespace {
using ptq::ir::DType;
using ptq::ir::Tensor;
using ptq::runtime::Session;
using ptq::runtime::SessionOptions;
using QW = ptq::ir::QuantizedWeight;

// The text format wants every initializer spelled out; "{0*N}" stands for N zeros (the data is set
// afterwards with setInit).
ptq::ir::Model parse(std::string text) {
  for (size_t p; (p = text.find("{0*")) != std::string::npos;) {
    const size_t e = text.find('}', p);
    const int n = std::stoi(text.substr(p + 3, e - p - 3));
    std::string zeros;
    for (int i = 0; i < n; ++i) zeros += i ? ", 0" : "0";
    text.replace(p, e - p + 1, "{" + zeros + "}");
  }
  return ptq::onnx_io::parseModelText(text);
}

Tensor randomFloats(ptq::ir::Shape shape, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(ptq::ir::shapeNumel(shape)));
  for (float& x : v) x = d(rng);
  return Tensor::fromFloats(shape, v);
}

// Integer tensor of `dtype` (int8, uint8, int32) with values uniform in [lo, hi].
Tensor randomInts(DType dtype, ptq::ir::Shape shape, uint32_t seed, int lo, int hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  Tensor t(dtype, shape);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const int v = d(rng);
    if (dtype == DType::kInt8) t.mutableData<int8_t>()[i] = static_cast<int8_t>(v);
    else if (dtype == DType::kUInt8) t.mutableData<uint8_t>()[i] = static_cast<uint8_t>(v);
    else t.mutableData<int32_t>()[i] = v;
  }
  return t;
}

Tensor scalar(DType dtype, int v) {
  Tensor t(dtype, {});
  std::memset(t.mutableData(), 0, t.nbytes());
  if (dtype == DType::kInt4 || dtype == DType::kUInt4) t.mutableData<uint8_t>()[0] = static_cast<uint8_t>(v & 0xf);
  else if (dtype == DType::kInt8) t.mutableData<int8_t>()[0] = static_cast<int8_t>(v);
  else if (dtype == DType::kUInt8) t.mutableData<uint8_t>()[0] = static_cast<uint8_t>(v);
  else if (dtype == DType::kInt16) t.mutableData<int16_t>()[0] = static_cast<int16_t>(v);
  else t.mutableData<uint16_t>()[0] = static_cast<uint16_t>(v);
  return t;
}

bool sameBits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

void setInit(ptq::ir::Graph& g, const std::string& name, Tensor t) {
  ptq::ir::Value* v = g.findValue(name);
  REQUIRE(v);
  REQUIRE(v->isConstant());
  v->initializer = std::move(t);
}

std::shared_ptr<QW> weightQuant(QW::Granularity gran, int64_t axis, Tensor codes, Tensor scales, Tensor zps = {},
                                int64_t block = 0) {
  auto q = std::make_shared<QW>();
  q->granularity = gran;
  q->axis = axis;
  q->block_size = block;
  q->codes = std::move(codes);
  q->scales = std::move(scales);
  q->zero_points = std::move(zps);
  q->bits = q->codes.dtype() == DType::kInt32 ? 32 : 8;
  q->is_signed = q->codes.dtype() != DType::kUInt8;
  q->symmetric = q->zero_points.empty();
  return q;
}

std::shared_ptr<ptq::ir::ActivationQuant> actQuant(DType dtype, float scale, int zp) {
  auto a = std::make_shared<ptq::ir::ActivationQuant>();
  a->dtype = dtype;
  a->scale = Tensor::fromFloats({}, {scale});
  a->zero_point = scalar(dtype, zp);
  return a;
}

SessionOptions simulate() {
  SessionOptions o;
  o.simulate_quantization = true;
  return o;
}
}  // namespace

TEST_CASE("simulated weights: per-tensor, per-channel with zero points, blocked int4-range, int32 bias", "[runtime]") {
  // float model: y = Conv(x, w) + b -> flattened -> MatMul(., m1) -> MatMul(., m2)
  const char* float_text = R"(<ir_version: 8, opset_import: ["" : 21]>
      g (float[2,2,4,4] x) => (float[2,3] y)
      <float[4,2,3,3] w = {0*72}, float[4] b = {0*4}, float[16,5] m1 = {0*80}, float[5,3] m2 = {0*15}, int64[2] shp = {2, 16}> {
        c = Conv(x, w, b)  f = Reshape(c, shp)  h = MatMul(f, m1)  y = MatMul(h, m2) })";
  // The same weights as explicit DequantizeLinear nodes; m2 [5,3] is blocked along axis 0 (block 2 -> scales [3,3]).
  const std::string ref = R"(<ir_version: 8, opset_import: ["" : 21]>
      g (float[2,2,4,4] x) => (float[2,3] y)
      <uint8[4,2,3,3] wq = {0*72}, float[4] ws = {0*4}, uint8[4] wz = {0*4}, int32[4] bq = {0*4}, float[4] bs = {0*4},
       int8[16,5] m1q = {0*80}, float m1s = {0}, int8[5,3] m2q = {0*15}, float[3,3] m2s = {0*9}, int8[3,3] m2z = {0*9},
       int64[2] shp = {2, 16}> {
        w = DequantizeLinear <axis = 0> (wq, ws, wz)
        b = DequantizeLinear <axis = 0> (bq, bs)
        m1 = DequantizeLinear(m1q, m1s)
        m2 = DequantizeLinear <axis = 0, block_size = 2> (m2q, m2s, m2z)
        c = Conv(x, w, b)  f = Reshape(c, shp)  h = MatMul(f, m1)  y = MatMul(h, m2) })";
  const Tensor wq = randomInts(DType::kUInt8, {4, 2, 3, 3}, 1, 0, 255), ws = randomFloats({4}, 2, 0.001f, 0.02f);
  const Tensor wz = randomInts(DType::kUInt8, {4}, 3, 100, 150);
  const Tensor bq = randomInts(DType::kInt32, {4}, 4, -100000, 100000), bs = randomFloats({4}, 5, 1e-6f, 1e-5f);
  const Tensor m1q = randomInts(DType::kInt8, {16, 5}, 6, -128, 127), m1s = Tensor::fromFloats({}, {0.0123f});
  const Tensor m2q = randomInts(DType::kInt8, {5, 3}, 7, -8, 7), m2s = randomFloats({3, 3}, 8, 0.05f, 0.2f);
  const Tensor m2z = randomInts(DType::kInt8, {3, 3}, 9, -2, 2);

  auto fm = parse(float_text);
  auto& g = *fm.graph;
  // Float weights: anything; the simulation must replace them.
  setInit(g, "w", randomFloats({4, 2, 3, 3}, 10));
  setInit(g, "b", randomFloats({4}, 11));
  setInit(g, "m1", randomFloats({16, 5}, 12));
  setInit(g, "m2", randomFloats({5, 3}, 13));
  g.findValue("w")->quant = weightQuant(QW::Granularity::kChannel, 0, wq, ws, wz);
  g.findValue("b")->quant = weightQuant(QW::Granularity::kChannel, 0, bq, bs);
  g.findValue("m1")->quant = weightQuant(QW::Granularity::kTensor, 0, m1q, m1s);
  g.findValue("m2")->quant = weightQuant(QW::Granularity::kGroup, 0, m2q, m2s, m2z, 2);

  auto rm = parse(ref);
  for (auto& [n, t] : std::vector<std::pair<std::string, Tensor>>{
           {"wq", wq}, {"ws", ws}, {"wz", wz}, {"bq", bq}, {"bs", bs}, {"m1q", m1q}, {"m1s", m1s},
           {"m2q", m2q}, {"m2s", m2s}, {"m2z", m2z}})
    setInit(*rm.graph, n, t);

  const Tensor x = randomFloats({2, 2, 4, 4}, 14);
  Session sim(fm, simulate()), plain(fm), reference(rm);
  const Tensor ys = sim.run({{"x", x}}).at("y"), yr = reference.run({{"x", x}}).at("y");
  CHECK(sameBits(ys, yr));
  CHECK_FALSE(sameBits(plain.run({{"x", x}}).at("y"), yr));  // without the option the annotations are ignored
  // ... and the plain session computes the float model: same bits as one without annotations.
  auto bare = parse(float_text);
  for (const char* n : {"w", "b", "m1", "m2"}) setInit(*bare.graph, n, g.findValue(n)->initializer);
  Session bare_s(bare);
  CHECK(sameBits(plain.run({{"x", x}}).at("y"), bare_s.run({{"x", x}}).at("y")));
  // dequantizeWeight against the reference's DequantizeLinear of the blocked weight.
  CHECK(sameBits(ptq::runtime::dequantizeWeight(*g.findValue("m2")->quant), reference.run({{"x", x}}, {"m2"}).at("m2")));
}

TEST_CASE("simulated activations: readers see Q->DQ, outputs and value taps the float value", "[runtime]") {
  const char* float_text = R"(<ir_version: 8, opset_import: ["" : 21]>
      g (float[4,6] x) => (float[4,3] h, float[4,3] z, float[4,3] u)
      <float[6,3] m = {0*18}> { h = MatMul(x, m)  z = Relu(h)  r = Sigmoid(z)  u = Tanh(r) })";
  const char* ref_text = R"(<ir_version: 8, opset_import: ["" : 21]>
      g (float[4,6] x) => (float[4,3] h, float[4,3] z, float[4,3] u)
      <float[6,3] m = {0*18}, float xs = {0}, int8 xz = {0}, float hs = {0}, uint8 hz = {0}, float rs = {0}, uint8 rz = {0},
       float zs = {0}, uint16 zz = {0}> {
        xq = QuantizeLinear(x, xs, xz)  xd = DequantizeLinear(xq, xs, xz)
        h = MatMul(xd, m)
        hq = QuantizeLinear(h, hs, hz)  hd = DequantizeLinear(hq, hs, hz)
        z = Relu(hd)
        zq = QuantizeLinear(z, zs, zz)  zd = DequantizeLinear(zq, zs, zz)
        r = Sigmoid(zd)
        rq = QuantizeLinear(r, rs, rz)  rd = DequantizeLinear(rq, rs, rz)
        u = Tanh(rd) })";
  const Tensor m = randomFloats({6, 3}, 20, -2, 2);
  // x: int8 symmetric; h: uint8 asymmetric; z (an output, also read): uint16; r: uint4 (zero point packed).
  struct A { const char* value; DType dtype; float scale; int zp; };
  const std::vector<A> acts = {{"x", DType::kInt8, 0.02f, 0}, {"h", DType::kUInt8, 0.03f, 131},
                               {"z", DType::kUInt16, 0.0001f, 7}, {"r", DType::kUInt4, 0.07f, 3}};
  auto fm = parse(float_text);
  setInit(*fm.graph, "m", m);
  auto rm = parse(ref_text);
  setInit(*rm.graph, "m", m);
  for (const A& a : acts) {
    fm.graph->findValue(a.value)->act_quant = actQuant(a.dtype, a.scale, a.zp);
    const std::string n = a.value;
    setInit(*rm.graph, n + "s", Tensor::fromFloats({}, {a.scale}));
    setInit(*rm.graph, n + "z", scalar(a.dtype, a.zp));
  }
  const Tensor x = randomFloats({4, 6}, 21, -3, 3);
  Session sim(fm, simulate()), reference(rm), plain(fm);
  Tensor tapped_h, tapped_matmul_in;
  sim.tap("h", [&](const std::string&, const Tensor& t) { tapped_h = t; });
  fm.graph->nodes()[0]->name = "mm";
  sim.tapNodeInput("mm", 0, [&](const std::string&, const Tensor& t) { tapped_matmul_in = t; });
  for (int threads : {1, 2}) {
    SessionOptions o = simulate();
    o.threads = threads;
    Session s2(fm, o);
    const auto a = s2.run({{"x", x}});
    const auto b = reference.run({{"x", x}});
    for (const char* out : {"h", "z", "u"}) CHECK(sameBits(a.at(out), b.at(out)));
  }
  const auto r = sim.run({{"x", x}});
  const auto ref = reference.run({{"x", x}}, {"h", "xd"});
  CHECK(sameBits(tapped_h, ref.at("h")));           // the value's tap: float h
  CHECK(sameBits(tapped_matmul_in, ref.at("xd")));  // the reader's input tap: quantized x
  CHECK_FALSE(sameBits(x, ref.at("xd")));
  // Without the option: the float model.
  const auto p = plain.run({{"x", x}});
  CHECK_FALSE(sameBits(p.at("u"), r.at("u")));
  // Nodes counted once each; the four fake-quant steps are not node executions.
  CHECK(sim.nodeExecutions() == 4);
}

TEST_CASE("simulated quantization reaches If bodies, reloadConstant picks up a new annotation", "[runtime]") {
  const char* float_text = R"(<ir_version: 8, opset_import: ["" : 17]>
      g (bool c, float[2,4] x) => (float[2,3] y) <float[4,3] k = {0*12}> {
        y = If(c) <then_branch = t () => (float[2,3] ty) <float[4,3] wb = {0*12}> { ty = MatMul(x, wb) },
                   else_branch = e () => (float[2,3] ey) { ey = MatMul(x, k) }> })";
  const char* ref_text = R"(<ir_version: 8, opset_import: ["" : 17]>
      g (bool c, float[2,4] x) => (float[2,3] y) <int8[4,3] kq = {0*12}, float[3] ks = {0*3}> {
        k = DequantizeLinear <axis = 1> (kq, ks)
        y = If(c) <then_branch = t () => (float[2,3] ty) <int8[4,3] wq = {0*12}, float[3] wsc = {0*3}> {
                      wb = DequantizeLinear <axis = 1> (wq, wsc)  ty = MatMul(x, wb) },
                   else_branch = e () => (float[2,3] ey) { ey = MatMul(x, k) }> })";
  const Tensor wq = randomInts(DType::kInt8, {4, 3}, 30, -127, 127), wsc = randomFloats({3}, 31, 0.01f, 0.05f);
  const Tensor kq = randomInts(DType::kInt8, {4, 3}, 32, -127, 127), ks = randomFloats({3}, 33, 0.01f, 0.05f);
  auto fm = parse(float_text);
  ptq::ir::Graph& body = *fm.graph->nodes()[0]->attrs.at("then_branch").g;
  setInit(body, "wb", randomFloats({4, 3}, 34));
  setInit(*fm.graph, "k", randomFloats({4, 3}, 35));
  body.findValue("wb")->quant = weightQuant(QW::Granularity::kChannel, 1, wq, wsc);
  auto rm = parse(ref_text);
  ptq::ir::Graph& rbody = *rm.graph->nodes()[1]->attrs.at("then_branch").g;
  setInit(rbody, "wq", wq);
  setInit(rbody, "wsc", wsc);
  setInit(*rm.graph, "kq", kq);
  setInit(*rm.graph, "ks", ks);

  Tensor yes(DType::kBool, {}), no(DType::kBool, {});
  yes.mutableData<uint8_t>()[0] = 1;
  no.mutableData<uint8_t>()[0] = 0;
  const Tensor x = randomFloats({2, 4}, 36);
  Session sim(fm, simulate()), reference(rm);
  CHECK(sameBits(sim.run({{"c", yes}, {"x", x}}).at("y"), reference.run({{"c", yes}, {"x", x}}).at("y")));
  // k has no annotation yet: the else branch runs the float k.
  const Tensor before = sim.run({{"c", no}, {"x", x}}).at("y");
  CHECK_FALSE(sameBits(before, reference.run({{"c", no}, {"x", x}}).at("y")));
  fm.graph->findValue("k")->quant = weightQuant(QW::Granularity::kChannel, 1, kq, ks);
  sim.reloadConstant("k");
  CHECK(sameBits(sim.run({{"c", no}, {"x", x}}).at("y"), reference.run({{"c", no}, {"x", x}}).at("y")));
}

TEST_CASE("bad annotations are input errors naming the value", "[runtime]") {
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (int64[3] i, float[3] x) => (float[3] y) <float[3] w = {1, 2, 3}> { c = Cast <to = 1> (i)  t = Add(c, w)  y = Add(t, x) })");
  m.graph->findValue("i")->act_quant = actQuant(DType::kUInt8, 0.1f, 0);
  try {
    Session s(m, simulate());
    FAIL("planning should have failed");
  } catch (const ptq::Error& e) {
    CHECK(e.code() == ptq::ExitCode::kInput);
    CHECK_THAT(e.what(), Catch::Contains("'i'") && Catch::Contains("int64"));
  }
  m.graph->findValue("i")->act_quant.reset();
  m.graph->findValue("w")->quant =
      weightQuant(QW::Granularity::kChannel, 0, randomInts(DType::kInt8, {3}, 1, -5, 5), randomFloats({2}, 2));
  try {
    Session s(m, simulate());
    FAIL("planning should have failed");
  } catch (const ptq::Error& e) {
    CHECK(e.code() == ptq::ExitCode::kInput);
    CHECK_THAT(e.what(), Catch::Contains("'w'") && Catch::Contains("per-channel"));
  }
  Session plain(m);  // without the option nothing is read
  CHECK(plain.run({{"i", Tensor::fromInt64s({3}, {1, 1, 1})}, {"x", Tensor::fromFloats({3}, {0, 0, 0})}}).at("y").toFloats() ==
        std::vector<float>{2, 3, 4});
}
