// Fuzz harnesses: one function per reader, shared by the libFuzzer targets (libfuzzer_main.cc, built
// with clang when -DPTQ_FUZZ=ON) and by the normal test suite, which replays every input kept in
// tests/fuzz/regressions/<target>/ (tests/unit/test_fuzz_regressions.cc).
//
// Contract of a harness: any input either reads, or fails with ptq::Error whose code is an input or
// usage error (what `ptq-tool` turns into exit 2 or 1). Anything else is a finding and escapes the
// harness: another exception type (the CLI's exit 5 "internal error"), ptq::Error(kInternal), an
// abort from an oracle below, or — under the sanitizers — a memory or UB report.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ptq::fuzz {

using Harness = void (*)(const uint8_t* data, size_t size);

// bytes -> .onnx file in a sandbox folder -> loadModel -> verify -> serialize -> parse again.
// The sandbox holds external-data files inside the model's folder, and a secret outside it (reachable
// by "../secret.bin" and through a symlink): a model whose weights carry the secret aborts.
void onnxModel(const uint8_t* data, size_t size);
// bytes (checksums recomputed so mutations get past them) -> .ptq file -> inspect -> read -> legalize
// -> serialize. (Built with PTQ_FUZZ_READERS_ONLY, the fuzz build's reader-only library, it stops after
// read; there is no config target either: those two need the passes.)
void packedFile(const uint8_t* data, size_t size);
void npy(const uint8_t* data, size_t size);
void npz(const uint8_t* data, size_t size);
// ONNX TensorProto (.pb) tensor files, as calibration data.
void tensorProto(const uint8_t* data, size_t size);
// Config JSON text -> parseConfig against the built-in pass table -> configToJson -> parse again.
void config(const uint8_t* data, size_t size);
// Batch manifest JSON (in the sandbox's model folder) -> loadBatchManifest -> each entry's resume
// digest and shard; an entry folder name that could leave --out-dir is a finding.
void batchManifest(const uint8_t* data, size_t size);

struct Target {
  const char* name;  // also the folder name under tests/fuzz/regressions and seeds
  Harness run;
};
const std::vector<Target>& targets();

// Rewrites a .ptq image so that its header checksum and every blob checksum match (when the header
// parses); used by packedFile and by tests that build damaged files.
std::string fixPackedChecksums(std::string bytes);

}  // namespace ptq::fuzz
