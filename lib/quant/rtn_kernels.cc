// Fast RTN kernels. Same math as rtn_kernels_ref.cc; the per-group loops (rtn_group_kernels.inc) are
// shaped so that gcc -O3 vectorizes them without -ffast-math (check with -fopt-info-vec), built for
// three instruction sets and chosen at run time; the work is split over groups, which are
// independent, so neither the thread count nor the instruction set can change a single byte.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "lib/quant/float_order.h"
#include "lib/quant/rtn_detail.h"
#include "lib/quant/rtn_kernels.h"

namespace ptq::quant {
namespace {

// Below this many elements the OpenMP fork costs more than it saves.
constexpr int64_t kParallelMinElements = int64_t{1} << 15;

// The code grid as floats, so clamping happens before the (otherwise UB on overflow) int conversion.
struct FloatGrid {
  float lo, hi;
  explicit FloatGrid(const GridSpec& g) : lo(static_cast<float>(codeMin(g))), hi(static_cast<float>(codeMax(g))) {}
};

namespace isa_baseline {
constexpr bool kHasFma = false;
#include "lib/quant/rtn_group_kernels.inc"
}  // namespace isa_baseline

// gcc builds the wider variants with target pragmas. clang (the fuzzing build) has no such pragma:
// there only the baseline variant exists and is used.
#if defined(__GNUC__) && !defined(__clang__)
#define PTQ_RTN_WIDE_KERNELS 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2")
namespace isa_avx2 {
constexpr bool kHasFma = true;
#include "lib/quant/rtn_group_kernels.inc"
}  // namespace isa_avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi,bmi2,prefer-vector-width=512")
namespace isa_avx512 {
constexpr bool kHasFma = true;
#include "lib/quant/rtn_group_kernels.inc"
}  // namespace isa_avx512
#pragma GCC pop_options
#else
#define PTQ_RTN_WIDE_KERNELS 0
namespace isa_avx2 = isa_baseline;
namespace isa_avx512 = isa_baseline;
#endif

struct GroupKernels {
  const char* name;
  bool (*fit)(const float*, int64_t, const QuantOptions&, GroupParams*);
  double (*error)(const float*, int64_t, const GroupParams&, const FloatGrid&);
  void (*quantize)(const float*, int64_t, const GroupParams&, const FloatGrid&, uint8_t*);
  bool (*row)(const float*, int64_t, int64_t, const QuantOptions&, uint8_t*, float*, uint8_t*, ErrorSums*);
  void (*column_range)(const float*, int64_t, uint32_t*, uint32_t*);
  void (*column_row)(const float*, int64_t, const float*, const float*, const FloatGrid&, uint8_t*,
                     double*, double*, float*);
};

#define PTQ_GROUP_KERNELS(ns, name) \
  GroupKernels {                                                                                             \
    name, ns::fitGroupEntry, ns::groupErrorEntry, ns::quantizeGroupEntry, ns::quantizeRowEntry,                \
        ns::columnRangeRowEntry, ns::quantizeColumnsRowEntry                                                    \
  }
const GroupKernels kBaseline = PTQ_GROUP_KERNELS(isa_baseline, "baseline");
const GroupKernels kAvx2 = PTQ_GROUP_KERNELS(isa_avx2, "avx2");
const GroupKernels kAvx512 = PTQ_GROUP_KERNELS(isa_avx512, "avx512");
#undef PTQ_GROUP_KERNELS

bool cpuHas(const GroupKernels& k) {
  if (!PTQ_RTN_WIDE_KERNELS && &k != &kBaseline) return false;
  if (&k == &kAvx512) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && cpuHas(kAvx2);
  }
  if (&k == &kAvx2) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
  }
  return true;
}

const GroupKernels* byName(const std::string& name) {
  for (const GroupKernels* k : {&kAvx512, &kAvx2, &kBaseline})
    if (name == k->name) return k;
  return nullptr;
}

// The widest the CPU has, or PTQ_RTN_ISA's choice when the CPU has it (benchmarks compare them).
const GroupKernels* pickKernels() {
  if (const char* env = std::getenv("PTQ_RTN_ISA")) {
    const GroupKernels* k = byName(env);
    if (k && cpuHas(*k)) return k;
  }
  for (const GroupKernels* k : {&kAvx512, &kAvx2})
    if (cpuHas(*k)) return k;
  return &kBaseline;
}

std::atomic<const GroupKernels*> g_kernels{nullptr};

const GroupKernels& kernels() {
  const GroupKernels* k = g_kernels.load(std::memory_order_acquire);
  if (!k) {
    k = pickKernels();
    g_kernels.store(k, std::memory_order_release);
  }
  return *k;
}

bool fitGroupFast(const float* x, int64_t n, const QuantOptions& opts, GroupParams* out) {
  return kernels().fit(x, n, opts, out);
}

double groupError(const float* x, int64_t n, const GroupParams& p, const FloatGrid& fg) {
  return kernels().error(x, n, p, fg);
}

void quantizeGroup(const float* x, int64_t n, const GroupParams& p, const FloatGrid& fg, uint8_t* out) {
  kernels().quantize(x, n, p, fg, out);
}

}  // namespace

double groupSquaredError(const float* x, int64_t n, const GroupParams& p, const GridSpec& g) {
  return groupError(x, n, p, FloatGrid(g));
}

GroupParams fitGroup(const float* x, int64_t n, const QuantOptions& opts) {
  validateOptions(opts);
  if (n < 1 || x == nullptr) throwUsage("fitGroup: need n >= 1 values, got " + std::to_string(n));
  GroupParams p;
  if (!fitGroupFast(x, n, opts, &p)) detail::throwNonFiniteAt("fitGroup", x, detail::firstNonFinite(x, n));
  return p;
}

QuantizedRows quantizeRows(const float* x, int64_t rows, int64_t cols, int64_t group, const QuantOptions& opts) {
  QuantizedRows q = detail::allocateRows("quantizeRows", x, rows, cols, group, opts);
  quantizeRowsInto(x, opts, &q);
  return q;
}

void quantizeRowsInto(const float* x, const QuantOptions& opts, QuantizedRows* out) {
  QuantizedRows& q = *out;
  detail::checkRows("quantizeRowsInto", q, x);
  validateOptions(opts);
  if (opts.grid.bits != q.grid.bits || opts.grid.symmetric != q.grid.symmetric || opts.grid.is_signed != q.grid.is_signed)
    throwInternal("quantizeRowsInto: opts.grid differs from the grid the output was sized for");
  const int64_t rows = q.rows, cols = q.cols, group = q.group;
  const int64_t gpr = q.groups_per_row;
  const int64_t total = rows * gpr;
  const FloatGrid fg(opts.grid);
  // Exceptions cannot leave an OpenMP region: record the first bad group (the lowest index is the
  // first NaN/Inf in row-major order, as the reference reports it) and throw afterwards.
  int64_t first_bad = total;
#pragma omp parallel for schedule(static) reduction(min : first_bad) if (rows * cols >= kParallelMinElements)
  for (int64_t t = 0; t < total; ++t) {
    const int64_t r = t / gpr;
    const int64_t begin = (t % gpr) * group;
    const int64_t n = std::min(group, cols - begin);
    const float* xg = x + r * cols + begin;
    GroupParams p;
    if (!fitGroupFast(xg, n, opts, &p)) {
      first_bad = std::min(first_bad, t);
      continue;
    }
    q.scales[t] = p.scale;
    q.zero_points[t] = toByte(p.zero);
    quantizeGroup(xg, n, p, fg, q.codes.data() + r * cols + begin);
  }
  if (first_bad < total) {
    const int64_t r = first_bad / gpr;
    detail::throwNonFinite("quantizeRows", x + r * cols, r, detail::firstNonFinite(x + r * cols, cols));
  }
}

void dequantizeRows(const QuantizedRows& q, float* out) {
  detail::checkRows("dequantizeRows", q, out);
  const int64_t gpr = q.groups_per_row;
  const int64_t total = q.rows * gpr;
  // Signed bytes are sign-extended arithmetically ((b ^ 0x80) - 0x80) so the loop stays branch-free.
  const int32_t flip = q.grid.is_signed ? 0x80 : 0;
#pragma omp parallel for schedule(static) if (q.rows * q.cols >= kParallelMinElements)
  for (int64_t t = 0; t < total; ++t) {
    const int64_t r = t / gpr;
    const int64_t begin = (t % gpr) * q.group;
    const int64_t n = std::min(q.group, q.cols - begin);
    const uint8_t* c = q.codes.data() + r * q.cols + begin;
    float* o = out + r * q.cols + begin;
    const float s = q.scales[t];
    const int32_t z = fromByte(q.zero_points[t], q.grid);
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(((static_cast<int32_t>(c[i]) ^ flip) - flip) - z) * s;
  }
}


bool quantizeRowWithError(const float* x, int64_t cols, int64_t group, const QuantOptions& opts, uint8_t* codes,
                          float* scales, uint8_t* zero_points, ErrorSums* sums) {
  return kernels().row(x, cols, group, opts, codes, scales, zero_points, sums);
}

void columnRangeRow(const float* x, int64_t n, uint32_t* kmin, uint32_t* kmax) {
  kernels().column_range(x, n, kmin, kmax);
}

void quantizeColumnsRow(const float* x, int64_t n, const float* s, const float* z, const GridSpec& g,
                        uint8_t* codes, double* signal, double* noise, float* max_abs) {
  kernels().column_row(x, n, s, z, FloatGrid(g), codes, signal, noise, max_abs);
}

const char* rtnKernelIsa() { return kernels().name; }

bool setRtnKernelIsa(const std::string& name) {
  const GroupKernels* k = name.empty() ? pickKernels() : byName(name);
  if (!k || !cpuHas(*k)) return false;
  g_kernels.store(k, std::memory_order_release);
  return true;
}
}  // namespace ptq::quant
