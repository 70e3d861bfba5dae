// Loading a model with its inline weights used in place (formats/onnx/raw_data_scan): the same model
// as protobuf's own parse, on every model at hand, with the large weights' bytes inside the file's
// mapping rather than copied; and unaligned views (tensor.h) that hand out aligned copies.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "formats/onnx/onnx_io.h"
#include "formats/onnx/wire_splice.h"
#include "lib/ir/tensor.h"
#include "support/skip.h"
#include "support/test_paths.h"

using namespace ptq;

namespace {

void writeAll(const std::string& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// [start, end) of every mapping of `path` in this process (from /proc/self/maps).
std::vector<std::pair<uintptr_t, uintptr_t>> mappingsOf(const std::string& path) {
  char real[PATH_MAX];
  REQUIRE(::realpath(path.c_str(), real));
  std::vector<std::pair<uintptr_t, uintptr_t>> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::string range, perms, offset, dev, inode, file;
    in >> range >> perms >> offset >> dev >> inode >> file;
    if (file != real) continue;
    const auto dash = range.find('-');
    out.emplace_back(std::stoull(range.substr(0, dash), nullptr, 16), std::stoull(range.substr(dash + 1), nullptr, 16));
  }
  return out;
}

bool inside(const void* p, size_t n, const std::vector<std::pair<uintptr_t, uintptr_t>>& maps) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  for (const auto& [b, e] : maps)
    if (a >= b && a + n <= e) return true;
  return false;
}

std::vector<std::string> modelsAtHand() {
  std::vector<std::string> out{std::string(PTQ_SOURCE_DIR) + "/tests/data/digits_cnn.onnx"};
  auto scan = [&](const std::string& dir, bool nested, size_t most) {
    DIR* d = opendir(dir.c_str());
    if (!d) return;
    size_t n = 0;
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      const std::string p = nested ? dir + "/" + name + "/model.onnx" : dir + "/" + name;
      if (p.size() > 5 && p.substr(p.size() - 5) == ".onnx" && test::fileExists(p) && n++ < most) out.push_back(p);
    }
    closedir(d);
  };
  if (!test::zooDir().empty()) scan(test::zooDir(), false, 100);
  scan("/usr/share/libonnx-testdata/data/node", true, 400);  // ONNX's node-test models (Debian libonnx-testdata)
  for (const char* ocr : {"ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"})
    if (!test::ocrModel(ocr).empty()) out.push_back(test::ocrModel(ocr));
  return out;
}

onnx_io::LoadOptions streamed() {
  onnx_io::LoadOptions o;
  o.mmap_external_data = false;  // no mapping: protobuf parses the whole file from a stream
  return o;
}

}  // namespace

TEST_CASE("an unaligned view hands out an aligned copy, shared, dropped and made again on demand", "[tensor]") {
  std::vector<float> values(1000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.25f - 7.f;
  std::vector<char> buf(values.size() * 4 + 8);
  char* unaligned = buf.data() + 1 + (reinterpret_cast<uintptr_t>(buf.data() + 1) % 4 == 0);  // never 4-aligned
  REQUIRE(reinterpret_cast<uintptr_t>(unaligned) % 4 != 0);
  std::memcpy(unaligned, values.data(), values.size() * 4);
  const ir::Tensor t = ir::Tensor::view(ir::DType::kFloat32, {10, 100}, unaligned, values.size() * 4, nullptr);
  CHECK(t.bytes() == unaligned);
  const float* a = t.data<float>();
  CHECK(reinterpret_cast<uintptr_t>(a) % alignof(float) == 0);
  CHECK(static_cast<const void*>(a) != unaligned);
  CHECK(std::memcmp(a, values.data(), values.size() * 4) == 0);
  CHECK(t.data() == a);  // made once

  // Every thread gets the one copy.
  const ir::Tensor shared = t.reshaped({1000});
  std::vector<const void*> seen(8);
  t.releaseMemory();
  std::vector<std::thread> threads;
  for (size_t i = 0; i < seen.size(); ++i) threads.emplace_back([&, i] { seen[i] = shared.data(); });
  for (auto& th : threads) th.join();
  for (const void* p : seen) CHECK(p == seen[0]);
  CHECK(std::memcmp(seen[0], values.data(), values.size() * 4) == 0);
  CHECK(t.data() == seen[0]);  // a copy of the Tensor shares the aligned copy

  // mutableData takes an owned copy; the source bytes stay as they were.
  ir::Tensor w = t;
  w.mutableData<float>()[3] = 42.f;
  CHECK(w.data<float>()[3] == 42.f);
  CHECK(t.data<float>()[3] == values[3]);
  CHECK(!w.isView());
  CHECK(t.sameAs(ir::Tensor::fromFloats({10, 100}, values)));

  // An aligned view is used in place.
  const ir::Tensor in_place = ir::Tensor::view(ir::DType::kFloat32, {1000}, values.data(), values.size() * 4, nullptr);
  CHECK(in_place.data() == values.data());
  // int8 and int4 need no alignment.
  const ir::Tensor bytes = ir::Tensor::view(ir::DType::kInt8, {16}, unaligned, 16, nullptr);
  CHECK(bytes.data() == unaligned);
}

TEST_CASE("models load in place exactly as protobuf parses them, large weights inside the file's mapping",
          "[onnx_io][zoo]") {
  const std::vector<std::string> models = modelsAtHand();
  INFO(models.size() << " models");
  size_t viewed = 0, unaligned = 0;
  for (const std::string& path : models) {
    INFO(path);
    const ir::Model in_place = onnx_io::loadModel(path);
    const ir::Model parsed = onnx_io::loadModel(path, streamed());
    REQUIRE(onnx_io::serializeModel(in_place) == onnx_io::serializeModel(parsed));
    const auto maps = mappingsOf(path);
    for (const ir::Value* v : in_place.graph->initializers()) {
      const ir::Tensor& t = v->initializer;
      if (t.dtype() == ir::DType::kString || t.nbytes() < 4096 || v->from_constant_node || v->external_data) continue;
      INFO(v->name());
      CHECK(t.isView());
      CHECK(inside(t.bytes(), t.nbytes(), maps));  // not copied on load
      ++viewed;
      if (t.data() != t.bytes()) ++unaligned;
    }
  }
  INFO(viewed << " weights viewed in place, " << unaligned << " of them unaligned");
  CHECK(viewed > 0);
  if (!test::zooDir().empty()) CHECK(unaligned > 0);  // zoo files have unaligned raw data
}

TEST_CASE("files the in-place parse does not take apart still load as protobuf parses them", "[onnx_io]") {
  const std::string dir = test::tempDir("inplace-fallback");
  ir::Model big = onnx_io::parseModelText(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4, 2048] x) => (float[4, 2048] y)
    <float[1] b = {0.0}> { y = Add(x, b) })");
  std::vector<float> bias(2048);
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = static_cast<float>(i);
  big.graph->findValue("b")->initializer = ir::Tensor::fromFloats({2048}, bias);
  const std::string base = onnx_io::serializeModel(big);
  const std::vector<onnx_io::wire::Field> top = onnx_io::wire::fields(base);

  auto check = [&](const std::string& bytes, const std::string& name) {
    INFO(name);
    const std::string p = dir + "/" + name + ".onnx";
    writeAll(p, bytes);
    const ir::Model a = onnx_io::loadModel(p);
    const ir::Model b = onnx_io::loadModel(p, streamed());
    CHECK(onnx_io::serializeModel(a) == onnx_io::serializeModel(b));
    return onnx_io::serializeModel(a);
  };
  CHECK(check(base, "plain") == base);

  // A second graph field: protobuf merges it into the first (here: one more initializer).
  std::string graph2;
  {
    ir::Model extra = onnx_io::parseModelText(R"(
      <ir_version: 8, opset_import: ["" : 17]>
      g (float[1] u) => (float[1] v) <float[1] c = {3.0}> { v = Add(u, c) })");
    const std::string s = onnx_io::serializeModel(extra);
    for (const auto& f : onnx_io::wire::fields(s))
      if (f.number == 7) graph2 = s.substr(f.begin, f.end - f.begin);
  }
  REQUIRE(!graph2.empty());
  (void)check(base + graph2, "two-graph-fields");

  // An initializer with raw_data twice: the last one wins in protobuf.
  std::string graph_bytes, init_bytes;
  for (const auto& f : top)
    if (f.number == 7) graph_bytes = base.substr(f.payload, f.end - f.payload);
  std::string rebuilt_graph;
  for (const auto& f : onnx_io::wire::fields(graph_bytes)) {
    if (f.number != 5) {
      rebuilt_graph += graph_bytes.substr(f.begin, f.end - f.begin);
      continue;
    }
    std::string tensor = graph_bytes.substr(f.payload, f.end - f.payload);
    std::string other(2048 * 4, '\0');
    for (size_t i = 0; i < 2048; ++i) other[i * 4 + 3] = 0x40;  // 2.0f
    onnx_io::wire::appendVarint(tensor, onnx_io::wire::lengthTag(9));
    onnx_io::wire::appendVarint(tensor, other.size());
    tensor += other;
    onnx_io::wire::appendVarint(rebuilt_graph, onnx_io::wire::lengthTag(5));
    onnx_io::wire::appendVarint(rebuilt_graph, tensor.size());
    rebuilt_graph += tensor;
  }
  std::string twice;
  for (const auto& f : top) {
    if (f.number != 7) {
      twice += base.substr(f.begin, f.end - f.begin);
      continue;
    }
    onnx_io::wire::appendVarint(twice, onnx_io::wire::lengthTag(7));
    onnx_io::wire::appendVarint(twice, rebuilt_graph.size());
    twice += rebuilt_graph;
  }
  (void)check(twice, "raw-data-twice");
  const ir::Model t = onnx_io::loadModel(dir + "/raw-data-twice.onnx");
  CHECK(t.graph->findValue("b")->initializer.data<float>()[5] == 2.f);

  // Raw data of the wrong length for the dims (2048 floats, dims patched to [2047]): the same error
  // whether the raw data stayed in the file (in place) or went through protobuf.
  {
    std::string bad = base;
    const std::string dims2048("\x08\x80\x10", 3), dims2047("\x08\xff\x0f", 3);
    const size_t at = bad.find(dims2048);
    REQUIRE(at != std::string::npos);
    bad.replace(at, 3, dims2047);
    const std::string p = dir + "/short-dims.onnx";
    writeAll(p, bad);
    const std::string want = "has 8192 bytes of raw data but float32[2047] needs 8188";
    CHECK_THROWS_WITH(onnx_io::loadModel(p), Catch::Contains(want));
    CHECK_THROWS_WITH(onnx_io::loadModel(p, streamed()), Catch::Contains(want));
  }

  // Truncated: the same error either way.
  for (size_t cut : {base.size() - 1, base.size() / 2, size_t{3}}) {
    const std::string p = dir + "/cut.onnx";
    writeAll(p, base.substr(0, cut));
    CHECK_THROWS_WITH(onnx_io::loadModel(p), Catch::Contains("not a valid ONNX model"));
  }
}
