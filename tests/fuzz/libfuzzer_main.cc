// libFuzzer entry point for one harness (PTQ_FUZZ_TARGET names it, e.g. onnxModel). Built by
// tests/fuzz/CMakeLists.txt with clang when -DPTQ_FUZZ=ON; run through scripts/fuzz.sh.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "tests/fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ptq::fuzz::PTQ_FUZZ_TARGET(data, size);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz finding: uncaught exception (the CLI would exit 5): %s\n", e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "fuzz finding: uncaught non-standard exception\n");
    std::abort();
  }
  return 0;
}
