#include "lib/driver/inspect.h"

#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "formats/onnx/onnx_io.h"
#include "formats/packed/ptq_file.h"
#include "lib/pipeline/quant_plan.h"
#include "lib/runtime/session.h"

namespace ptq::driver {

namespace {
// Weights of a graph and of every subgraph in it (If/Loop/Scan bodies hold weights of their own).
struct WeightCounts {
  int64_t params = 0, bytes = 0, tensors = 0, external = 0, from_constant_nodes = 0, in_subgraphs = 0;
};
void countWeights(const ir::Graph& g, bool subgraph, WeightCounts& c) {
  for (ir::Value* v : g.initializers()) {
    c.params += v->initializer.numel();
    c.bytes += static_cast<int64_t>(v->initializer.nbytes());
    ++c.tensors;
    if (v->external_data) ++c.external;
    if (v->from_constant_node) ++c.from_constant_nodes;
    if (subgraph) ++c.in_subgraphs;
  }
  for (ir::Node* n : g.nodes())
    for (const auto& [key, attr] : n->attrs) {
      (void)key;
      if (attr.g) countWeights(*attr.g, true, c);
      for (const auto& sub : attr.graphs)
        if (sub) countWeights(*sub, true, c);
    }
}
}  // namespace

std::string inspectModel(const std::string& model_path, bool as_json) {
  using nlohmann::json;
  if (packed::isPackedFile(model_path)) return packed::describePacked(model_path, as_json);
  ir::Model m = onnx_io::loadModel(model_path);
  const ir::Graph& g = *m.graph;
  std::map<std::string, int64_t> ops;
  for (ir::Node* n : g.nodes()) ops[(n->domain().empty() ? "" : n->domain() + ".") + n->opType()]++;
  WeightCounts wc;
  countWeights(g, false, wc);
  const int64_t params = wc.params, weight_bytes = wc.bytes, external = wc.external,
                constants_from_nodes = wc.from_constant_nodes;
  // The quantizable layers under the default selection plus embeddings, in subgraphs too.
  pipeline::QuantConfig all;
  all.layers.quantize_embeddings = true;
  pipeline::QuantPlan plan = pipeline::buildPlan(*m.graph, all);
  std::vector<const pipeline::LayerPlan*> targets;
  for (const auto& l : plan.layers())
    if (!l.skip) targets.push_back(&l);
  std::vector<std::string> unsupported = runtime::unsupportedNodes(g, m.opsetVersion());

  json j;
  j["model"] = model_path;
  j["ir_version"] = m.ir_version;
  json opsets = json::object();
  for (const auto& o : m.opsets) opsets[o.domain.empty() ? "ai.onnx" : o.domain] = o.version;
  j["opsets"] = opsets;
  j["producer"] = m.producer_name + (m.producer_version.empty() ? "" : " " + m.producer_version);
  j["nodes"] = g.numNodes();
  j["op_histogram"] = ops;
  j["parameters"] = params;
  j["weight_bytes"] = weight_bytes;
  j["initializers"] = wc.tensors;
  j["initializers_in_subgraphs"] = wc.in_subgraphs;
  j["constant_nodes_as_weights"] = constants_from_nodes;
  j["external_data_tensors"] = external;
  json inputs = json::array(), outputs = json::array();
  auto describeValue = [](const ir::Value* v) {
    json shape = json::array();
    if (v->shape)
      for (const auto& d : *v->shape) shape.push_back(d.known() ? json(d.value) : json(d.symbol.empty() ? "?" : d.symbol));
    return json{{"name", v->name()}, {"dtype", ir::dtypeName(v->dtype)}, {"shape", shape}};
  };
  for (ir::Value* v : g.realInputs()) inputs.push_back(describeValue(v));
  for (ir::Value* v : g.outputs()) outputs.push_back(describeValue(v));
  j["inputs"] = inputs;
  j["outputs"] = outputs;
  json layers = json::array();
  for (const auto* t : targets) {
    json e{{"node", t->node->name}, {"op_type", t->node->opType()}, {"weight", t->weight->name()},
           {"shape", t->weight->initializer.shape()}};
    if (!t->scope.empty()) e["scope"] = t->scope;
    layers.push_back(e);
  }
  j["quantizable_layers"] = layers;
  j["executor_unsupported"] = unsupported;
  if (as_json) return j.dump(2);

  std::ostringstream o;
  o << "model:        " << model_path << "\n";
  o << "ir_version:   " << m.ir_version << "\n";
  o << "opsets:       ";
  for (const auto& op : m.opsets) o << (op.domain.empty() ? "ai.onnx" : op.domain) << "=" << op.version << " ";
  o << "\nproducer:     " << j["producer"].get<std::string>() << "\n";
  o << "parameters:   " << params << " (" << weight_bytes << " bytes in " << wc.tensors << " tensors, "
    << (wc.in_subgraphs ? std::to_string(wc.in_subgraphs) + " inside subgraphs, " : std::string())
    << constants_from_nodes << " from Constant nodes, " << external << " in external data)\n";
  o << "inputs:       ";
  for (const auto& i : inputs) o << i["name"].get<std::string>() << " " << i["dtype"].get<std::string>() << i["shape"].dump() << "  ";
  o << "\noutputs:      ";
  for (const auto& i : outputs) o << i["name"].get<std::string>() << " " << i["dtype"].get<std::string>() << i["shape"].dump() << "  ";
  o << "\nnodes:        " << g.numNodes() << "\n";
  for (const auto& [op, n] : ops) o << "  " << op << ": " << n << "\n";
  o << "quantizable layers: " << targets.size() << "\n";
  for (const auto* t : targets)
    o << "  " << t->node->opType() << " " << (t->node->name.empty() ? "<unnamed>" : t->node->name) << "  weight "
      << t->weight->name() << " " << ir::shapeToString(t->weight->initializer.shape())
      << (t->scope.empty() ? "" : "  in " + t->scope) << "\n";
  o << "ops the executor cannot run: " << (unsupported.empty() ? "none" : "") << "\n";
  for (const auto& u : unsupported) o << "  " << u << "\n";
  return o.str();
}

}  // namespace ptq::driver
