// onnx::checker and shape inference on written files, for tests and `ptq-tool quantize --check`.
#include <onnx/checker.h>
#include <onnx/defs/schema.h>

#include "formats/onnx/onnx_io.h"

namespace ptq::onnx_io {

int64_t maxKnownOpset() {
  const auto& m = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  auto it = m.find("");
  return it == m.end() ? 0 : it->second.second;
}

std::string checkModelFile(const std::string& path) {
  // libonnx cannot judge opsets newer than it knows (Debian 12's 1.12 stops at 17).
  ir::Model m = loadModel(path);
  for (const auto& o : m.opsets)
    if ((o.domain.empty() || o.domain == "ai.onnx") && o.version > maxKnownOpset())
      return "unchecked: opset " + std::to_string(o.version) + " is newer than this libonnx knows (" +
             std::to_string(maxKnownOpset()) + ")";
  try {
    onnx::checker::check_model(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace ptq::onnx_io
