// Session behaviour: planning errors, taps, requested outputs, feeds checking, buffer reuse,
// determinism across thread counts, subgraphs with outer-scope reads, opset-dependent forms.
#include <catch2/catch.hpp>

#include "support/random_tensor.h"
#include <cmath>
#include <random>

#include "formats/onnx/onnx_io.h"
#include "lib/runtime/registry.h"
#include "lib/runtime/session.h"
#include "lib/util/denormals.h"
#include "lib/util/error.h"
#include "support/skip.h"

namespace {
using ptq::ir::Tensor;
using ptq::runtime::Session;

ptq::ir::Model parse(const std::string& text) { return ptq::onnx_io::parseModelText(text); }

std::vector<float> floats(const Tensor& t) { return t.toFloats(); }

using ptq::test::randomTensor;

ptq::ExitCode codeOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ptq::Error& e) {
    return e.code();
  }
  return ptq::ExitCode::kOk;
}
}  // namespace

TEST_CASE("session runs a small graph and returns the graph outputs", "[runtime]") {
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[2,3] x, float[3] b) => (float[2,3] y) { t = Add(x, b)  y = Relu(t) })");
  Session s(m);
  auto out = s.run({{"x", Tensor::fromFloats({2, 3}, {1, -2, 3, -4, 5, -6})}, {"b", Tensor::fromFloats({3}, {1, 1, 1})}});
  REQUIRE(out.count("y") == 1);
  CHECK(out.at("y").shape() == ptq::ir::Shape{2, 3});
  CHECK(floats(out.at("y")) == std::vector<float>{2, 0, 4, 0, 6, 0});
}

TEST_CASE("an unsupported op is an input error at planning that names the node", "[runtime]") {
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[4] x) => (float[4] y) { t = Relu(x)  y = Hardmax_NotAnOp <axis = 0> (t) })");
  m.graph->nodes()[1]->name = "mystery";
  try {
    Session s(m);
    FAIL("planning should have failed");
  } catch (const ptq::Error& e) {
    CHECK(e.code() == ptq::ExitCode::kInput);
    CHECK_THAT(e.what(), Catch::Contains("node 'mystery' (Hardmax_NotAnOp)") && Catch::Contains("unsupported"));
  }
  const auto problems = ptq::runtime::unsupportedNodes(m);
  REQUIRE(problems.size() == 1);
  CHECK_THAT(problems[0], Catch::Contains("mystery"));
}

TEST_CASE("an unsupported dtype is rejected at planning, not at run time", "[runtime]") {
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (int64[1,1,4,4] x, int64[1,1,3,3] w) => (int64[1,1,2,2] y) { y = Conv(x, w) })");
  try {
    Session s(m);
    FAIL("planning should have failed");
  } catch (const ptq::Error& e) {
    CHECK(e.code() == ptq::ExitCode::kInput);
    CHECK_THAT(e.what(), Catch::Contains("(Conv)") && Catch::Contains("int64"));
  }
}

TEST_CASE("negative pads and zero strides or dilations are input errors at planning that name the node", "[runtime]") {
  // A negative pad would make the padded row of a stride-1 convolution shorter than the input row
  // copied into it; a zero stride would divide by zero.
  for (const char* attrs : {"pads = [0, -1, 0, 0]", "strides = [1, 0]", "dilations = [0, 1]"}) {
    INFO(attrs);
    auto m = parse(std::string(R"(<ir_version: 8, opset_import: ["" : 17]>
        g (float[1,1,4,4] x) => (float[1,1,4,4] y) {
          w = Constant <value = float[1,1,3,3] {1,1,1,1,1,1,1,1,1}> ()
          y = Conv <)") + attrs + R"(> (x, w) })");
    m.graph->nodes().back()->name = "bad_conv";
    try {
      Session s(m);
      FAIL("planning should have failed");
    } catch (const ptq::Error& e) {
      CHECK(e.code() == ptq::ExitCode::kInput);
      CHECK_THAT(e.what(), Catch::Contains("bad_conv"));
    }
  }
}

TEST_CASE("taps see intermediate values once per run without keeping them", "[runtime]") {
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[3] x) => (float[3] y) { a = Neg(x)  b = Relu(a)  y = Add(b, x) })");
  m.graph->nodes()[2]->name = "add";
  Session s(m);
  std::vector<float> seen_a, seen_add_in;
  int calls = 0;
  s.tap("a", [&](const std::string& name, const Tensor& t) {
    CHECK(name == "a");
    seen_a = t.toFloats();
    ++calls;
  });
  s.tapNodeInput("add", 0, [&](const std::string& name, const Tensor& t) {
    CHECK(name == "b");
    seen_add_in = t.toFloats();
  });
  auto out = s.run({{"x", Tensor::fromFloats({3}, {1, -2, 3})}});
  CHECK(calls == 1);
  CHECK(seen_a == std::vector<float>{-1, 2, -3});
  CHECK(seen_add_in == std::vector<float>{0, 2, 0});
  CHECK(floats(out.at("y")) == std::vector<float>{1, 0, 3});
  CHECK(codeOf([&] { s.tap("nope", [](const std::string&, const Tensor&) {}); }) == ptq::ExitCode::kUsage);
  CHECK(codeOf([&] { s.tapNodeInput("add", 7, [](const std::string&, const Tensor&) {}); }) == ptq::ExitCode::kUsage);
}

TEST_CASE("requested outputs may be any value, only needed nodes run", "[runtime]") {
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[2] x) => (float[2] y) { a = Mul(x, x)  y = Sqrt(a) })");
  Session s(m);
  auto out = s.run({{"x", Tensor::fromFloats({2}, {3, -4})}}, {"a"});
  REQUIRE(out.size() == 1);
  CHECK(floats(out.at("a")) == std::vector<float>{9, 16});
  CHECK(codeOf([&] { s.run({{"x", Tensor::fromFloats({2}, {1, 2})}}, {"zzz"}); }) == ptq::ExitCode::kUsage);
}

TEST_CASE("feeds are checked against the graph inputs", "[runtime]") {
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[N,3] x) => (float[N,3] y) { y = Relu(x) })");
  Session s(m);
  CHECK(codeOf([&] { s.run({}); }) == ptq::ExitCode::kUsage);                                         // missing
  CHECK(codeOf([&] { s.run({{"x", Tensor::fromFloats({2, 4}, std::vector<float>(8))}}); }) == ptq::ExitCode::kInput);  // shape
  CHECK(codeOf([&] { s.run({{"x", Tensor::fromInt64s({2, 3}, std::vector<int64_t>(6))}}); }) == ptq::ExitCode::kInput);  // dtype
  CHECK(codeOf([&] { s.run({{"q", Tensor::fromFloats({1}, {0})}}); }) == ptq::ExitCode::kUsage);     // unknown
  // float16 feeds for float32 inputs are converted
  Tensor h(ptq::ir::DType::kFloat16, {1, 3});
  auto* p = h.mutableData<uint16_t>();
  p[0] = ptq::ir::floatToHalf(-1.5f);
  p[1] = ptq::ir::floatToHalf(2.0f);
  p[2] = ptq::ir::floatToHalf(0.25f);
  CHECK(floats(s.run({{"x", h}}).at("y")) == std::vector<float>{0, 2, 0.25f});
}

TEST_CASE("activation memory is reused: a long chain needs about two live buffers", "[runtime]") {
  std::string body;
  for (int i = 0; i < 20; ++i) body += "t" + std::to_string(i + 1) + " = Sigmoid(t" + std::to_string(i) + ")\n";
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[256,1024] t0) => (float[256,1024] t20) {)" + body + "}");
  Session s(m);
  const Tensor x = randomTensor({256, 1024}, 1);
  s.run({{"t0", x}});
  s.run({{"t0", x}});
  const size_t one = 256 * 1024 * 4;
  CHECK(s.peakActivationBytes() <= 3 * one);
}

TEST_CASE("results are bit-identical at 1 and 2 threads", "[runtime]") {
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[4,96,200] x, float[200,300] w, float[300] b) => (float[4,96,300] y, float[4,96] r) {
        h = MatMul(x, w)  hb = Add(h, b)  s = Softmax<axis = -1>(hb)  e = Erf(s)  y = Mul(e, hb)
        r = ReduceSum<keepdims = 0>(y, axes) axes = Constant<value = int64[1] {-1}>() })");
  std::map<std::string, Tensor> feeds = {{"x", randomTensor({4, 96, 200}, 2)}, {"w", randomTensor({200, 300}, 3)},
                                         {"b", randomTensor({300}, 4)}};
  Session one(m, {1, {}}), two(m, {2, {}});
  auto a = one.run(feeds), b = two.run(feeds);
  CHECK(a.at("y").sameAs(b.at("y")));
  CHECK(a.at("r").sameAs(b.at("r")));
}

TEST_CASE("runs flush denormals on every worker and restore the caller's flags", "[runtime]") {
  if (ptq::kDenormalBits == 0) PTQ_SKIP("no flush-to-zero control on this architecture");
  // y = x * x = 1e-40 (a denormal result; FTZ makes it 0) and z = d * big = 3e-20 from a denormal
  // input d (DAZ reads it as 0). 2^20 elements of equal shapes: the elementwise kernel splits them
  // into 64 chunks, so both threads of the pool compute some.
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (float[1048576] x, float[1048576] d, float[1048576] big) => (float[1048576] y, float[1048576] z) {
        y = Mul(x, x)  z = Mul(d, big) })");
  const int64_t n = 1 << 20;
  std::map<std::string, Tensor> feeds = {{"x", Tensor::fromFloats({n}, std::vector<float>(n, 1e-20f))},
                                         {"d", Tensor::fromFloats({n}, std::vector<float>(n, 3e-40f))},
                                         {"big", Tensor::fromFloats({n}, std::vector<float>(n, 1e20f))}};
  const auto countZeros = [](const Tensor& t) {
    int64_t zeros = 0;
    for (float v : t.toFloats()) zeros += v == 0.0f;
    return zeros;
  };
  const unsigned before = ptq::denormalFlags();
  // First without flushing: the OpenMP pool's worker starts with the default (no flush) flags.
  ptq::runtime::SessionOptions no_flush;
  no_flush.threads = 2;
  no_flush.flush_denormals = false;
  Session keep(m, no_flush);
  auto kept = keep.run(feeds);
  CHECK(countZeros(kept.at("y")) == 0);
  CHECK(countZeros(kept.at("z")) == 0);
  CHECK(kept.at("y").toFloats()[0] == 1e-20f * 1e-20f);
  CHECK(kept.at("z").toFloats()[0] == 3e-40f * 1e20f);

  Session flush(m, {2, {}});
  auto flushed = flush.run(feeds);
  CHECK(countZeros(flushed.at("y")) == n);
  CHECK(countZeros(flushed.at("z")) == n);
  CHECK(ptq::denormalFlags() == before);
}

TEST_CASE("If and Loop bodies read outer-scope values", "[runtime]") {
  auto m = parse(R"(<ir_version: 8, opset_import: ["" : 17]>
      g (bool c, float[2] x, int64 n) => (float[2] y, float[2] z, float[N,2] scan) {
        k = Constant<value = float[2] {10, 20}>()
        y = If(c) <then_branch = t () => (float[2] ty) { ty = Add(x, k) },
                   else_branch = e () => (float[2] ey) { ey = Sub(x, k) }>
        cond0 = Constant<value = bool {1}>()
        z, scan = Loop(n, cond0, x) <body = b (int64 i, bool cin, float[2] acc) => (bool cout, float[2] acc2, float[2] out) {
            cout = Identity(cin)  acc2 = Add(acc, k)  out = Identity(acc2) }>
      })");
  Session s(m);
  Tensor c(ptq::ir::DType::kBool, {});
  c.mutableData<uint8_t>()[0] = 1;
  auto out = s.run({{"c", c}, {"x", Tensor::fromFloats({2}, {1, 2})}, {"n", Tensor::fromInt64s({}, {3})}});
  CHECK(floats(out.at("y")) == std::vector<float>{11, 22});
  CHECK(floats(out.at("z")) == std::vector<float>{31, 62});
  CHECK(out.at("scan").shape() == ptq::ir::Shape{3, 2});
  CHECK(floats(out.at("scan")) == std::vector<float>{11, 22, 21, 42, 31, 62});
}

TEST_CASE("opset decides attribute vs input forms", "[runtime]") {
  const Tensor x = Tensor::fromFloats({2, 2}, {1, 2, 3, 5});
  auto m13 = parse(R"(<ir_version: 8, opset_import: ["" : 13]>
      g (float[2,2] x) => (float[2,1] y) { y = ReduceMean<axes = [1]>(x) })");
  CHECK(floats(Session(m13).run({{"x", x}}).at("y")) == std::vector<float>{1.5f, 4});
  auto m18 = parse(R"(<ir_version: 8, opset_import: ["" : 18]>
      g (float[2,2] x) => (float[1,2] y) { a = Constant<value = int64[1] {0}>()  y = ReduceMean(x, a) })");
  CHECK(floats(Session(m18).run({{"x", x}}).at("y")) == std::vector<float>{2, 3.5f});
  auto m6 = parse(R"(<ir_version: 8, opset_import: ["" : 6]>
      g (float[2,2] x) => (float[2,2] y) { y = Clip<min = 1.5, max = 4.0>(x) })");
  CHECK(floats(Session(m6).run({{"x", x}}).at("y")) == std::vector<float>{1.5f, 2, 3, 4});
  auto m11 = parse(R"(<ir_version: 8, opset_import: ["" : 12]>
      g (float[2,2] x) => (float[2,2] y) { lo = Constant<value = float {2}>()  y = Clip(x, lo) })");
  CHECK(floats(Session(m11).run({{"x", x}}).at("y")) == std::vector<float>{2, 2, 3, 5});
  auto m11sm = parse(R"(<ir_version: 8, opset_import: ["" : 11]>
      g (float[1,2,2] x) => (float[1,2,2] y) { y = Softmax<axis = 1>(x) })");  // coerced to 2-D: one row of 4
  const auto sm = floats(Session(m11sm).run({{"x", x.reshaped({1, 2, 2})}}).at("y"));
  float sum = 0;
  for (float v : sm) sum += v;
  CHECK(sum == Approx(1.0f));
}

TEST_CASE("int4 block-wise DequantizeLinear and MatMulNBits compute the dequantized product", "[runtime]") {
  // W [K=32, N=2] in int4 blocks of 16 along K; codes q = (k % 7) - 3, scales per (block, n).
  const int64_t K = 32, N = 2;
  std::vector<int32_t> q(K * N);
  std::vector<uint8_t> packed((K * N + 1) / 2, 0);
  for (int64_t i = 0; i < K * N; ++i) {
    q[i] = static_cast<int32_t>((i % 7) - 3);
    packed[i / 2] |= static_cast<uint8_t>((q[i] & 0xf) << ((i % 2) * 4));
  }
  const std::vector<float> scales = {0.5f, 0.25f, 2.0f, 1.0f};  // [2 blocks, N]
  // libonnx 1.12's text parser predates int4: build the graph through the IR.
  ptq::ir::Graph g;
  auto* in_a = g.addInput("a", ptq::ir::DType::kFloat32, std::nullopt);
  auto* in_w = g.addInput("w", ptq::ir::DType::kInt4, std::nullopt);
  auto* in_s = g.addInput("s", ptq::ir::DType::kFloat32, std::nullopt);
  auto* dq = g.addNode("DequantizeLinear", {in_w, in_s}, {"wf"}, "dq");
  dq->attrs["axis"] = ptq::ir::Attribute::ofInt(0);
  dq->attrs["block_size"] = ptq::ir::Attribute::ofInt(16);
  auto* mm = g.addNode("MatMul", {in_a, dq->output(0)}, {"y"}, "mm");
  g.addOutput(mm->output(0));
  Session s(g, 21);
  std::vector<float> av(K);
  for (int64_t k = 0; k < K; ++k) av[k] = 0.1f * static_cast<float>(k);
  const Tensor a = Tensor::fromFloats({1, K}, av);
  const auto y = floats(s.run({{"a", a}, {"w", Tensor::fromBytes(ptq::ir::DType::kInt4, {K, N}, packed.data(), packed.size())},
                              {"s", Tensor::fromFloats({2, 2}, scales)}}).at("y"));
  for (int64_t n = 0; n < N; ++n) {
    double ref = 0;
    for (int64_t k = 0; k < K; ++k) ref += av[k] * q[k * N + n] * scales[(k / 16) * N + n];
    CHECK(y[n] == Approx(ref).epsilon(1e-5));
  }
  // The same weights as MatMulNBits: B [N, k_blocks, 8] uint8 codes with zero point 8, scales [N, k_blocks].
  std::vector<uint8_t> nb(N * 2 * 8, 0);
  std::vector<float> nscales(N * 2);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t b = k / 16, j = k % 16;
      nb[(n * 2 + b) * 8 + j / 2] |= static_cast<uint8_t>((q[k * N + n] + 8) << ((j % 2) * 4));
      nscales[n * 2 + b] = scales[b * N + n];
    }
  auto mn = parse(R"(<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
      g (float[1,32] a, uint8[2,2,8] b, float[4] s) => (float[1,2] y) {
        y = com.microsoft.MatMulNBits<K = 32, N = 2, bits = 4, block_size = 16>(a, b, s) })");
  Session sn(mn);
  const auto yn = floats(sn.run({{"a", a}, {"b", Tensor::fromBytes(ptq::ir::DType::kUInt8, {2, 2, 8}, nb.data(), nb.size())},
                                {"s", Tensor::fromFloats({4}, nscales)}}).at("y"));
  CHECK(yn[0] == Approx(y[0]).epsilon(1e-5));
  CHECK(yn[1] == Approx(y[1]).epsilon(1e-5));
}

TEST_CASE("the registry lists one kernel per (domain, op)", "[runtime]") {
  const auto& ops = ptq::runtime::registeredOps();
  CHECK(ops.size() > 120);
  CHECK(ptq::runtime::findKernelFactory("", "Conv") != nullptr);
  CHECK(ptq::runtime::findKernelFactory("ai.onnx", "MatMul") != nullptr);
  CHECK(ptq::runtime::findKernelFactory("com.microsoft", "MatMulNBits") != nullptr);
  CHECK(ptq::runtime::findKernelFactory("", "NoSuchOp") == nullptr);
}
