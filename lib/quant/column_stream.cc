#include "lib/quant/column_stream.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "lib/quant/float_order.h"
#include "lib/quant/rtn_detail.h"

namespace ptq::quant::detail {
namespace {

// Columns per task: a row segment of 2 KB, so a task's loads stay within a few pages per row, and a
// [24576]-wide weight still splits into 48 tasks for the threads.
constexpr int64_t kColumnTile = 512;
// Elements below which the OpenMP fork costs more than it saves.
constexpr int64_t kParallelMinElements = int64_t{1} << 15;

// Calls fn(j, c0, c1, x) for every row j of x [d, cols] and every tile [c0, c1) of its columns, x
// pointing at the row's floats c0..c1 (a copy in a per-thread buffer when the rows are not
// float-aligned: a weight viewed inside a protobuf file). Rows are read in chunks (forRowChunks); a
// chunk's tiles are split among the threads, each tile's rows taken in order, so a column's sums see
// its rows in order at any thread count.
template <typename Fn>
void forEachRowTile(const unsigned char* xb, int64_t d, int64_t cols, Fn&& fn) {
  const bool aligned = reinterpret_cast<uintptr_t>(xb) % alignof(float) == 0;
  const int64_t tiles = (cols + kColumnTile - 1) / kColumnTile;
  const bool parallel = d * cols >= kParallelMinElements;
  forRowChunks(xb, d, cols * 4, 1, [&](int64_t j0, int64_t j1) {
#pragma omp parallel if (parallel)
    {
      std::vector<float> scratch(aligned ? 0 : static_cast<size_t>(kColumnTile));
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t c0 = t * kColumnTile, c1 = std::min(cols, c0 + kColumnTile);
        for (int64_t j = j0; j < j1; ++j) {
          const unsigned char* p = xb + (j * cols + c0) * 4;
          const float* x;
          if (aligned) {
            x = reinterpret_cast<const float*>(p);
          } else {
            std::memcpy(scratch.data(), p, static_cast<size_t>(c1 - c0) * 4);
            x = scratch.data();
          }
          fn(j, c0, c1, x);
        }
      }
    }
  });
}

}  // namespace

bool quantizeColumnsStreamed(const unsigned char* xb, int64_t d, int64_t cols, const QuantOptions& opts, uint8_t* codes,
                             float* scales, uint8_t* zero_points, ErrorSums* sums) {
  if (d <= 0 || cols <= 0) return true;

  // Pass 1: each column's range, as rangeWithZero finds it (order keys, starting from zero's key).
  std::vector<uint32_t> kmin(static_cast<size_t>(cols), orderKey(0.0f)), kmax(kmin);
  forEachRowTile(xb, d, cols, [&](int64_t, int64_t c0, int64_t c1, const float* x) {
    columnRangeRow(x, c1 - c0, kmin.data() + c0, kmax.data() + c0);
  });

  const uint32_t key_neg_inf = orderKey(-std::numeric_limits<float>::infinity());
  const uint32_t key_pos_inf = orderKey(std::numeric_limits<float>::infinity());
  std::vector<float> zf(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) {
    const auto i = static_cast<size_t>(c);
    if (kmin[i] <= key_neg_inf || kmax[i] >= key_pos_inf) return false;
    // + 0.0f turns a -0 minimum into +0, as rangeWithZero does.
    const GroupParams p = paramsForRange(fromOrderKey(kmin[i]) + 0.0f, fromOrderKey(kmax[i]), opts.grid);
    scales[c] = p.scale;
    zero_points[c] = toByte(p.zero);
    zf[i] = static_cast<float>(p.zero);
  }

  // Pass 2: codes and error figures; row j's sums go to lane j % kErrorLanes of each column, as
  // element j of a group does in quantizeGroupWithError.
  const auto lane_size = static_cast<size_t>(cols) * kErrorLanes;
  std::vector<double> signal(lane_size, 0.0), noise(lane_size, 0.0);
  std::vector<float> max_abs(static_cast<size_t>(cols), 0.0f);
  forEachRowTile(xb, d, cols, [&](int64_t j, int64_t c0, int64_t c1, const float* x) {
    const int64_t lane = (j % kErrorLanes) * cols + c0;
    quantizeColumnsRow(x, c1 - c0, scales + c0, zf.data() + c0, opts.grid, codes + j * cols + c0,
                       signal.data() + lane, noise.data() + lane, max_abs.data() + c0);
  });

  for (int64_t c = 0; c < cols; ++c) {
    double s[kErrorLanes], n[kErrorLanes];
    for (int l = 0; l < kErrorLanes; ++l) {
      s[l] = signal[static_cast<size_t>(l * cols + c)];
      n[l] = noise[static_cast<size_t>(l * cols + c)];
    }
    sums[c].signal += combineLanes(s);
    sums[c].noise += combineLanes(n);
    sums[c].max_abs = std::max(sums[c].max_abs, static_cast<double>(max_abs[static_cast<size_t>(c)]));
  }
  return true;
}

}  // namespace ptq::quant::detail
