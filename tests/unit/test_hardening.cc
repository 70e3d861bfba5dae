// Hardening (issue 13): model files that cannot reach outside their folder, bounded allocation on
// hostile dims, .ptq header errors as input errors naming the key, NaN/Inf hygiene, denormal scales.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>
#include <onnx/onnx_pb.h>

#include "formats/onnx/onnx_io.h"
#include "formats/packed/ptq_file.h"
#include "lib/calib/npy.h"
#include "lib/ir/tensor.h"
#include "lib/quant/grid.h"
#include "lib/util/error.h"
#include "support/error_text.h"
#include "support/run_command.h"
#include "support/test_paths.h"
#include "tests/fuzz/harness.h"

using namespace ptq;

namespace {

void writeAll(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
}
std::string readAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// y = x + w, w float[4] (or whatever `init` makes of it).
std::string addModel(const std::function<void(onnx::TensorProto&)>& init) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(17);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name("g");
  auto io = [](onnx::ValueInfoProto* vi, const char* name) {
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    tt->mutable_shape()->add_dim()->set_dim_value(4);
  };
  io(g->add_input(), "x");
  io(g->add_output(), "y");
  onnx::NodeProto* n = g->add_node();
  n->set_op_type("Add");
  n->add_input("x");
  n->add_input("w");
  n->add_output("y");
  onnx::TensorProto* w = g->add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(4);
  init(*w);
  return m.SerializeAsString();
}

std::string externalAt(const std::string& location) {
  return addModel([&](onnx::TensorProto& w) {
    w.set_data_location(onnx::TensorProto::EXTERNAL);
    auto* e = w.add_external_data();
    e->set_key("location");
    e->set_value(location);
  });
}

std::string inputError(const std::string& path) {
  ExitCode code = ExitCode::kOk;
  const std::string msg = test::errorText([&] { onnx_io::loadModel(path); }, &code);
  CHECK(code == ExitCode::kInput);
  return msg;
}

}  // namespace

TEST_CASE("external data must stay inside the model's folder", "[hardening][onnx_io]") {
  const std::string root = test::tempDir("harden_escape");
  const std::string dir = root + "/models";
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  REQUIRE(::mkdir((dir + "/sub").c_str(), 0755) == 0);
  const std::string secret = "SECRET-BYTES-16B";  // 16 bytes = float[4]
  writeAll(root + "/secret.bin", secret);
  writeAll(dir + "/ok.bin", std::string(16, '\0'));
  writeAll(dir + "/sub/ok.bin", std::string(16, '\0'));

  SECTION("a relative location inside the folder (also in a subfolder) reads") {
    writeAll(dir + "/in.onnx", externalAt("ok.bin"));
    CHECK(onnx_io::loadModel(dir + "/in.onnx").graph->findValue("w")->initializer.nbytes() == 16);
    writeAll(dir + "/insub.onnx", externalAt("sub/ok.bin"));
    CHECK(onnx_io::loadModel(dir + "/insub.onnx").graph->findValue("w")->initializer.nbytes() == 16);
  }
  SECTION("an absolute location is refused") {
    writeAll(dir + "/abs.onnx", externalAt(root + "/secret.bin"));
    const std::string msg = inputError(dir + "/abs.onnx");
    CHECK_THAT(msg, Catch::Contains("abs.onnx") && Catch::Contains("'w'") && Catch::Contains("absolute"));
  }
  SECTION("a location with '..' is refused, even one that comes back inside") {
    for (const std::string loc : {"../secret.bin", "../../../../../../etc/passwd", "sub/../ok.bin", ".."}) {
      writeAll(dir + "/dotdot.onnx", externalAt(loc));
      const std::string msg = inputError(dir + "/dotdot.onnx");
      CHECK_THAT(msg, Catch::Contains("'..'") && Catch::Contains("'w'") && Catch::Contains(loc));
    }
  }
  SECTION("a symlink to a file outside the folder is refused") {
    REQUIRE(::symlink((root + "/secret.bin").c_str(), (dir + "/link.bin").c_str()) == 0);
    writeAll(dir + "/link.onnx", externalAt("link.bin"));
    const std::string msg = inputError(dir + "/link.onnx");
    CHECK_THAT(msg, Catch::Contains("symlink") && Catch::Contains("secret.bin") && Catch::Contains("'w'"));
  }
  SECTION("a symlinked folder leading outside is refused") {
    REQUIRE(::symlink(root.c_str(), (dir + "/up").c_str()) == 0);
    writeAll(dir + "/dirlink.onnx", externalAt("up/secret.bin"));
    CHECK_THAT(inputError(dir + "/dirlink.onnx"), Catch::Contains("outside the model's folder"));
  }
  SECTION("a symlink that stays inside the folder reads") {
    REQUIRE(::symlink("sub/ok.bin", (dir + "/inlink.bin").c_str()) == 0);
    writeAll(dir + "/inlink.onnx", externalAt("inlink.bin"));
    CHECK(onnx_io::loadModel(dir + "/inlink.onnx").graph->findValue("w")->initializer.nbytes() == 16);
  }
  SECTION("a FIFO is refused without blocking") {
    REQUIRE(::mkfifo((dir + "/fifo.bin").c_str(), 0644) == 0);
    writeAll(dir + "/fifo.onnx", externalAt("fifo.bin"));
    CHECK_THAT(inputError(dir + "/fifo.onnx"), Catch::Contains("not a regular file"));
  }
  SECTION("convert exits 2 and writes nothing: the secret never reaches an output") {
    writeAll(dir + "/dotdot.onnx", externalAt("../secret.bin"));
    const auto r = test::runCommand(test::toolPath() + " convert '" + dir + "/dotdot.onnx' -o '" + root + "/out.onnx'");
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.output, Catch::Contains("dotdot.onnx") && Catch::Contains("'..'"));
    CHECK_FALSE(test::fileExists(root + "/out.onnx"));
  }
}

TEST_CASE("hostile dims are refused before anything is allocated", "[hardening][onnx_io]") {
  const std::string dir = test::tempDir("harden_dims");
  SECTION("dims [2^32, 2^32]: the element count overflows") {
    writeAll(dir + "/overflow.onnx", addModel([](onnx::TensorProto& w) {
               w.clear_dims();
               w.add_dims(int64_t{1} << 32);
               w.add_dims(int64_t{1} << 32);
             }));
    const std::string msg = inputError(dir + "/overflow.onnx");
    CHECK_THAT(msg, Catch::Contains("'w'") && Catch::Contains("overflows"));
  }
  SECTION("dims [2^62, 4, 0]: refused although the product is 0") {
    writeAll(dir + "/zero.onnx", addModel([](onnx::TensorProto& w) {
               w.clear_dims();
               w.add_dims(int64_t{1} << 62);
               w.add_dims(4);
               w.add_dims(0);
             }));
    CHECK_THAT(inputError(dir + "/zero.onnx"), Catch::Contains("overflows"));
  }
  SECTION("dims [2^30] with no data: refused at once, without allocating 4 GiB") {
    const std::string bytes = addModel([](onnx::TensorProto& w) {
      w.clear_dims();
      w.add_dims(int64_t{1} << 30);
    });
    writeAll(dir + "/nodata.onnx", bytes);
    const auto t0 = std::chrono::steady_clock::now();
    const std::string msg = inputError(dir + "/nodata.onnx");
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK_THAT(msg, Catch::Contains("0 values for 1073741824 elements"));
    CHECK(s < 1.0);  // the old reader took 12.9 s and 4.2 GB zero-filling the tensor first
  }
  SECTION("external data offset/length that are not numbers, or beyond the file") {
    writeAll(dir + "/w.bin", std::string(16, '\0'));
    auto ext = [](const std::string& offset, const std::string& length) {
      return addModel([&](onnx::TensorProto& w) {
        w.set_data_location(onnx::TensorProto::EXTERNAL);
        auto add = [&](const char* k, const std::string& v) {
          auto* e = w.add_external_data();
          e->set_key(k);
          e->set_value(v);
        };
        add("location", "w.bin");
        add("offset", offset);
        add("length", length);
      });
    };
    writeAll(dir + "/bad_offset.onnx", ext("x12", "16"));
    CHECK_THAT(inputError(dir + "/bad_offset.onnx"), Catch::Contains("offset 'x12'"));
    writeAll(dir + "/huge_offset.onnx", ext("99999999999999999999", "16"));
    CHECK_THAT(inputError(dir + "/huge_offset.onnx"), Catch::Contains("offset"));
    writeAll(dir + "/past.onnx", ext("9223372036854775800", "16"));
    CHECK_THAT(inputError(dir + "/past.onnx"), Catch::Contains("past the end"));
    writeAll(dir + "/short.onnx", ext("8", "16"));
    CHECK_THAT(inputError(dir + "/short.onnx"), Catch::Contains("truncated"));
  }
}

TEST_CASE("checkedNumel refuses negative dims and products beyond the limit", "[hardening][ir]") {
  int64_t n = -1;
  CHECK(ir::checkedNumel({2, 3, 4}, &n));
  CHECK(n == 24);
  CHECK(ir::checkedNumel({}, &n));
  CHECK(n == 1);
  CHECK_FALSE(ir::checkedNumel({-1, 4}, &n));
  CHECK_FALSE(ir::checkedNumel({int64_t{1} << 32, int64_t{1} << 32}, &n));
  CHECK(ir::checkedNumel({ir::kMaxTensorElements}, &n));
  CHECK_FALSE(ir::checkedNumel({ir::kMaxTensorElements, 2}, &n));
  CHECK(ir::indexToString({2, 3, 4}, 23) == "[1, 2, 3]");
}

// ------------------------------------------------------------------------------------------------ .ptq

namespace {

// A small real .ptq file (the bundled digits CNN, 4-bit), made once per test run.
std::string packedDigits() {
  static const std::string path = [] {
    const std::string dir = test::tempDir("harden_ptq_src");
    const std::string out = dir + "/digits.ptq";
    const auto r = test::runCommand(test::toolPath() + " quantize '" + std::string(PTQ_SOURCE_DIR) +
                                    "/tests/data/digits_cnn.onnx' -c w4a16 -f packed -o '" + out + "' -q");
    return r.exit_code == 0 ? out : std::string();
  }();
  REQUIRE_FALSE(path.empty());
  return path;
}

// Replaces the JSON header of a .ptq image (data section kept at a 64-byte aligned start, so blob
// offsets stay right) and fixes the header checksum.
std::string withHeader(const std::string& image, const nlohmann::json& header) {
  uint64_t old_len;
  std::memcpy(&old_len, image.data() + 16, 8);
  const uint64_t old_start = (32 + old_len + 63) / 64 * 64;
  const std::string text = header.dump();
  const uint64_t len = text.size(), start = (32 + len + 63) / 64 * 64;
  std::string out = image.substr(0, 32) + text + std::string(start - 32 - len, '\0') + image.substr(old_start);
  std::memcpy(out.data() + 16, &len, 8);
  return fuzz::fixPackedChecksums(out);
}

struct ToolRun {
  int inspect = -1, unpack = -1;
  std::string inspect_out, unpack_out;
};

ToolRun inspectAndUnpack(const std::string& file, const std::string& dir) {
  ToolRun r;
  auto a = test::runCommand(test::toolPath() + " inspect '" + file + "'");
  r.inspect = a.exit_code;
  r.inspect_out = a.output;
  auto b = test::runCommand(test::toolPath() + " unpack '" + file + "' -o '" + dir + "/unpacked.onnx'");
  r.unpack = b.exit_code;
  r.unpack_out = b.output;
  return r;
}

}  // namespace

TEST_CASE(".ptq header: a missing key or wrong type is exit 2 naming the file and the key", "[hardening][packed]") {
  const std::string src = packedDigits();
  const std::string dir = test::tempDir("harden_ptq_header");
  const std::string image = readAll(src);
  uint64_t hl;
  std::memcpy(&hl, image.data() + 16, 8);
  const nlohmann::json header = nlohmann::json::parse(image.substr(32, hl));
  REQUIRE(header.at("quantized").size() > 0);

  struct Case {
    std::string key;  // what the messages must name
    std::function<void(nlohmann::json&)> damage;
    bool unpack_reads = true;   // unpack reads blobs, output_form, quantized, graph, activations
    bool inspect_reads = true;  // inspect reads blobs, provenance, output_form, graph.nodes, quantized
  };
  const std::vector<Case> cases = {
      {"blobs", [](nlohmann::json& h) { h.erase("blobs"); }},
      {"blobs[0].offset", [](nlohmann::json& h) { h["blobs"][0].erase("offset"); }},
      {"blobs[0].bytes", [](nlohmann::json& h) { h["blobs"][0].erase("bytes"); }},
      {"blobs[0].name", [](nlohmann::json& h) { h["blobs"][0].erase("name"); }},
      {"blobs[0].offset", [](nlohmann::json& h) { h["blobs"][0]["offset"] = "zero"; }},
      {"blobs", [](nlohmann::json& h) { h["blobs"] = 7; }},
      {"provenance", [](nlohmann::json& h) { h.erase("provenance"); }, false, true},
      {"provenance", [](nlohmann::json& h) { h["provenance"] = 1.5; }, false, true},
      {"graph", [](nlohmann::json& h) { h.erase("graph"); }},
      {"graph.blob", [](nlohmann::json& h) { h["graph"]["blob"] = nullptr; }, true, false},
      {"quantized", [](nlohmann::json& h) { h.erase("quantized"); }},
      {"quantized", [](nlohmann::json& h) { h["quantized"] = 3; }},
      {"quantized[0]", [](nlohmann::json& h) { h["quantized"][0] = 12; }},
      {"quantized[0].bits", [](nlohmann::json& h) { h["quantized"][0]["bits"] = "4"; }},
      {"quantized[0].codes", [](nlohmann::json& h) { h["quantized"][0]["codes"] = 100000; }},
      {"quantized[0].name", [](nlohmann::json& h) { h["quantized"][0].erase("name"); }},
      {"output_form", [](nlohmann::json& h) { h.erase("output_form"); }},
  };
  for (const Case& c : cases) {
    nlohmann::json h = header;
    c.damage(h);
    const std::string file = dir + "/bad.ptq";
    writeAll(file, withHeader(image, h));
    std::remove((dir + "/unpacked.onnx").c_str());
    const ToolRun r = inspectAndUnpack(file, dir);
    INFO("damaged key " << c.key << "\ninspect: " << r.inspect_out << "\nunpack: " << r.unpack_out);
    CHECK(r.inspect != 5);
    CHECK(r.unpack != 5);
    if (c.unpack_reads) {
      CHECK(r.unpack == 2);
      CHECK_THAT(r.unpack_out, Catch::Contains("bad.ptq") && Catch::Contains(c.key));
      CHECK_FALSE(test::fileExists(dir + "/unpacked.onnx"));
    }
    if (c.inspect_reads) {
      CHECK(r.inspect == 2);
      CHECK_THAT(r.inspect_out, Catch::Contains("bad.ptq") && Catch::Contains(c.key));
    }
  }
}

TEST_CASE(".ptq: a per-channel axis beyond the rank, or a scale shape that does not fit, is refused", "[hardening][packed]") {
  const std::string src = packedDigits();
  const std::string dir = test::tempDir("harden_ptq_axis");
  const std::string image = readAll(src);
  uint64_t hl;
  std::memcpy(&hl, image.data() + 16, 8);
  const nlohmann::json header = nlohmann::json::parse(image.substr(32, hl));
  // The first per-channel entry (the CNN's convolutions are int8 per channel in w4a16).
  size_t k = 0;
  while (k < header["quantized"].size() && header["quantized"][k]["granularity"] != "channel") ++k;
  REQUIRE(k < header["quantized"].size());
  const std::string name = header["quantized"][k]["name"];
  const size_t rank = header["quantized"][k]["shape"].size();

  nlohmann::json h = header;
  h["quantized"][k]["axis"] = 7;
  writeAll(dir + "/axis.ptq", withHeader(image, h));
  ToolRun r = inspectAndUnpack(dir + "/axis.ptq", dir);
  CHECK(r.unpack == 2);
  CHECK_THAT(r.unpack_out, Catch::Contains("axis") && Catch::Contains("7") && Catch::Contains(name) &&
                               Catch::Contains("rank " + std::to_string(rank)));

  h = header;
  h["quantized"][k]["scale_shape"] = {1};
  writeAll(dir + "/scales.ptq", withHeader(image, h));
  r = inspectAndUnpack(dir + "/scales.ptq", dir);
  CHECK(r.unpack == 2);
  CHECK_THAT(r.unpack_out, Catch::Contains("scale_shape"));

  h = header;
  h["quantized"][k]["shape"] = {int64_t{1} << 32, int64_t{1} << 32};
  writeAll(dir + "/shape.ptq", withHeader(image, h));
  r = inspectAndUnpack(dir + "/shape.ptq", dir);
  CHECK(r.unpack == 2);
  CHECK(r.inspect == 2);
  CHECK_THAT(r.unpack_out, Catch::Contains("too many elements"));

  h = header;
  h["blobs"][0]["offset"] = std::numeric_limits<uint64_t>::max() - 10;  // offset + bytes wraps around
  writeAll(dir + "/wrap.ptq", withHeader(image, h));
  r = inspectAndUnpack(dir + "/wrap.ptq", dir);
  CHECK(r.unpack == 2);
  CHECK(r.inspect == 2);
}

// ------------------------------------------------------------------------------------------------ numbers

TEST_CASE("a denormal scale is clamped to the smallest normal float, zero ranges keep scale 1", "[hardening][quant]") {
  quant::GridSpec g;
  g.bits = 8;
  const quant::GroupParams tiny = quant::paramsForRange(-1e-39f, 1e-39f, g);
  CHECK(tiny.scale == quant::kMinScale);
  CHECK(std::isnormal(tiny.scale));
  CHECK(quant::quantizeValue(1e-39f, tiny, g) <= quant::codeMax(g));
  const quant::GroupParams zero = quant::paramsForRange(0.0f, 0.0f, g);
  CHECK(zero.scale == 1.0f);
  g.symmetric = false;
  g.is_signed = false;
  CHECK(quant::paramsForRange(-1e-40f, 1e-40f, g).scale == quant::kMinScale);
  CHECK(quant::paramsForRange(0.0f, 0.0f, g).scale == 1.0f);
  CHECK(quant::paramsForRange(-1.0f, 1.0f, g).scale == Approx(2.0f / 255));
}
