#include "tests/fuzz/harness.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "formats/onnx/onnx_io.h"
#include "formats/packed/ptq_file.h"
#include "lib/calib/npy.h"
#include "lib/ir/verifier.h"
#include "lib/util/error.h"
#include "lib/util/hash.h"
#ifndef PTQ_FUZZ_READERS_ONLY
#include "lib/driver/batch_manifest.h"
#include "lib/pipeline/config.h"
#include "passes/legalize/legalize.h"
#include "passes/registry.h"
#endif

namespace ptq::fuzz {

namespace {

constexpr char kSecret[] = "PTQ-FUZZ-SECRET-OUTSIDE-THE-MODEL-FOLDER";

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz finding: %s\n", what.c_str());
  std::abort();
}

void writeFile(const std::string& path, const void* data, size_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!f) finding("cannot write " + path);
}

// A per-process sandbox: <tmp>/ptq-fuzz-<pid>/{secret.bin, model/{weights.bin, link.bin -> ../secret.bin,
// sub/weights.bin, dirlink -> ..}}.
const std::string& sandbox() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    const std::string d = std::string(tmp && *tmp ? tmp : "/tmp") + "/ptq-fuzz-" + std::to_string(::getpid());
    ::mkdir(d.c_str(), 0755);
    ::mkdir((d + "/model").c_str(), 0755);
    ::mkdir((d + "/model/sub").c_str(), 0755);
    std::string secret;
    while (secret.size() < 8192) secret += kSecret;
    writeFile(d + "/secret.bin", secret.data(), secret.size());
    std::string weights(8192, '\0');
    for (size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<char>(i * 7 + 1);
    writeFile(d + "/model/weights.bin", weights.data(), weights.size());
    writeFile(d + "/model/sub/weights.bin", weights.data(), weights.size());
    (void)::symlink("../secret.bin", (d + "/model/link.bin").c_str());
    (void)::symlink("..", (d + "/model/dirlink").c_str());
    return d;
  }();
  return dir;
}

bool holdsSecret(const ir::Tensor& t) {
  if (t.empty() || t.dtype() == ir::DType::kString || t.nbytes() < 16) return false;
  const char* p = static_cast<const char*>(t.data());
  return std::search(p, p + t.nbytes(), kSecret, kSecret + 16) != p + t.nbytes();
}

void checkNoSecret(const ir::Graph& g) {
  for (const ir::Value* v : g.initializers())
    if (holdsSecret(v->initializer)) finding("external data escaped the model's folder: initializer '" + v->name() + "'");
  for (const ir::Node* n : g.nodes())
    for (const auto& [name, a] : n->attrs) {
      if (holdsSecret(a.t)) finding("external data escaped the model's folder: attribute '" + name + "'");
      if (a.g) checkNoSecret(*a.g);
      for (const auto& sg : a.graphs) checkNoSecret(*sg);
    }
}

// Runs `body`; an input or usage error is the expected way to refuse bad bytes.
template <typename F>
void expectClean(F&& body) {
  try {
    body();
  } catch (const Error& e) {
    if (e.code() == ExitCode::kInternal) throw;
  }
}

}  // namespace

void onnxModel(const uint8_t* data, size_t size) {
  const std::string path = sandbox() + "/model/m.onnx";
  writeFile(path, data, size);
  expectClean([&] {
    ir::Model m = onnx_io::loadModel(path);
    checkNoSecret(*m.graph);
    const std::vector<std::string> problems = ir::verifyGraph(*m.graph);
    (void)problems;  // a loaded graph may still be one the tool refuses later (e.g. a cycle); not a finding
    std::string bytes;
    try {
      bytes = onnx_io::serializeModel(m);
    } catch (const Error& e) {
      if (e.code() != ExitCode::kOutput) throw;
      return;
    }
    onnx_io::loadModelFromBytes(bytes, "round-trip of " + path);
  });
}

std::string fixPackedChecksums(std::string b) {
  if (b.size() < 32 || std::memcmp(b.data(), packed::kPtqMagic, 8) != 0) return b;
  uint64_t header_bytes;
  std::memcpy(&header_bytes, b.data() + 16, 8);
  if (header_bytes > b.size() - 32) return b;
  std::string header = b.substr(32, header_bytes);
  const uint64_t data_start = (32 + header_bytes + packed::kPtqAlign - 1) / packed::kPtqAlign * packed::kPtqAlign;
  try {
    nlohmann::json h = nlohmann::json::parse(header);
    bool changed = false;
    if (h.is_object() && h.contains("blobs") && h["blobs"].is_array())
      for (auto& blob : h["blobs"]) {
        if (!blob.is_object() || !blob.contains("offset") || !blob.contains("bytes")) continue;
        if (!blob["offset"].is_number_unsigned() || !blob["bytes"].is_number_unsigned()) continue;
        const uint64_t off = blob["offset"], n = blob["bytes"];
        if (data_start > b.size() || off > b.size() - data_start || n > b.size() - data_start - off) continue;
        blob["xxh64"] = hex64(XXH64(b.data() + data_start + off, n, 0));
        changed = true;
      }
    if (changed) {
      std::string dumped = h.dump();
      if (dumped.size() <= header.size()) {  // same length keeps data_start: pad with JSON whitespace
        dumped.resize(header.size(), ' ');
        header = dumped;
        b.replace(32, header_bytes, header);
      }
    }
  } catch (const nlohmann::json::exception&) {
  }
  const uint64_t hh = XXH64(header.data(), header.size(), 0);
  std::memcpy(b.data() + 24, &hh, 8);
  return b;
}

void packedFile(const uint8_t* data, size_t size) {
  const std::string path = sandbox() + "/m.ptq";
  const std::string bytes = fixPackedChecksums(std::string(reinterpret_cast<const char*>(data), size));
  writeFile(path, bytes.data(), bytes.size());
  expectClean([&] { packed::describePacked(path, false); });
  expectClean([&] {
    packed::PackedModel pm = packed::readPacked(path);
#ifndef PTQ_FUZZ_READERS_ONLY
    legalize::LegalizeOptions lower;
    lower.prefer_matmulnbits = pm.output_form == "matmulnbits";
    legalize::legalize(pm.model, lower);
    try {
      onnx_io::serializeModel(pm.model);
    } catch (const Error& e) {
      if (e.code() != ExitCode::kOutput) throw;
    }
#endif
  });
}

void npy(const uint8_t* data, size_t size) {
  expectClean([&] {
    ir::Tensor t = calib::parseNpy(std::string(reinterpret_cast<const char*>(data), size), "fuzz.npy");
    (void)calib::parseNpy(calib::serializeNpy(t), "round-trip.npy");
  });
}

void npz(const uint8_t* data, size_t size) {
  expectClean([&] { calib::parseNpz(std::string(reinterpret_cast<const char*>(data), size), "fuzz.npz"); });
}

void tensorProto(const uint8_t* data, size_t size) {
  const std::string path = sandbox() + "/model/t.pb";
  writeFile(path, data, size);
  expectClean([&] {
    ir::Tensor t = onnx_io::loadTensorProtoFile(path);
    if (holdsSecret(t)) finding("a .pb tensor's external data escaped its folder");
  });
}

#ifndef PTQ_FUZZ_READERS_ONLY
void config(const uint8_t* data, size_t size) {
  expectClean([&] {
    const pipeline::QuantConfig c =
        pipeline::parseConfig(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json", passes::builtinPasses());
    // What the tool records as the effective config must read back.
    pipeline::parseConfig(pipeline::configToJson(c), "round-trip.json", passes::builtinPasses());
  });
}

// The manifest sits in the sandbox's model folder, beside weights.bin, sub/ and the symlinks, so
// relative paths, NAME=FILE items and config files beside it resolve to real files.
void batchManifest(const uint8_t* data, size_t size) {
  const std::string path = sandbox() + "/model/manifest.json";
  writeFile(path, data, size);
  expectClean([&] {
    const driver::BatchManifest m = driver::loadBatchManifest(path);
    for (const driver::BatchEntry& e : m.entries) {
      if (e.name.empty() || e.name.find('/') != std::string::npos || e.name == "." || e.name == "..")
        finding("a manifest entry's folder name '" + e.name + "' leaves --out-dir");
      (void)driver::entryDigest(e);
      (void)driver::shardOf(e.name, 3);
    }
  });
}

#endif

const std::vector<Target>& targets() {
  static const std::vector<Target> t = {{"onnx", onnxModel}, {"ptq", packedFile}, {"npy", npy}, {"npz", npz},
                                        {"pb", tensorProto}
#ifndef PTQ_FUZZ_READERS_ONLY
                                        , {"config", config}, {"manifest", batchManifest}
#endif
  };
  return t;
}

}  // namespace ptq::fuzz
