// Opset upgrade: each rewrite on a small text model (structure of the result, onnx::checker when
// libonnx knows the target, and the same outputs as the original in ONNX Runtime), error cases, and
// the zoo LMs / PP-OCRv4 models when present.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sys/wait.h>

#include "formats/onnx/onnx_io.h"
#include "passes/legalize/opset_upgrade.h"
#include "lib/ir/verifier.h"
#include "lib/util/error.h"
#include "support/test_paths.h"

using namespace ptq;

namespace {

// ---------------------------------------------------------------- helpers

std::vector<std::string> opTypes(const ir::Graph& g) {
  std::vector<std::string> ops;
  for (const ir::Node* n : g.nodes()) ops.push_back(n->opType());
  return ops;
}

const ir::Node* findOp(const ir::Graph& g, const std::string& op) {
  for (const ir::Node* n : g.nodes())
    if (n->opType() == op) return n;
  return nullptr;
}

size_t countOp(const ir::Graph& g, const std::string& op) {
  size_t k = 0;
  for (const ir::Node* n : g.nodes()) k += n->opType() == op;
  return k;
}

std::vector<int64_t> constInts(const ir::Value* v) {
  REQUIRE(v);
  REQUIRE(v->isConstant());
  return v->initializer.toInt64s();
}

std::vector<float> constFloats(const ir::Value* v) {
  REQUIRE(v);
  REQUIRE(v->isConstant());
  return v->initializer.toFloats();
}

std::string ortScript() { return std::string(PTQ_SOURCE_DIR) + "/scripts/ort/ort_run.js"; }

bool ortAvailable() {
  static const bool ok = test::fileExists(ortScript()) &&
                         test::fileExists(std::string(PTQ_SOURCE_DIR) + "/scripts/ort/node_modules/onnxruntime-node") &&
                         std::system("command -v node >/dev/null 2>&1") == 0;
  return ok;
}

struct CompareResult {
  int exit_code = -1;
  double max_abs = -1;
  std::string output;

  // max_abs of one output (its JSON line), -1 when absent.
  double outputMaxAbs(const std::string& name) const {
    const size_t line = output.find("{\"output\":\"" + name + "\"");
    if (line == std::string::npos) return -1;
    const size_t k = output.find("\"max_abs\":", line);
    return k == std::string::npos ? -1 : std::strtod(output.c_str() + k + 10, nullptr);
  }
};

// `node ort_run.js compare a b ARGS`: the summary line's max_abs over all outputs.
CompareResult ortCompare(const std::string& a, const std::string& b, const std::string& args) {
  CompareResult r;
  const std::string cmd = "node '" + ortScript() + "' compare '" + a + "' '" + b + "' " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) r.output += buf;
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  const size_t summary = r.output.rfind("{\"ok\":");
  if (summary != std::string::npos) {
    const size_t k = r.output.find("\"max_abs\":", summary);
    if (k != std::string::npos) r.max_abs = std::strtod(r.output.c_str() + k + 10, nullptr);
  }
  return r;
}

// Saves both models; checks the upgraded one with onnx::checker (when libonnx knows its opset) and
// compares their outputs in ONNX Runtime (when installed). Returns the max abs difference over the
// outputs not in `skip` (-1: skipped).
double checkSameFunction(const std::string& test_name, const ir::Model& original, const ir::Model& upgraded,
                         const std::string& ort_args = "", const std::vector<std::string>& skip = {}) {
  const std::string dir = test::tempDir("opset_upgrade/" + test_name);
  const std::string a = dir + "/original.onnx", b = dir + "/upgraded.onnx";
  onnx_io::saveModel(original, a);
  onnx_io::saveModel(upgraded, b);
  const std::string check = onnx_io::checkModelFile(b);
  INFO("onnx::checker on " << b << ": " << check);
  CHECK((check.empty() || check.rfind("unchecked", 0) == 0));
  if (!ortAvailable()) {
    WARN("skipped the ONNX Runtime comparison: node or scripts/ort/node_modules missing (scripts/setup-deps.sh)");
    return -1;
  }
  const CompareResult r = ortCompare(a, b, ort_args);
  INFO("ort_run.js compare " << a << " " << b << " " << ort_args << "\n" << r.output);
  REQUIRE(r.exit_code == 0);
  double max_abs = r.max_abs;
  if (!skip.empty()) {
    max_abs = 0;
    for (const ir::Value* out : original.graph->outputs()) {
      if (std::find(skip.begin(), skip.end(), out->name()) != skip.end()) continue;
      const double d = r.outputMaxAbs(out->name());
      REQUIRE(d >= 0);
      max_abs = std::max(max_abs, d);
    }
  }
  REQUIRE(max_abs >= 0);
  CHECK(max_abs <= 1e-6);
  return max_abs;
}

// Parses `text`, upgrades a copy to `target`, checks validity and equal outputs; returns the copy.
ir::Model upgradeAndCompare(const std::string& test_name, const std::string& text, int64_t target,
                            const std::string& ort_args = "", const std::vector<std::string>& skip = {}) {
  ir::Model original = onnx_io::parseModelText(text);
  ir::Model upgraded = onnx_io::parseModelText(text);
  legalize::upgradeOpset(upgraded, target);
  CHECK(upgraded.opsetVersion() == target);
  CHECK(ir::verifyGraph(*upgraded.graph).empty());
  checkSameFunction(test_name, original, upgraded, ort_args, skip);
  return upgraded;
}

std::string errorOf(ir::Model& m, int64_t target, ExitCode* code = nullptr) {
  try {
    legalize::upgradeOpset(m, target);
  } catch (const Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  return "";
}

}  // namespace

// ---------------------------------------------------------------- opset 13: Softmax family

TEST_CASE("Softmax-9 over trailing dims becomes Flatten + Softmax-13 + Reshape", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[2,3,4] x) => (float[2,3,4] y) { y = Softmax<axis=1>(x) }
)";
  ir::Model m = upgradeAndCompare("softmax_axis1", text, 13);
  CHECK(opTypes(*m.graph) == std::vector<std::string>{"Flatten", "Shape", "Softmax", "Reshape"});
  CHECK(findOp(*m.graph, "Flatten")->attrInt("axis", -99) == 1);
  CHECK(findOp(*m.graph, "Softmax")->attrInt("axis", -99) == -1);
  const ir::Node* reshape = findOp(*m.graph, "Reshape");
  CHECK(reshape->output(0)->name() == "y");
  CHECK(reshape->input(1)->producer()->opType() == "Shape");
  CHECK(m.ir_version == 7);
}

TEST_CASE("Softmax/LogSoftmax/Hardmax on the last axis only get an explicit axis", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[2,3,4] x) => (float[2,3,4] a, float[2,3,4] b, float[3,5] c)
<float[3,5] w = {1,2,3,4,5,5,4,3,2,1,0,7,7,1,2}>
{
  a = Softmax<axis=2>(x)
  b = LogSoftmax<axis=2>(x)
  c = Hardmax(w)
}
)";
  ir::Model m = upgradeAndCompare("softmax_last_axis", text, 21);
  CHECK(opTypes(*m.graph) == std::vector<std::string>{"Softmax", "LogSoftmax", "Hardmax"});
  CHECK(findOp(*m.graph, "Softmax")->attrInt("axis", -99) == 2);
  CHECK(findOp(*m.graph, "Hardmax")->attrInt("axis", -99) == 1);  // default 1 == last axis of a 2-D input
}

TEST_CASE("Softmax family on a value of unknown rank is rewritten, default axis 1", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 6, opset_import: ["" : 11]>
g (float[2,3,4] x) => (float[2,3,4] a, float[2,3,4] b, float[2,3,4] c)
{
  h = Relu(x)
  a = Softmax(h)
  b = LogSoftmax<axis=-2>(h)
  c = Hardmax<axis=0>(h)
}
)";
  ir::Model m = upgradeAndCompare("softmax_unknown_rank", text, 13);
  CHECK(countOp(*m.graph, "Flatten") == 3);
  CHECK(countOp(*m.graph, "Reshape") == 3);
  CHECK(findOp(*m.graph, "LogSoftmax")->attrInt("axis", -99) == -1);
}

// ---------------------------------------------------------------- opset 10: Slice, TopK, Dropout

TEST_CASE("Slice-1 and TopK-1 attributes become inputs", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[4,6,5] x) => (float[2,4,5] s, float[4,6,2] v, int64[4,6,2] i)
{
  s = Slice<starts=[1, -5], ends=[3, 1000], axes=[0, 1]>(x)
  v, i = TopK<k=2, axis=2>(x)
}
)";
  ir::Model m = upgradeAndCompare("slice_topk", text, 13);
  const ir::Node* slice = findOp(*m.graph, "Slice");
  REQUIRE(slice->numInputs() == 4);
  CHECK(constInts(slice->input(1)) == std::vector<int64_t>{1, -5});
  CHECK(constInts(slice->input(2)) == std::vector<int64_t>{3, 1000});
  CHECK(constInts(slice->input(3)) == std::vector<int64_t>{0, 1});
  CHECK(slice->attrs.empty());
  const ir::Node* topk = findOp(*m.graph, "TopK");
  CHECK(constInts(topk->input(1)) == std::vector<int64_t>{2});
  CHECK(!topk->hasAttr("k"));
}

TEST_CASE("Dropout becomes Identity, a used mask keeps a Dropout cast to the old mask type", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[2,3] x) => (float[2,3] y, float[2,3] z, float[2,3] mask)
{
  y = Dropout<ratio=0.3>(x)
  z, mask = Dropout<ratio=0.5>(y)
}
)";
  // The mask is not compared: ONNX Runtime fills Dropout-7..11's inference mask with zeros, the
  // opset-12 spec (and ONNX Runtime from 12) with ones. y and z must match.
  ir::Model m = upgradeAndCompare("dropout", text, 13, "", {"mask"});
  CHECK(opTypes(*m.graph) == std::vector<std::string>{"Identity", "Dropout", "Cast"});
  const ir::Node* d = findOp(*m.graph, "Dropout");
  CHECK(!d->hasAttr("ratio"));
  CHECK(findOp(*m.graph, "Cast")->attrInt("to", 0) == static_cast<int64_t>(ir::DType::kFloat32));
  CHECK(findOp(*m.graph, "Cast")->output(0)->name() == "mask");

  ir::Model m11 = upgradeAndCompare("dropout_to11", text, 11, "", {"mask"});
  CHECK(opTypes(*m11.graph) == std::vector<std::string>{"Identity", "Dropout", "Cast"});
  CHECK(findOp(*m11.graph, "Dropout")->attrFloat("ratio", 0) == Approx(0.5f));  // an attribute until 12
}

// ---------------------------------------------------------------- opset 11: Clip, Pad, Scatter

TEST_CASE("Clip-6 min/max attributes become typed inputs", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[2,8] x) => (float[2,8] a, float[2,8] b, float[2,8] c, float[2,8] e)
{
  h = Mul(x, x)
  a = Clip<min=0.0, max=0.5>(h)
  b = Clip<max=0.25>(x)
  c = Clip<min=-0.5>(x)
  e = Clip(x)
}
)";
  ir::Model m = upgradeAndCompare("clip", text, 13);
  const auto nodes = m.graph->nodes();
  const ir::Node* a = nodes[1];
  REQUIRE(a->numInputs() == 3);
  CHECK(a->input(1)->initializer.dtype() == ir::DType::kFloat32);  // type found through Mul
  CHECK(constFloats(a->input(1)) == std::vector<float>{0.0f});
  CHECK(constFloats(a->input(2)) == std::vector<float>{0.5f});
  const ir::Node* b = nodes[2];
  REQUIRE(b->numInputs() == 3);
  CHECK(b->input(1) == nullptr);
  CHECK(constFloats(b->input(2)) == std::vector<float>{0.25f});
  CHECK(nodes[3]->numInputs() == 2);
  CHECK(nodes[4]->numInputs() == 1);

  // Bounds take the input's type (ONNX Runtime has no double Clip-6 kernel: structure only).
  ir::Model d = onnx_io::parseModelText(R"(
<ir_version: 4, opset_import: ["" : 9]>
g (double[2,8] x) => (double[2,8] c) { t = Transpose(x)  u = Transpose(t)  c = Clip<min=-0.5>(u) }
)");
  legalize::upgradeOpset(d, 13);
  const ir::Node* c = d.graph->nodes()[2];
  CHECK(c->input(1)->initializer.dtype() == ir::DType::kFloat64);
  CHECK(c->input(1)->initializer.toFloats() == std::vector<float>{-0.5f});
}

TEST_CASE("Clip on a value of unknown type: CastLike from opset 15, an error below", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[3,3] x) => (float[3,3] y)
{
  e = EyeLike<k=1>(x)
  y = Clip<min=0.25, max=0.75>(e)
}
)";
  ir::Model m = onnx_io::parseModelText(text);
  const std::string before = onnx_io::serializeModel(m);
  ExitCode code = ExitCode::kOk;
  const std::string err = errorOf(m, 13, &code);
  CHECK(code == ExitCode::kInput);
  CHECK(err.find("(Clip): cannot upgrade from opset 9 to 13: the input's element type is unknown") != std::string::npos);
  CHECK(onnx_io::serializeModel(m) == before);  // untouched

  ir::Model up = upgradeAndCompare("clip_castlike", text, 15);
  CHECK(countOp(*up.graph, "CastLike") == 2);
}

TEST_CASE("Pad-2 pads/value attributes become inputs", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[1,2,3,4] x) => (float[1,2,5,8] a, float[1,2,5,6] b, float[1,2,4,6] c)
{
  a = Pad<pads=[0, 0, 1, 2, 0, 0, 1, 2], value=1.5>(x)
  b = Pad<mode="reflect", pads=[0, 0, 1, 1, 0, 0, 1, 1]>(x)
  c = Pad<pads=[0, 0, 0, 1, 0, 0, 1, 1]>(x)
}
)";
  ir::Model m = upgradeAndCompare("pad", text, 18);
  const auto nodes = m.graph->nodes();
  CHECK(constInts(nodes[0]->input(1)) == std::vector<int64_t>{0, 0, 1, 2, 0, 0, 1, 2});
  CHECK(constFloats(nodes[0]->input(2)) == std::vector<float>{1.5f});
  CHECK(nodes[1]->numInputs() == 2);
  CHECK(nodes[1]->attrString("mode", "") == "reflect");
  CHECK(nodes[2]->numInputs() == 2);  // value 0: the default
  CHECK(!nodes[0]->hasAttr("pads"));
  CHECK(!nodes[0]->hasAttr("value"));
}

TEST_CASE("Scatter (deprecated) becomes ScatterElements", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[3,3] data, float[2,3] upd) => (float[3,3] y)
<int64[2,3] idx = {1, 0, 2, 0, 2, 1}>
{ y = Scatter<axis=0>(data, idx, upd) }
)";
  ir::Model m = upgradeAndCompare("scatter", text, 13);
  CHECK(opTypes(*m.graph) == std::vector<std::string>{"ScatterElements"});
  CHECK(m.graph->nodes()[0]->attrInt("axis", -1) == 0);
}

// ---------------------------------------------------------------- Upsample / Resize

TEST_CASE("Upsample-9 with constant scales becomes Resize (asymmetric, floor)", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[1,2,3,4] x) => (float[1,2,6,12] a, float[1,2,6,8] b)
<float[4] s = {1.0, 1.0, 2.0, 3.0}, float[4] s2 = {1.0, 1.0, 2.0, 2.0}>
{
  a = Upsample<mode="nearest">(x, s)
  b = Upsample<mode="linear">(x, s2)
}
)";
  ir::Model m = upgradeAndCompare("upsample9", text, 13);
  CHECK(opTypes(*m.graph) == std::vector<std::string>{"Resize", "Resize"});
  const ir::Node* a = m.graph->nodes()[0];
  REQUIRE(a->numInputs() == 3);
  CHECK(a->input(1) == nullptr);  // roi is optional from 13
  CHECK(a->input(2)->name() == "s");
  CHECK(a->attrString("coordinate_transformation_mode", "") == "asymmetric");
  CHECK(a->attrString("nearest_mode", "") == "floor");
  const ir::Node* b = m.graph->nodes()[1];
  CHECK(b->attrString("mode", "") == "linear");
  CHECK(!b->hasAttr("nearest_mode"));

  ir::Model m11 = upgradeAndCompare("upsample9_to11", text, 11);
  CHECK(Catch::contains(m11.graph->nodes()[0]->input(1)->name(), "roi"));  // required at 11/12
  ir::Model m10 = upgradeAndCompare("upsample9_to10", text, 10);           // Resize-10: (X, scales)
  CHECK(m10.graph->nodes()[0]->numInputs() == 2);
  CHECK(!m10.graph->nodes()[0]->hasAttr("coordinate_transformation_mode"));
  CHECK(m10.ir_version == 5);
}

TEST_CASE("Upsample-7 scales attribute becomes an initializer", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 7]>
g (float[1,1,2,3] x) => (float[1,1,4,6] y) { y = Upsample<scales=[1.0, 1.0, 2.0, 2.0]>(x) }
)";
  ir::Model m = upgradeAndCompare("upsample7", text, 21);
  const ir::Node* r = findOp(*m.graph, "Resize");
  REQUIRE(r);
  CHECK(constFloats(r->input(2)) == std::vector<float>{1, 1, 2, 2});
  CHECK(m.ir_version == 10);
}

TEST_CASE("Resize-10 keeps its behaviour: nearest down- and upsampling, linear", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 5, opset_import: ["" : 10]>
g (float[1,2,7,9] x) => (float[1,2,3,5] down, float[1,2,11,16] up, float[1,2,11,16] lin)
<float[4] sd = {1.0, 1.0, 0.5, 0.6}, float[4] su = {1.0, 1.0, 1.7, 1.8}>
{
  down = Resize<mode="nearest">(x, sd)
  up = Resize(x, su)
  lin = Resize<mode="linear">(x, su)
}
)";
  ir::Model m = upgradeAndCompare("resize10", text, 13);
  const auto nodes = m.graph->nodes();
  CHECK(nodes[0]->attrString("nearest_mode", "") == "ceil");
  CHECK(nodes[1]->attrString("nearest_mode", "") == "floor");
  for (const ir::Node* n : nodes) CHECK(n->attrString("coordinate_transformation_mode", "") == "asymmetric");
}

TEST_CASE("Resize-11 tf_half_pixel_for_nn becomes half_pixel with the equivalent nearest_mode", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 6, opset_import: ["" : 11]>
g (float[1,1,7,9] x) => (float[1,1,11,16] a, float[1,1,4,5] b, float[1,1,11,16] c)
<float[0] roi = {}, float[4] su = {1.0, 1.0, 1.7, 1.8}, float[4] sd = {1.0, 1.0, 0.6, 0.6}>
{
  a = Resize<coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="floor">(x, roi, su)
  b = Resize<coordinate_transformation_mode="tf_half_pixel_for_nn">(x, roi, sd)
  c = Resize<coordinate_transformation_mode="tf_half_pixel_for_nn">(x, roi, su)
}
)";
  ir::Model m = upgradeAndCompare("resize11_tf_nn", text, 13);
  const auto nodes = m.graph->nodes();
  CHECK(nodes[0]->attrString("coordinate_transformation_mode", "") == "half_pixel");
  CHECK(nodes[0]->attrString("nearest_mode", "") == "round_prefer_ceil");
  CHECK(nodes[1]->attrString("nearest_mode", "") == "ceil");
  CHECK(nodes[2]->attrString("nearest_mode", "") == "ceil");
}

TEST_CASE("Upsample that cannot be expressed: a clear error and an untouched model", "[opset_upgrade]") {
  SECTION("dynamic scales with mode=nearest") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[1,1,2,2] x, float[4] s) => (float[1,1,4,4] y, float[1,1,2,2] z)
{
  z = Softmax(x)
  y = Upsample(x, s)
}
)");
    m.graph->nodes()[1]->name = "up";
    const std::string before = onnx_io::serializeModel(m);
    ExitCode code = ExitCode::kOk;
    const std::string err = errorOf(m, 21, &code);
    CHECK(code == ExitCode::kInput);
    CHECK(Catch::startsWith(err, "node 'up' (Upsample): cannot upgrade from opset 9 to 21: "));
    CHECK(Catch::contains(err, "constant scales"));
    CHECK(onnx_io::serializeModel(m) == before);  // the Softmax before it was not rewritten either
    CHECK(m.opsetVersion() == 9);
  }
  SECTION("scales mixing up- and down-sampling") {
    ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 5, opset_import: ["" : 10]>
g (float[1,1,4,4] x) => (float[1,1,2,8] y)
<float[4] s = {1.0, 1.0, 0.5, 2.0}>
{ y = Resize(x, s) }
)");
    CHECK(Catch::contains(errorOf(m, 13), "mix up- and down-sampling"));
  }
}

// ---------------------------------------------------------------- axes and split to inputs (13, 18)

TEST_CASE("Squeeze/Unsqueeze/ReduceSum (13) and Reduce* (18) axes become inputs", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 6, opset_import: ["" : 11]>
g (float[2,1,3,1] x) => (float[2,3] sq, float[2,1,1,3,1] us, float[2,1,1,1] rs, float[1,1,3,1] rm,
                         float[1,1,1,1] rmax, float[2,3,1] rl2, float[2,1,3,1] sqall)
{
  sq = Squeeze<axes=[1, 3]>(x)
  us = Unsqueeze<axes=[2]>(x)
  rs = ReduceSum<axes=[2]>(x)
  rm = ReduceMean<axes=[0], keepdims=1>(x)
  rmax = ReduceMax(x)
  rl2 = ReduceL2<axes=[-3], keepdims=0>(x)
  sqall = Identity(x)
}
)";
  SECTION("to 13: Squeeze, Unsqueeze, ReduceSum only") {
    ir::Model m = upgradeAndCompare("axes13", text, 13);
    CHECK(constInts(findOp(*m.graph, "Squeeze")->input(1)) == std::vector<int64_t>{1, 3});
    CHECK(constInts(findOp(*m.graph, "Unsqueeze")->input(1)) == std::vector<int64_t>{2});
    CHECK(constInts(findOp(*m.graph, "ReduceSum")->input(1)) == std::vector<int64_t>{2});
    CHECK(findOp(*m.graph, "ReduceMean")->attrInts("axes") == std::vector<int64_t>{0});
  }
  SECTION("to 18: all Reduce*") {
    ir::Model m = upgradeAndCompare("axes18", text, 18);
    CHECK(constInts(findOp(*m.graph, "ReduceMean")->input(1)) == std::vector<int64_t>{0});
    CHECK(findOp(*m.graph, "ReduceMean")->attrInt("keepdims", -1) == 1);
    CHECK(findOp(*m.graph, "ReduceMax")->numInputs() == 1);  // no axes: all of them, as before
    CHECK(constInts(findOp(*m.graph, "ReduceL2")->input(1)) == std::vector<int64_t>{-3});
    CHECK(m.ir_version == 8);
  }
}

TEST_CASE("Split: split attribute becomes an input (13), num_outputs set without it (18)", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 6, opset_import: ["" : 11]>
g (float[6,4] x) => (float[2,4] a, float[4,4] b, float[6,2] c, float[6,2] d)
{
  a, b = Split<axis=0, split=[2, 4]>(x)
  c, d = Split<axis=1>(x)
}
)";
  ir::Model m13 = upgradeAndCompare("split13", text, 13);
  const auto n13 = m13.graph->nodes();
  CHECK(constInts(n13[0]->input(1)) == std::vector<int64_t>{2, 4});
  CHECK(!n13[1]->hasAttr("num_outputs"));
  ir::Model m18 = upgradeAndCompare("split18", text, 18);
  const auto n18 = m18.graph->nodes();
  CHECK(!n18[0]->hasAttr("num_outputs"));
  CHECK(n18[1]->attrInt("num_outputs", 0) == 2);
}

// ---------------------------------------------------------------- BatchNormalization, RoiAlign

TEST_CASE("BatchNormalization: spatial=1 dropped (9), training mode (extra outputs) is an error (14)",
          "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 7]>
g (float[2,3,4,4] x) => (float[2,3,4,4] y)
<float[3] sc = {1.0, 0.5, 2.0}, float[3] b = {0.1, 0.2, 0.3}, float[3] mu = {0.0, 1.0, -1.0},
 float[3] var = {1.0, 2.0, 0.5}>
{ y = BatchNormalization<spatial=1, epsilon=0.001>(x, sc, b, mu, var) }
)";
  ir::Model m = upgradeAndCompare("batchnorm", text, 15);
  const ir::Node* bn = m.graph->nodes()[0];
  CHECK(!bn->hasAttr("spatial"));
  CHECK(!bn->hasAttr("training_mode"));
  CHECK(bn->attrFloat("epsilon", 0) == Approx(0.001f));

  ir::Model bad = onnx_io::parseModelText(R"(
<ir_version: 4, opset_import: ["" : 7]>
g (float[2,3] x) => (float[2,3] y)
<float[2,3] sc = {1,1,1,1,1,1}, float[2,3] b = {0,0,0,0,0,0}, float[2,3] mu = {0,0,0,0,0,0}, float[2,3] var = {1,1,1,1,1,1}>
{ y = BatchNormalization<spatial=0>(x, sc, b, mu, var) }
)");
  CHECK(Catch::contains(errorOf(bad, 13), "(BatchNormalization): cannot upgrade from opset 7 to 13: spatial=0"));

  const char* training = R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[2,3,4,4] x) => (float[2,3,4,4] z)
<float[3] sc = {1.0, 0.5, 2.0}, float[3] b = {0.1, 0.2, 0.3}, float[3] mu = {0.0, 1.0, -1.0},
 float[3] var = {1.0, 2.0, 0.5}>
{ z, m1, v1, sm, sv = BatchNormalization(x, sc, b, mu, var) }
)";
  ir::Model t13 = onnx_io::parseModelText(training);
  legalize::upgradeOpset(t13, 13);  // 14 not crossed: kept as is
  CHECK(t13.graph->nodes()[0]->numOutputs() == 5);
  ir::Model t14 = onnx_io::parseModelText(training);
  CHECK(Catch::contains(errorOf(t14, 14), "(BatchNormalization): cannot upgrade from opset 9 to 14: its outputs "
                                          "beyond Y (here 'm1') put it in training mode"));
}

TEST_CASE("RoiAlign-10 keeps output_half_pixel at 16", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 5, opset_import: ["" : 10]>
g (float[1,2,8,8] x) => (float[3,2,2,2] y)
<float[3,4] rois = {0.0, 0.0, 4.0, 4.0, 1.5, 2.5, 7.0, 6.0, 3.0, 0.5, 5.5, 7.5}, int64[3] bi = {0, 0, 0}>
{ y = RoiAlign<output_height=2, output_width=2, sampling_ratio=2, spatial_scale=1.0>(x, rois, bi) }
)";
  ir::Model m = upgradeAndCompare("roialign", text, 16);
  CHECK(findOp(*m.graph, "RoiAlign")->attrString("coordinate_transformation_mode", "") == "output_half_pixel");
}

// ---------------------------------------------------------------- opset 20/21: GridSample, DFT, GroupNorm

TEST_CASE("GridSample-16 modes renamed at 20", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 8, opset_import: ["" : 16]>
g (float[1,2,4,5] x, float[1,3,3,2] grid) => (float[1,2,3,3] a, float[1,2,3,3] b, float[1,2,3,3] c)
{
  a = GridSample(x, grid)
  b = GridSample<mode="bicubic", align_corners=1>(x, grid)
  c = GridSample<mode="nearest">(x, grid)
}
)";
  ir::Model m = upgradeAndCompare("gridsample", text, 20);
  const auto nodes = m.graph->nodes();
  CHECK(nodes[0]->attrString("mode", "") == "linear");
  CHECK(nodes[1]->attrString("mode", "") == "cubic");
  CHECK(nodes[2]->attrString("mode", "") == "nearest");
  CHECK(m.ir_version == 9);
}

TEST_CASE("DFT-17 axis attribute becomes input 2", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,8,3,1] x) => (float[2,8,3,2] a, float[2,8,3,2] b)
{
  a = DFT(x)
  b = DFT<axis=2>(x)
}
)";
  ir::Model m = upgradeAndCompare("dft", text, 20);
  const auto nodes = m.graph->nodes();
  REQUIRE(nodes[0]->numInputs() == 3);
  CHECK(nodes[0]->input(1) == nullptr);
  CHECK(constInts(nodes[0]->input(2)) == std::vector<int64_t>{1});
  CHECK(constInts(nodes[1]->input(2)) == std::vector<int64_t>{2});
  CHECK(!nodes[1]->hasAttr("axis"));
}

TEST_CASE("GroupNormalization-18 per-group scale/bias become per-channel at 21", "[opset_upgrade]") {
  SECTION("constant scale and bias are repeated") {
    const char* text = R"(
<ir_version: 8, opset_import: ["" : 18]>
g (float[2,6,3,3] x) => (float[2,6,3,3] y)
<float[3] sc = {1.0, 0.5, 2.0}, float[3] b = {0.1, -0.2, 0.3}>
{ y = GroupNormalization<num_groups=3, epsilon=0.001>(x, sc, b) }
)";
    ir::Model m = upgradeAndCompare("groupnorm_const", text, 21);
    const ir::Node* gn = findOp(*m.graph, "GroupNormalization");
    CHECK(constFloats(gn->input(1)) == std::vector<float>{1, 1, 0.5f, 0.5f, 2, 2});
    CHECK(constFloats(gn->input(2)) == std::vector<float>{0.1f, 0.1f, -0.2f, -0.2f, 0.3f, 0.3f});
    CHECK(m.graph->nodes().size() == 1);
  }
  SECTION("run-time scale and bias are expanded by Reshape/Expand") {
    const char* text = R"(
<ir_version: 8, opset_import: ["" : 18]>
g (float[2,6,3,3] x, float[2] sc, float[2] b) => (float[2,6,3,3] y)
{ y = GroupNormalization<num_groups=2>(x, sc, b) }
)";
    ir::Model m = upgradeAndCompare("groupnorm_dynamic", text, 21);
    CHECK(countOp(*m.graph, "Expand") == 2);
    CHECK(m.graph->nodes().back()->opType() == "GroupNormalization");
  }
}

// ---------------------------------------------------------------- subgraphs, no-ops, errors

TEST_CASE("Subgraphs (If branches) are upgraded too", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[1,3,4] x) => (float[1,3,4] y)
{
  s = ReduceSum<keepdims=0>(x)
  zero = Constant<value=float {0.0}>()
  c = Greater(s, zero)
  y = If(c) <
    then_branch = t () => (float[1,3,4] ty) { ty = Softmax<axis=1>(x) },
    else_branch = e () => (float[1,3,4] ey) {
      h = Clip<min=-0.5, max=0.5>(x)
      u = Unsqueeze<axes=[0]>(h)
      ey = Squeeze<axes=[0]>(u)
    }
  >
}
)";
  ir::Model m = onnx_io::parseModelText(text);
  ir::Model original = onnx_io::parseModelText(text);
  legalize::upgradeOpset(m, 13);
  const ir::Node* iff = findOp(*m.graph, "If");
  REQUIRE(iff);
  const ir::Graph& then_g = *iff->attrs.at("then_branch").g;
  const ir::Graph& else_g = *iff->attrs.at("else_branch").g;
  CHECK(opTypes(then_g) == std::vector<std::string>{"Flatten", "Shape", "Softmax", "Reshape"});
  CHECK(findOp(else_g, "Clip")->numInputs() == 3);
  CHECK(constInts(findOp(else_g, "Squeeze")->input(1)) == std::vector<int64_t>{0});
  CHECK(constInts(findOp(else_g, "Unsqueeze")->input(1)) == std::vector<int64_t>{0});
  CHECK(m.graph->nodes()[0]->numInputs() == 1);  // ReduceSum without axes: still all axes
  // Several seeds so that both branches run (the condition is sum(x) > 0).
  checkSameFunction("subgraph", original, m, "--seed 1");
  if (ortAvailable()) {
    const std::string dir = test::tempDir("opset_upgrade/subgraph_seeds");
    onnx_io::saveModel(original, dir + "/original.onnx");
    onnx_io::saveModel(m, dir + "/upgraded.onnx");
    for (int seed : {2, 3, 4, 5, 6}) {
      const CompareResult r = ortCompare(dir + "/original.onnx", dir + "/upgraded.onnx", "--seed " + std::to_string(seed));
      INFO(r.output);
      CHECK(r.exit_code == 0);
      CHECK(r.max_abs <= 1e-6);
    }
  }
}

TEST_CASE("No-op at or above the target, ir_version only raised", "[opset_upgrade]") {
  const char* text = R"(
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3] x) => (float[2,3] y) { y = Softmax<axis=0>(x) }
)";
  ir::Model m = onnx_io::parseModelText(text);
  const std::string before = onnx_io::serializeModel(m);
  legalize::upgradeOpset(m, 13);
  legalize::upgradeOpset(m, 17);
  CHECK(onnx_io::serializeModel(m) == before);

  ir::Model hi = onnx_io::parseModelText(R"(
<ir_version: 10, opset_import: ["" : 12]>
g (float[2,3] x) => (float[2,3] y) { y = Relu(x) }
)");
  legalize::upgradeOpset(hi, 13);
  CHECK(hi.ir_version == 10);
  CHECK(hi.opsetVersion() == 13);
  CHECK(legalize::minIrVersionForOpset(17) == 7);
  CHECK(legalize::minIrVersionForOpset(18) == 8);
  CHECK(legalize::minIrVersionForOpset(20) == 9);
  CHECK(legalize::minIrVersionForOpset(21) == 10);
}

TEST_CASE("Bad targets and unsupported models are clear errors", "[opset_upgrade]") {
  ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[2,3] x) => (float[2,3] y) { y = Relu(x) }
)");
  ExitCode code = ExitCode::kOk;
  CHECK(Catch::contains(errorOf(m, 22, &code), "outside the supported range"));
  CHECK(code == ExitCode::kUsage);
  CHECK(Catch::contains(errorOf(m, 9, &code), "outside the supported range"));
  CHECK(m.opsetVersion() == 9);

  ir::Model old = onnx_io::parseModelText(R"(
<ir_version: 3, opset_import: ["" : 6]>
g (float[2,3] x) => (float[2,3] y) { y = Relu(x) }
)");
  CHECK(Catch::contains(errorOf(old, 13, &code), "older than 7"));
  CHECK(code == ExitCode::kInput);

  ir::Model unsq = onnx_io::parseModelText(R"(
<ir_version: 4, opset_import: ["" : 9]>
g (float[2,3] x) => (float[2,3] y) { y = ImageScaler<scale=2.0>(x) }
)");
  CHECK(Catch::contains(errorOf(unsq, 13), "(ImageScaler): cannot upgrade from opset 9 to 13: experimental op"));
}

TEST_CASE("Other domains are left alone", "[opset_upgrade]") {
  ir::Model m = onnx_io::parseModelText(R"(
<ir_version: 4, opset_import: ["" : 9, "com.example" : 1]>
g (float[2,3] x) => (float[2,3] y) { h = com.example.Softmax<axis=1>(x)  y = Relu(h) }
)");
  legalize::upgradeOpset(m, 13);
  CHECK(opTypes(*m.graph) == std::vector<std::string>{"Softmax", "Relu"});
  CHECK(m.opsetVersion("com.example") == 1);
}

// ---------------------------------------------------------------- real models

namespace {
// The gate runs ONNX Runtime without graph optimizations: with them (the default, "basic") a model
// can differ in the last bits between opsets because ORT's optimizer treats opsets differently
// (gpt-fortunes at 21: 3.8e-6 on logits of magnitude ~10 with no node rewritten). That figure is
// reported too.
void upgradeFileAndCompare(const std::string& path, const std::string& tag, int64_t target,
                           const std::string& ort_args) {
  ir::Model original = onnx_io::loadModel(path);
  ir::Model upgraded = onnx_io::loadModel(path);
  const int64_t from = upgraded.opsetVersion();
  legalize::upgradeOpset(upgraded, target);
  CHECK(upgraded.opsetVersion() == target);
  CHECK(ir::verifyGraph(*upgraded.graph).empty());
  const std::string name = tag + "_" + std::to_string(target);
  const double max_abs = checkSameFunction(name, original, upgraded, ort_args + " --opt disable");
  double basic = -1;
  if (ortAvailable()) {
    const std::string dir = std::string(PTQ_BINARY_DIR) + "/test-tmp/opset_upgrade/" + name;
    const CompareResult r = ortCompare(dir + "/original.onnx", dir + "/upgraded.onnx", ort_args);
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(r.max_abs <= 1e-4);
    basic = r.max_abs;
  }
  WARN(tag << ": opset " << from << " -> " << target << ", " << original.graph->numNodes() << " -> "
           << upgraded.graph->numNodes() << " nodes; ORT max_abs " << max_abs << " (no graph optimization), "
           << basic << " (basic optimization)");
}

std::string ocrAsset(const std::string& file) {
  const char* cache = std::getenv("PTQ_CACHE");
  const char* home = std::getenv("HOME");
  const std::string root = cache ? cache : (home ? std::string(home) + "/.cache/ptq-tool" : "");
  const std::string p = root + "/ocr/ocr-models-1.4.2/package/assets/" + file;
  return test::fileExists(p) ? p : "";
}
}  // namespace

TEST_CASE("Zoo LMs (opset 17, ReduceMean axes attributes) upgraded to 18 and 21 match in ORT",
          "[opset_upgrade][zoo]") {
  PTQ_REQUIRE_ZOO();
  if (!ortAvailable()) PTQ_SKIP("comparing in ONNX Runtime needs node and scripts/ort/node_modules (scripts/setup-deps.sh)");
  for (const char* name : {"llama-jargon", "gpt-fortunes"}) {
    const std::string path = test::zooFile(std::string(name) + ".onnx");
    if (!test::fileExists(path)) PTQ_SKIP(path << " missing from the zoo");
    for (int64_t target : {18, 21}) upgradeFileAndCompare(path, name, target, "--vocab 100 --batch 2 --seq 16");
  }
  // The attribute -> input rewrite did happen.
  const std::string path = test::zooFile("llama-jargon.onnx");
  if (test::fileExists(path)) {
    ir::Model m = onnx_io::loadModel(path);
    legalize::upgradeOpset(m, 21);
    const ir::Node* rm = findOp(*m.graph, "ReduceMean");
    REQUIRE(rm);
    CHECK(!rm->hasAttr("axes"));
    CHECK(rm->input(1));
  }
}

TEST_CASE("PP-OCRv4 rec (opset 9) and det (opset 11) upgraded to 13 and 21 match in ORT", "[opset_upgrade][ocr]") {
  const std::string rec = ocrAsset("ch_PP-OCRv4_rec_infer.onnx");
  const std::string det = ocrAsset("ch_PP-OCRv4_det_infer.onnx");
  if (rec.empty() || det.empty())
    PTQ_SKIP("PP-OCRv4 models not in ${PTQ_CACHE:-$HOME/.cache/ptq-tool}/ocr (scripts/fetch-ocr-models.sh)");
  if (!ortAvailable()) PTQ_SKIP("comparing in ONNX Runtime needs node and scripts/ort/node_modules (scripts/setup-deps.sh)");
  for (int64_t target : {13, 21}) {
    upgradeFileAndCompare(rec, "ppocr_rec", target, "--dims x=1x3x48x320");
    upgradeFileAndCompare(det, "ppocr_det", target, "--dims x=1x3x96x160");
  }
}
