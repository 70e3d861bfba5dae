// .ptq — ptq-tool's packed model file. This comment is the specification.
//
// One file holds a quantized model whose weights keep their true bit width (2, 3, 4, 5, 6, 7 or 8
// bits per code), readable with mmap without copying, and turned back into runnable ONNX by
// `ptq-tool unpack` (DequantizeLinear or MatMulNBits form).
//
// Layout (integers little-endian; offsets in bytes):
//   0    char[8]  magic "PTQPACK\0"
//   8    u32      version: kPtqVersion. Bump it whenever the layout, the JSON schema or the code
//                 packing changes; readers refuse versions they do not know.
//   12   u32      flags: 0
//   16   u64      header_bytes: length of the JSON header
//   24   u64      header_xxh64: XXH64 (seed 0) of the JSON header bytes
//   32   u8[]     JSON header, UTF-8, header_bytes long
//   ...  zero padding up to data_start = the first multiple of 64 after the header
//   data section: blobs; blob offsets are relative to data_start and multiples of 64 (so every blob
//                 is 64-byte aligned in the file), zero padding between them.
//
// JSON header:
//   "format": "ptq-packed", "version": 1,
//   "provenance": {"tool_version", "config" (the effective config), "seed", "source" (input file name),
//                  "source_bytes", "calibration_digest" (XXH64 hex of the calibration data, or null)},
//   "output_form": "qdq" | "matmulnbits"  — what `unpack` writes unless told otherwise,
//   "blobs": [{"name", "offset", "bytes", "xxh64" (16 hex digits)}],
//   "graph": {"blob": i, "encoding": "onnx.ModelProto", "nodes", "inputs", "outputs"}:
//            the model without its quantized weights; every other weight of 4 KiB or more is an ONNX
//            external-data tensor whose offset counts from data_start (so it maps straight out of
//            this file); smaller ones are stored inside the graph blob,
//   "quantized": [{"name", "shape", "bits", "signed", "symmetric", "granularity" (tensor | channel |
//            block), "axis", "block_size", "method", "scale_shape", "mse", "sqnr_db",
//            "codes": blob (numel codes of `bits` bits, row-major over shape, a little-endian bit
//            stream, lowest bit first; signed codes as two's complement in `bits` bits),
//            "scales": blob (float32, scale_shape), "zero_points": blob | null (codes' packing)}].
//   "activations": [{"name", "dtype" (ONNX TensorProto data type), "scale", "zero_point"}]: per-tensor
//            activation quantization (the qdq pass), lowered to QuantizeLinear/DequantizeLinear on unpack.
//            Version 2 adds dynamic entries {"name", "dtype", "dynamic": true, "per_token": bool} (no
//            scale: computed at run time, lib/ir/dynamic_quant.h). A file has version 2 exactly when it
//            holds one, so files without dynamic activations stay readable by version-1 readers.
//   value = (code - zero_point) * scale; scale_shape is [] (tensor), [dim(axis)] (channel), or the
//   weight's shape with dim(axis) divided into ceil(dim / block_size) blocks (block).
//
// Every blob's checksum is verified when a file is unpacked or inspected; a truncated or corrupted
// file is an input error naming the file and the blob.
#pragma once
#include <cstdint>
#include <string>

#include "lib/ir/graph.h"

namespace ptq::packed {

inline constexpr char kPtqMagic[8] = {'P', 'T', 'Q', 'P', 'A', 'C', 'K', '\0'};
inline constexpr uint32_t kPtqVersion = 2;          // the newest version this tool reads and writes
inline constexpr uint32_t kPtqVersionStatic = 1;    // written when no activation is dynamic
inline constexpr uint64_t kPtqAlign = 64;

struct Provenance {
  std::string tool_version;
  std::string config_json;
  uint64_t seed = 0;
  std::string source;
  int64_t source_bytes = 0;
  std::string calibration_digest;  // empty = none
};

struct PackStats {
  uint64_t file_bytes = 0;
  uint64_t payload_bytes = 0;  // codes + scales + zero points + float weights (the blobs' bytes)
};

// Writes a model whose weights carry QuantizedWeight annotations (not yet lowered) atomically.
PackStats writePacked(const ir::Model& model, const std::string& path, const Provenance& prov,
                      const std::string& output_form);

struct PackedModel {
  ir::Model model;          // quantized weights as float initializers (the dequantized values) with
                            // their QuantizedWeight annotation restored, ready to lower
  std::string output_form;  // from the header
  std::string header_json;
};

// Reads and verifies (magic, version, sizes, every checksum). Throws Error(kInput) naming the file.
PackedModel readPacked(const std::string& path);
// True when the file starts with the .ptq magic.
bool isPackedFile(const std::string& path);
// `ptq-tool inspect FILE.ptq`: header summary (or the JSON header itself when json = true).
std::string describePacked(const std::string& path, bool json);

}  // namespace ptq::packed
