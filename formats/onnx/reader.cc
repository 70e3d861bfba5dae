// ONNX ModelProto -> ir::Model.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <set>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include "formats/onnx/onnx_io.h"
#include "formats/onnx/raw_data_scan.h"
#include "formats/onnx/tensor_proto.h"
#include "lib/util/error.h"
#include "lib/util/file_pages.h"

namespace ptq::onnx_io {

using ir::DType;
using ir::Graph;
using ir::Value;

namespace {

class GraphReader {
 public:
  // `raws`: the raw data of the top-level graph's initializers left in the file's buffer, by index.
  GraphReader(const std::string& file, ExternalDataResolver* resolver,
              std::function<void(Graph&)> add_initializers = nullptr, const std::vector<RawDataView>* raws = nullptr)
      : file_(file), resolver_(resolver), add_initializers_(std::move(add_initializers)), raws_(raws) {}

  void read(onnx::GraphProto& gp, Graph& g) {
    g.name = gp.name();
    g.doc_string = gp.doc_string();
    const std::string where = file_ + ": graph '" + gp.name() + "'";

    size_t index = 0;
    for (auto& tp : *gp.mutable_initializer()) {
      const RawDataView* raw = nullptr;
      if (!g.parent && raws_ && index < raws_->size() && (*raws_)[index].data) raw = &(*raws_)[index];
      ++index;
      Value* v = g.addInitializer(tp.name(), ir::Tensor());
      v->external_data = tp.data_location() == onnx::TensorProto::EXTERNAL;
      v->initializer = tensorFromProto(tp, where + ": initializer '" + tp.name() + "'", resolver_, raw);
      setTypeFromTensor(v);
    }
    for (const auto& sp : gp.sparse_initializer()) g.sparse_initializers_opaque.push_back(sp.SerializeAsString());

    for (const auto& vi : gp.input()) {
      Value* existing = g.findValue(vi.name());
      if (existing && existing->isConstant()) {  // initializer also listed as input (IR < 4 style)
        applyValueInfo(vi, existing);
        g.markInitializerAsInput(existing);
        continue;
      }
      Value* v = g.addInput(vi.name(), DType::kUndefined, std::nullopt);
      applyValueInfo(vi, v);
    }

    if (add_initializers_ && !g.parent) add_initializers_(g);

    // Constant nodes become initializers; every other node's outputs are created before any input is
    // resolved, so a file whose nodes are not topologically sorted still reads (and is sorted below).
    std::vector<onnx::NodeProto*> regular;
    for (auto& np : *gp.mutable_node()) {
      if (isConvertibleConstant(np)) {
        addConstantNode(np, g, where);
        continue;
      }
      for (const auto& out : np.output())
        if (!out.empty()) g.addValue(out);
      regular.push_back(&np);
    }
    bool sorted = true;
    for (onnx::NodeProto* np : regular) {
      std::vector<Value*> ins, outs;
      for (const auto& in : np->input()) ins.push_back(in.empty() ? nullptr : resolve(in, g, *np));
      for (const auto& out : np->output()) outs.push_back(out.empty() ? nullptr : g.findValue(out));
      for (Value* in : ins)
        if (in && in->kind() == Value::Kind::kIntermediate && !in->producer()) sorted = false;
      ir::Node* n = g.addNodeWithOutputs(np->op_type(), ins, outs, np->name(), np->domain());
      n->doc_string = np->doc_string();
      for (auto& ap : *np->mutable_attribute())
        n->attrs[ap.name()] = readAttribute(ap, g, where + ": " + n->describe());
    }
    for (const auto& vi : gp.output()) {
      Value* v = g.findValue(vi.name());
      if (!v) v = outerScope(vi.name(), g);
      if (!v) throwInput(where + ": graph output '" + vi.name() + "' is not produced by any node");
      applyValueInfo(vi, v);
      g.addOutput(v);
    }
    for (const auto& vi : gp.value_info()) {
      Value* v = g.findValue(vi.name());
      if (!v) continue;  // describes nothing in this graph; ONNX Runtime ignores such entries too
      applyValueInfo(vi, v);
      v->in_value_info = true;
    }
    for (ir::Node* n : g.nodes())
      for (Value* out : n->outputs())
        if (out && !out->producer()) throwInput(where + ": value '" + out->name() + "' has no producer");
    if (!sorted) g.topoSort();
  }

 private:
  static bool isConvertibleConstant(const onnx::NodeProto& np) {
    if (np.op_type() != "Constant" || !(np.domain().empty() || np.domain() == "ai.onnx")) return false;
    if (np.output_size() != 1 || np.attribute_size() != 1) return false;
    const std::string& a = np.attribute(0).name();
    return a == "value" || a == "value_float" || a == "value_floats" || a == "value_int" || a == "value_ints" ||
           a == "value_string" || a == "value_strings";
  }

  void addConstantNode(onnx::NodeProto& np, Graph& g, const std::string& where) {
    onnx::AttributeProto& a = *np.mutable_attribute(0);
    const std::string what = where + ": Constant node '" + np.name() + "' (output '" + np.output(0) + "')";
    ir::Tensor t;
    if (a.name() == "value") t = tensorFromProto(*a.mutable_t(), what, resolver_);
    else if (a.name() == "value_float") t = ir::Tensor::fromFloats({}, {a.f()});
    else if (a.name() == "value_floats") t = ir::Tensor::fromFloats({a.floats_size()}, {a.floats().begin(), a.floats().end()});
    else if (a.name() == "value_int") t = ir::Tensor::fromInt64s({}, {a.i()});
    else if (a.name() == "value_ints") t = ir::Tensor::fromInt64s({a.ints_size()}, {a.ints().begin(), a.ints().end()});
    else if (a.name() == "value_string") t = ir::Tensor::fromStrings({}, {a.s()});
    else t = ir::Tensor::fromStrings({a.strings_size()}, {a.strings().begin(), a.strings().end()});
    Value* v = g.addInitializer(np.output(0), std::move(t));
    v->from_constant_node = true;
    v->constant_node_name = np.name();
    v->doc_string = np.doc_string();
    v->constant_node_attr = a.name();
  }

  static void setTypeFromTensor(Value* v) {
    v->dtype = v->initializer.dtype();
    std::vector<ir::Dim> dims;
    for (int64_t d : v->initializer.shape()) dims.push_back({d, ""});
    v->shape = dims;
  }

  static void applyValueInfo(const onnx::ValueInfoProto& vi, Value* v) {
    if (!vi.doc_string().empty()) v->doc_string = vi.doc_string();
    if (!vi.has_type()) return;
    v->has_type = true;
    const onnx::TypeProto& tp = vi.type();
    if (tp.value_case() != onnx::TypeProto::kTensorType) {
      v->type_opaque = tp.SerializeAsString();
      return;
    }
    v->type_opaque.clear();
    const auto& tt = tp.tensor_type();
    if (v->kind() != Value::Kind::kInitializer) v->dtype = static_cast<DType>(tt.elem_type());
    if (!tt.has_shape()) {
      if (v->kind() != Value::Kind::kInitializer) v->shape.reset();
      return;
    }
    if (v->kind() == Value::Kind::kInitializer) return;  // the data defines the shape
    std::vector<ir::Dim> dims;
    for (const auto& d : tt.shape().dim()) {
      ir::Dim dim;
      if (d.has_dim_value()) dim.value = d.dim_value();
      else if (d.has_dim_param()) dim.symbol = d.dim_param();
      dims.push_back(dim);
    }
    v->shape = dims;
  }

  Value* outerScope(const std::string& name, Graph& g) {
    for (Graph* p = g.parent; p; p = p->parent)
      if (p->findValue(name)) return g.addValue(name, Value::Kind::kOuterScope);
    return nullptr;
  }

  Value* resolve(const std::string& name, Graph& g, const onnx::NodeProto& np) {
    if (Value* v = g.findValue(name)) return v;
    if (Value* v = outerScope(name, g)) return v;
    throwInput(file_ + ": node '" + np.name() + "' (" + np.op_type() + ") reads '" + name +
               "', which no node, input or initializer defines");
  }

  ir::Attribute readAttribute(onnx::AttributeProto& ap, Graph& g, const std::string& where) {
    using K = ir::Attribute::Kind;
    ir::Attribute a;
    a.doc_string = ap.doc_string();
    a.ref_attr_name = ap.ref_attr_name();
    const std::string what = where + " attribute '" + ap.name() + "'";
    switch (ap.type()) {
      case onnx::AttributeProto::FLOAT: a.kind = K::kFloat; a.f = ap.f(); break;
      case onnx::AttributeProto::INT: a.kind = K::kInt; a.i = ap.i(); break;
      case onnx::AttributeProto::STRING: a.kind = K::kString; a.s = ap.s(); break;
      case onnx::AttributeProto::TENSOR: a.kind = K::kTensor; a.t = tensorFromProto(*ap.mutable_t(), what, resolver_); break;
      case onnx::AttributeProto::GRAPH: a.kind = K::kGraph; a.g = readSubgraph(*ap.mutable_g(), g); break;
      case onnx::AttributeProto::FLOATS: a.kind = K::kFloats; a.floats.assign(ap.floats().begin(), ap.floats().end()); break;
      case onnx::AttributeProto::INTS: a.kind = K::kInts; a.ints.assign(ap.ints().begin(), ap.ints().end()); break;
      case onnx::AttributeProto::STRINGS: a.kind = K::kStrings; a.strings.assign(ap.strings().begin(), ap.strings().end()); break;
      case onnx::AttributeProto::TENSORS:
        a.kind = K::kTensors;
        for (auto& t : *ap.mutable_tensors()) a.tensors.push_back(tensorFromProto(t, what, resolver_));
        break;
      case onnx::AttributeProto::GRAPHS:
        a.kind = K::kGraphs;
        for (auto& sg : *ap.mutable_graphs()) a.graphs.push_back(readSubgraph(sg, g));
        break;
      default:  // sparse tensors, type protos, or an untyped attribute: keep the bytes
        a.kind = K::kOpaque;
        a.s = ap.SerializeAsString();
        break;
    }
    return a;
  }

  std::shared_ptr<Graph> readSubgraph(onnx::GraphProto& gp, Graph& parent) {
    auto sub = std::make_shared<Graph>();
    sub->parent = &parent;
    read(gp, *sub);
    return sub;
  }

  std::string file_;
  ExternalDataResolver* resolver_;
  std::function<void(Graph&)> add_initializers_;
  const std::vector<RawDataView>* raws_;
};

std::string dirOf(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Parses a whole model file from `fd` (closed here). Throws kInput naming `path` when it is not ONNX.
void parseModelFd(int fd, const std::string& path, onnx::ModelProto& mp) {
  bool ok;
  {
    google::protobuf::io::FileInputStream raw(fd);
    google::protobuf::io::CodedInputStream coded(&raw);
    coded.SetTotalBytesLimit(INT_MAX);
    ok = mp.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage();
  }
  ::close(fd);
  if (!ok) throwInput(path + ": not a valid ONNX model (protobuf parsing failed: the file is truncated or not ONNX)");
}

ir::Model convert(onnx::ModelProto& mp, const std::string& path, ExternalDataResolver* resolver,
                  std::function<void(Graph&)> add_initializers = nullptr, const std::vector<RawDataView>* raws = nullptr) {
  if (!mp.has_graph())
    throwInput(path + ": not an ONNX model (no graph; the file may be truncated or of another format)");
  if (mp.ir_version() <= 0)
    throwInput(path + ": not an ONNX model (ir_version missing; the file may be of another format)");
  ir::Model m;
  m.source_path = path;
  m.ir_version = mp.ir_version();
  for (const auto& o : mp.opset_import()) m.opsets.push_back({o.domain(), o.version()});
  m.producer_name = mp.producer_name();
  m.producer_version = mp.producer_version();
  m.domain = mp.domain();
  m.model_version = mp.model_version();
  m.doc_string = mp.doc_string();
  for (const auto& p : mp.metadata_props()) m.metadata_props.emplace_back(p.key(), p.value());
  for (const auto& f : mp.functions()) {
    m.functions_opaque.push_back(f.SerializeAsString());
    ir::Model::FunctionSummary fs;
    fs.name = f.name();
    for (const auto& o : f.opset_import()) fs.opset_imports.push_back({o.domain(), o.version()});
    m.function_summaries.push_back(std::move(fs));
  }
  for (const auto& t : mp.training_info()) m.training_info_opaque.push_back(t.SerializeAsString());
  GraphReader(path, resolver, std::move(add_initializers), raws).read(*mp.mutable_graph(), *m.graph);
  return m;
}

// Raw data this long or longer stays in the file's buffer; shorter tensors are copied (a view of
// them could not give a page back anyway).
constexpr size_t kViewRawDataBytes = 4096;

// Parses a whole model held in [bytes, bytes + n), which `keepalive` keeps alive: the large
// initializers' raw data is not copied but viewed in place (raw_data_scan.h). Throws kInput naming
// `path` when it is not ONNX.
void parseModelBuffer(const char* bytes, size_t n, const std::shared_ptr<const void>& keepalive, const std::string& path,
                      onnx::ModelProto& mp, std::vector<RawDataView>& raws) {
  std::vector<RawDataRange> ranges;
  raws.clear();
  if (parseModelWithoutRawData(bytes, n, kViewRawDataBytes, mp, ranges)) {
    raws.reserve(ranges.size());
    for (const RawDataRange& r : ranges) raws.push_back({r.data, r.size, r.data ? keepalive : nullptr});
    return;
  }
  mp.Clear();  // not laid out as the scan expects: protobuf parses it whole (and says what is wrong)
  bool ok = n <= static_cast<size_t>(INT_MAX);
  if (ok) {
    google::protobuf::io::CodedInputStream coded(reinterpret_cast<const uint8_t*>(bytes), static_cast<int>(n));
    coded.SetTotalBytesLimit(INT_MAX);
    ok = mp.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage();
  }
  if (!ok) throwInput(path + ": not a valid ONNX model (protobuf parsing failed: the file is truncated or not ONNX)");
}

}  // namespace

ir::Model loadModel(const std::string& path, const LoadOptions& opts) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throwInput(path + ": cannot open model: " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throwInput(path + ": is a directory, not an ONNX model file");
  }
  if (st.st_size == 0) {
    ::close(fd);
    throwInput(path + ": empty file, not an ONNX model");
  }
  onnx::ModelProto mp;
  std::vector<RawDataView> raws;
  // A regular file is mapped read-only and its weights are used in place; anything else (or a failed
  // mmap) is read through protobuf's stream.
  std::shared_ptr<const void> map;
  if (opts.mmap_external_data && S_ISREG(st.st_mode)) map = util::mapFileReadOnly(fd, static_cast<size_t>(st.st_size));
  if (map) {
    ::close(fd);
    parseModelBuffer(static_cast<const char*>(map.get()), static_cast<size_t>(st.st_size), map, path, mp, raws);
  } else {
    parseModelFd(fd, path, mp);
  }
  ExternalDataResolver resolver(dirOf(path), path, opts.mmap_external_data);
  return convert(mp, path, &resolver, nullptr, &raws);
}

namespace {

void collectLocations(const onnx::TensorProto& t, std::set<std::string>& out) {
  if (t.data_location() != onnx::TensorProto::EXTERNAL) return;
  for (const auto& kv : t.external_data())
    if (kv.key() == "location") out.insert(kv.value());
}

void collectLocations(const onnx::GraphProto& g, std::set<std::string>& out) {
  for (const auto& t : g.initializer()) collectLocations(t, out);
  for (const auto& n : g.node())
    for (const auto& a : n.attribute()) {
      if (a.has_t()) collectLocations(a.t(), out);
      for (const auto& t : a.tensors()) collectLocations(t, out);
      if (a.has_g()) collectLocations(a.g(), out);
      for (const auto& sg : a.graphs()) collectLocations(sg, out);
    }
}

}  // namespace

std::vector<std::string> externalDataFiles(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throwInput(path + ": cannot open model: " + std::strerror(errno));
  onnx::ModelProto mp;
  parseModelFd(fd, path, mp);
  std::set<std::string> locations;
  collectLocations(mp.graph(), locations);
  return std::vector<std::string>(locations.begin(), locations.end());
}

ir::Model loadModelFromBytes(const std::string& bytes, const std::string& what) {
  // Through the same in-place parse as loadModel (so the fuzz target exercises it), on a copy that
  // the tensors keep alive.
  auto copy = std::make_shared<const std::string>(bytes);
  onnx::ModelProto mp;
  std::vector<RawDataView> raws;
  parseModelBuffer(copy->data(), copy->size(), std::shared_ptr<const void>(copy, copy->data()), what, mp, raws);
  ExternalDataResolver resolver(".", what, true);
  return convert(mp, what, &resolver, nullptr, &raws);
}

ir::Model loadEmbeddedModel(const std::string& bytes, const std::string& what, const EmbeddedLoadOptions& opts) {
  onnx::ModelProto mp;
  google::protobuf::io::CodedInputStream coded(reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<int>(bytes.size()));
  coded.SetTotalBytesLimit(INT_MAX);
  if (!mp.ParseFromCodedStream(&coded)) throwInput(what + ": the embedded graph is not a valid ONNX model");
  ExternalDataResolver resolver(".", what, true);
  if (!opts.external_data_file.empty()) resolver.forceFile(opts.external_data_file, opts.external_data_base);
  return convert(mp, what, &resolver, opts.add_initializers);
}

ir::Model parseModelText(const std::string& text) {
  onnx::ModelProto mp;
  auto status = onnx::OnnxParser::Parse(mp, text.c_str());
  if (!status.IsOK()) throwInput("ONNX text: " + status.ErrorMessage());
  return convert(mp, "<text>", nullptr);
}

ir::Tensor loadTensorProtoFile(const std::string& path, std::string* name) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throwInput(path + ": cannot open tensor file: " + std::strerror(errno));
  onnx::TensorProto tp;
  bool ok;
  {
    google::protobuf::io::FileInputStream raw(fd);
    google::protobuf::io::CodedInputStream coded(&raw);
    coded.SetTotalBytesLimit(INT_MAX);
    ok = tp.ParseFromCodedStream(&coded);
  }
  ::close(fd);
  if (!ok) throwInput(path + ": not a valid ONNX TensorProto file");
  if (name) *name = tp.name();
  ExternalDataResolver resolver(dirOf(path), path, false);
  return tensorFromProto(tp, path + ": tensor '" + tp.name() + "'", &resolver);
}

}  // namespace ptq::onnx_io
