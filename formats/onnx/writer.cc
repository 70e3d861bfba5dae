// ir::Model -> ONNX ModelProto, written atomically (temp file + rename), with optional external data.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <onnx/onnx_pb.h>

#include "formats/onnx/onnx_io.h"
#include "formats/onnx/tensor_proto.h"
#include "formats/onnx/wire_splice.h"
#include "lib/util/atomic_file.h"
#include "lib/util/error.h"
#include "lib/util/file_pages.h"

namespace ptq::onnx_io {

using ir::Graph;
using ir::Value;

namespace {

// Protobuf refuses to serialize messages over 2 GiB; leave headroom for the graph itself.
constexpr size_t kInlineLimitBytes = size_t{1} << 30 | size_t{1} << 29;  // 1.5 GiB
// Top-level initializers at least this large are streamed from their buffers (see wire_splice.h)
// instead of being copied into the ModelProto.
constexpr size_t kStreamMinBytes = 4096;

void setExternal(onnx::TensorProto& tp, const TensorPlacement& p) {
  tp.clear_raw_data();
  tp.set_data_location(onnx::TensorProto::EXTERNAL);
  auto add = [&](const char* k, const std::string& v) {
    auto* e = tp.add_external_data();
    e->set_key(k);
    e->set_value(v);
  };
  add("location", p.location);
  add("offset", std::to_string(p.offset));
  add("length", std::to_string(p.length));
}

// Appends tensor bytes to the external-data file, aligned, and records where they went.
class ExternalDataWriter {
 public:
  ExternalDataWriter(AtomicFile* file, std::string location) : file_(file), location_(std::move(location)) {}
  TensorPlacement put(const ir::Tensor& t) {
    // Page-align large tensors so runtimes can mmap them; 64 bytes is enough for the rest.
    const size_t align = t.nbytes() >= (1u << 20) ? 4096 : 64;
    const size_t pad = (align - offset_ % align) % align;
    static const char zeros[4096] = {};
    if (pad) file_->write(zeros, pad);
    offset_ += pad;
    file_->write(t.bytes(), t.nbytes());
    util::releaseFilePages(t.bytes(), t.nbytes());  // a float weight read from a mapped file: written, done
    if (offset_ == 0) crashPoint("save:data-partial");  // one tensor of the data file written
    const TensorPlacement placed{false, location_, offset_, t.nbytes()};
    offset_ += t.nbytes();
    return placed;
  }

 private:
  AtomicFile* file_;
  std::string location_;
  size_t offset_ = 0;
};

class GraphWriter {
 public:
  GraphWriter(ExternalDataWriter* ext, size_t threshold, const PlaceInitializer* place = nullptr,
              std::vector<const ir::Tensor*>* streamed = nullptr)
      : ext_(ext), threshold_(threshold), place_(place), streamed_(streamed) {}

  void write(const Graph& g, onnx::GraphProto& gp) {
    const bool top = depth_ == 0;
    ++depth_;
    gp.set_name(g.name);
    if (!g.doc_string.empty()) gp.set_doc_string(g.doc_string);
    for (Value* v : g.inputs()) writeValueInfo(v, *gp.add_input());
    for (Value* v : g.initializers()) {
      if (v->from_constant_node) continue;
      if (top && place_) {
        auto p = (*place_)(*v);
        if (!p) continue;
        if (p->keep_inline) {
          writeTensor(v->initializer, v->name(), *gp.add_initializer());
          continue;
        }
        writePlacedTensor(v->initializer, v->name(), *p, *gp.add_initializer());
        continue;
      }
      const ir::Tensor& t = v->initializer;
      if (top && streamed_ && !ext_ && t.dtype() != ir::DType::kString && t.nbytes() >= kStreamMinBytes) {
        // Everything tensorToProto writes but the bytes, which the streaming save splices in.
        onnx::TensorProto& tp = *gp.add_initializer();
        tp.set_name(v->name());
        tp.set_data_type(static_cast<int32_t>(t.dtype()));
        for (int64_t d : t.shape()) tp.add_dims(d);
        streamed_->push_back(&t);
        continue;
      }
      writeTensor(t, v->name(), *gp.add_initializer());
      if (top && streamed_) streamed_->push_back(nullptr);
    }
    for (const auto& s : g.sparse_initializers_opaque) gp.add_sparse_initializer()->ParseFromString(s);
    // Constant-node weights go first: they have no inputs, so any position before their users is valid.
    for (Value* v : g.initializers()) {
      if (!v->from_constant_node) continue;
      std::optional<TensorPlacement> placed;
      if (top && place_) {
        placed = (*place_)(*v);
        if (!placed) continue;
      }
      writeConstantNode(v, placed && !placed->keep_inline ? &*placed : nullptr, *gp.add_node());
    }
    for (ir::Node* n : g.nodes()) writeNode(*n, *gp.add_node());
    for (Value* v : g.outputs()) writeValueInfo(v, *gp.add_output());
    for (ir::Node* n : g.nodes())
      for (Value* v : n->outputs())
        if (v && v->in_value_info && !g.isGraphOutput(v)) writeValueInfo(v, *gp.add_value_info());
    --depth_;
  }

 private:
  // Name, dtype and dims, with the bytes where a container put them.
  static void writePlacedTensor(const ir::Tensor& t, const std::string& name, const TensorPlacement& p,
                                onnx::TensorProto& tp) {
    tp.set_name(name);
    tp.set_data_type(static_cast<int32_t>(t.dtype()));
    for (int64_t d : t.shape()) tp.add_dims(d);
    setExternal(tp, p);
  }

  void writeTensor(const ir::Tensor& t, const std::string& name, onnx::TensorProto& tp) {
    if (ext_ && t.dtype() != ir::DType::kString && t.nbytes() >= threshold_) {
      writePlacedTensor(t, name, ext_->put(t), tp);
      return;
    }
    tensorToProto(t, name, tp);
  }

  // A weight that came from a Constant node, as that node again; with `placed`, always the tensor
  // form with its bytes in the container.
  void writeConstantNode(const Value* v, const TensorPlacement* placed, onnx::NodeProto& np) {
    np.set_op_type("Constant");
    if (!v->constant_node_name.empty()) np.set_name(v->constant_node_name);
    if (!v->doc_string.empty()) np.set_doc_string(v->doc_string);
    np.add_output(v->name());
    auto* a = np.add_attribute();
    const std::string kind = placed || v->constant_node_attr.empty() ? "value" : v->constant_node_attr;
    a->set_name(kind);
    const ir::Tensor& t = v->initializer;
    if (kind == "value_float") {
      a->set_type(onnx::AttributeProto::FLOAT);
      a->set_f(t.toFloats().at(0));
    } else if (kind == "value_floats") {
      a->set_type(onnx::AttributeProto::FLOATS);
      for (float f : t.toFloats()) a->add_floats(f);
    } else if (kind == "value_int") {
      a->set_type(onnx::AttributeProto::INT);
      a->set_i(t.toInt64s().at(0));
    } else if (kind == "value_ints") {
      a->set_type(onnx::AttributeProto::INTS);
      for (int64_t i : t.toInt64s()) a->add_ints(i);
    } else if (kind == "value_string") {
      a->set_type(onnx::AttributeProto::STRING);
      a->set_s(t.strings().at(0));
    } else if (kind == "value_strings") {
      a->set_type(onnx::AttributeProto::STRINGS);
      for (const auto& s : t.strings()) a->add_strings(s);
    } else {
      a->set_name("value");
      a->set_type(onnx::AttributeProto::TENSOR);
      if (placed) writePlacedTensor(t, "", *placed, *a->mutable_t());
      else writeTensor(t, "", *a->mutable_t());
    }
  }

  void writeNode(const ir::Node& n, onnx::NodeProto& np) {
    np.set_op_type(n.opType());
    if (!n.domain().empty()) np.set_domain(n.domain());
    if (!n.name.empty()) np.set_name(n.name);
    if (!n.doc_string.empty()) np.set_doc_string(n.doc_string);
    // Trailing omitted optional inputs are dropped; inner ones are written as "".
    size_t last = n.numInputs();
    while (last > 0 && !n.input(last - 1)) --last;
    for (size_t i = 0; i < last; ++i) np.add_input(n.input(i) ? n.input(i)->name() : "");
    for (Value* out : n.outputs()) np.add_output(out ? out->name() : "");
    for (const auto& [name, a] : n.attrs) writeAttribute(name, a, *np.add_attribute());
  }

  void writeAttribute(const std::string& name, const ir::Attribute& a, onnx::AttributeProto& ap) {
    using K = ir::Attribute::Kind;
    if (a.kind == K::kOpaque) {
      ap.ParseFromString(a.s);
      return;
    }
    ap.set_name(name);
    if (!a.doc_string.empty()) ap.set_doc_string(a.doc_string);
    if (!a.ref_attr_name.empty()) ap.set_ref_attr_name(a.ref_attr_name);
    switch (a.kind) {
      case K::kFloat: ap.set_type(onnx::AttributeProto::FLOAT); ap.set_f(a.f); break;
      case K::kInt: ap.set_type(onnx::AttributeProto::INT); ap.set_i(a.i); break;
      case K::kString: ap.set_type(onnx::AttributeProto::STRING); ap.set_s(a.s); break;
      case K::kTensor: ap.set_type(onnx::AttributeProto::TENSOR); writeTensor(a.t, "", *ap.mutable_t()); break;
      case K::kGraph: ap.set_type(onnx::AttributeProto::GRAPH); write(*a.g, *ap.mutable_g()); break;
      case K::kFloats: ap.set_type(onnx::AttributeProto::FLOATS); for (float f : a.floats) ap.add_floats(f); break;
      case K::kInts: ap.set_type(onnx::AttributeProto::INTS); for (int64_t i : a.ints) ap.add_ints(i); break;
      case K::kStrings: ap.set_type(onnx::AttributeProto::STRINGS); for (const auto& s : a.strings) ap.add_strings(s); break;
      case K::kTensors:
        ap.set_type(onnx::AttributeProto::TENSORS);
        for (const auto& t : a.tensors) writeTensor(t, "", *ap.add_tensors());
        break;
      case K::kGraphs:
        ap.set_type(onnx::AttributeProto::GRAPHS);
        for (const auto& sg : a.graphs) write(*sg, *ap.add_graphs());
        break;
      case K::kOpaque: break;
    }
  }

  static void writeValueInfo(const Value* v, onnx::ValueInfoProto& vi) {
    vi.set_name(v->name());
    if (!v->doc_string.empty() && !v->from_constant_node) vi.set_doc_string(v->doc_string);
    if (!v->type_opaque.empty()) {
      vi.mutable_type()->ParseFromString(v->type_opaque);
      return;
    }
    if (!v->has_type && v->dtype == ir::DType::kUndefined) return;
    auto* tt = vi.mutable_type()->mutable_tensor_type();
    tt->set_elem_type(static_cast<int32_t>(v->dtype));
    if (!v->shape) return;
    auto* shape = tt->mutable_shape();
    for (const auto& d : *v->shape) {
      auto* dim = shape->add_dim();
      if (d.known()) dim->set_dim_value(d.value);
      else if (!d.symbol.empty()) dim->set_dim_param(d.symbol);
    }
  }

  ExternalDataWriter* ext_;
  size_t threshold_;
  const PlaceInitializer* place_;
  // Per top-level initializer written, in order: the tensor whose bytes were left out, or null.
  std::vector<const ir::Tensor*>* streamed_;
  int depth_ = 0;
};

size_t tensorBytes(const Graph& g) {
  size_t total = 0;
  for (Value* v : g.initializers()) total += v->initializer.nbytes();
  for (ir::Node* n : g.nodes())
    for (const auto& [k, a] : n->attrs) {
      (void)k;
      if (a.g) total += tensorBytes(*a.g);
      for (const auto& sg : a.graphs) total += tensorBytes(*sg);
      total += a.t.nbytes();
    }
  return total;
}

void buildProto(const ir::Model& m, onnx::ModelProto& mp, ExternalDataWriter* ext, size_t threshold,
                const PlaceInitializer* place = nullptr, std::vector<const ir::Tensor*>* streamed = nullptr) {
  mp.set_ir_version(m.ir_version);
  for (const auto& o : m.opsets) {
    auto* op = mp.add_opset_import();
    op->set_domain(o.domain);
    op->set_version(o.version);
  }
  if (!m.producer_name.empty()) mp.set_producer_name(m.producer_name);
  if (!m.producer_version.empty()) mp.set_producer_version(m.producer_version);
  if (!m.domain.empty()) mp.set_domain(m.domain);
  if (m.model_version) mp.set_model_version(m.model_version);
  if (!m.doc_string.empty()) mp.set_doc_string(m.doc_string);
  for (const auto& [k, v] : m.metadata_props) {
    auto* p = mp.add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  }
  for (const auto& f : m.functions_opaque) mp.add_functions()->ParseFromString(f);
  for (const auto& t : m.training_info_opaque) mp.add_training_info()->ParseFromString(t);
  GraphWriter(ext, threshold, place, streamed).write(*m.graph, *mp.mutable_graph());
}

// The serialized graph with each streamed initializer's raw_data (field 9 of TensorProto) spliced
// back in from its tensor; the graph's initializers are its field 5.
wire::Pieces spliceGraph(const std::string& graph, const std::vector<const ir::Tensor*>& streamed) {
  constexpr uint32_t kGraphInitializer = 5, kTensorRawData = 9;
  wire::Pieces out;
  std::string pending;  // consecutive fields copied as they are, written as one piece
  size_t k = 0;
  for (const wire::Field& f : wire::fields(graph)) {
    const ir::Tensor* t = nullptr;
    if (f.number == kGraphInitializer) {
      if (k >= streamed.size()) throwInternal("writer: more initializers in the graph than were written");
      t = streamed[k++];
    }
    if (!t) {
      pending.append(graph, f.begin, f.end - f.begin);
      continue;
    }
    wire::Pieces raw;
    raw.borrow(t->bytes(), t->nbytes());
    wire::Pieces tensor = wire::insertField(graph.substr(f.payload, f.end - f.payload), kTensorRawData, std::move(raw));
    wire::appendVarint(pending, wire::lengthTag(kGraphInitializer));
    wire::appendVarint(pending, tensor.size());
    out.own(std::move(pending));
    pending.clear();
    out.append(std::move(tensor));
  }
  if (k != streamed.size()) throwInternal("writer: fewer initializers in the graph than were written");
  out.own(std::move(pending));
  return out;
}

std::string baseName(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string serializeModel(const ir::Model& model) {
  onnx::ModelProto mp;
  buildProto(model, mp, nullptr, 0);
  if (mp.ByteSizeLong() > static_cast<size_t>(INT_MAX))
    throwOutput("the model is over 2 GiB; write it to a file with external data");
  return mp.SerializeAsString();
}

std::string serializeModelWithPlacement(const ir::Model& model, const PlaceInitializer& place) {
  onnx::ModelProto mp;
  buildProto(model, mp, nullptr, 0, &place);
  if (mp.ByteSizeLong() > static_cast<size_t>(INT_MAX)) throwOutput("the model's graph is over 2 GiB without its weights");
  return mp.SerializeAsString();
}

void saveModel(const ir::Model& model, const std::string& path, const SaveOptions& opts) {
  const bool external = opts.external_data == SaveOptions::ExternalData::kAlways ||
                        (opts.external_data == SaveOptions::ExternalData::kAuto &&
                         tensorBytes(*model.graph) > kInlineLimitBytes);
  onnx::ModelProto mp;
  std::unique_ptr<AtomicFile> data_file;
  if (external) {
    const std::string location = baseName(path) + ".data";
    data_file = std::make_unique<AtomicFile>(path + ".data");
    ExternalDataWriter ext(data_file.get(), location);
    buildProto(model, mp, &ext, opts.external_threshold_bytes);
  }
  // Inline weights are streamed: the ModelProto holds everything but the large initializers' bytes
  // (so protobuf never copies them), and the file gets exactly the bytes protobuf would write.
  std::vector<const ir::Tensor*> streamed;
  if (!external) buildProto(model, mp, nullptr, 0, nullptr, &streamed);
  if (mp.ByteSizeLong() > static_cast<size_t>(INT_MAX))
    throwOutput(path + ": the model is over 2 GiB even without its weights; cannot be written as ONNX");
  size_t inline_bytes = mp.ByteSizeLong();
  for (const ir::Tensor* t : streamed) inline_bytes += t ? t->nbytes() + 16 : 0;  // + tag and length varints
  if (inline_bytes > static_cast<size_t>(INT_MAX))  // protobuf could not read it back
    throwOutput(path + ": the model is over 2 GiB with its weights inline; write it with external data (--external-data)");
  AtomicFile out(path);
  if (external) {
    google::protobuf::io::FileOutputStream stream(out.fd());
    if (!mp.SerializeToZeroCopyStream(&stream) || !stream.Flush())
      throwOutput(path + ": write failed: " + std::strerror(stream.GetErrno()));
  } else {
    constexpr uint32_t kModelGraph = 7;
    wire::Pieces graph = spliceGraph(mp.graph().SerializeAsString(), streamed);
    mp.clear_graph();
    const wire::Pieces file = wire::insertField(mp.SerializeAsString(), kModelGraph, std::move(graph));
    file.writeTo([&](const char* data, size_t n) {
      out.write(data, n);
      util::releaseFilePages(data, n);  // a streamed float weight of a mapped external-data file
    });
  }
  // Both files are complete (and synced) before either is renamed. The data file goes first, so a
  // model file never points at a data file that is not there yet. An existing model at `path` may
  // read the old "<path>.data", which the first rename replaces: it is removed before that, so a
  // kill between the two renames leaves no model rather than an old model over new data.
  crashPoint("save:model-written");
  out.finish();
  if (data_file) {
    data_file->finish();
    crashPoint("save:both-finished");
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && ::lstat(data_file->path().c_str(), &st) == 0 && ::unlink(path.c_str()) != 0)
      throwOutput(path + ": cannot replace the old model (it reads " + data_file->path() + "): " + std::strerror(errno));
    crashPoint("save:old-model-removed");
    data_file->commit();
    crashPoint("save:data-renamed");
  }
  out.commit();
  crashPoint("save:done");
}

}  // namespace ptq::onnx_io
