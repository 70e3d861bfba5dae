// The observer registry (one table drives the factory, option checks and observerNames) and the
// running-statistics observers: MinMax and moving-average MinMax, per tensor and per channel.
// Histogram observers live in observer_histogram.cc.
#include "lib/quant/observer.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "lib/quant/histogram.h"
#include "lib/quant/observer_detail.h"
#include "lib/util/error.h"

namespace ptq::quant {
namespace {

// ---- registry ----------------------------------------------------------------------------------

struct ObserverEntry {
  const char* name;
  bool per_channel;  // makeChannelObserver knows it too
  bool takes_percentile, takes_momentum, takes_bins;
};

constexpr ObserverEntry kObservers[] = {
    {"minmax", true, false, false, false},
    {"moving_minmax", true, false, true, false},
    {"percentile", false, true, false, true},
    {"mse", false, false, false, true},
    {"entropy", false, false, false, true},
};

std::string quoted(const std::string& s) { return "'" + s + "'"; }

const ObserverEntry& findObserver(const std::string& name) {
  for (const ObserverEntry& e : kObservers) {
    if (name == e.name) return e;
  }
  std::string known;
  for (const ObserverEntry& e : kObservers) known += (known.empty() ? "" : ", ") + std::string(e.name);
  throwUsage("unknown observer " + quoted(name) + " (known: " + known + ")");
}

// Rejects options the observer does not read and values out of range; both name the option.
void checkOptions(const ObserverEntry& e, const ObserverOptions& o) {
  const std::string who = "observer " + quoted(e.name);
  auto unread = [&](bool set, bool takes, const char* opt) {
    if (set && !takes) throwUsage(who + " does not take option " + quoted(opt));
  };
  unread(o.percentile.has_value(), e.takes_percentile, "percentile");
  unread(o.momentum.has_value(), e.takes_momentum, "momentum");
  unread(o.bins.has_value(), e.takes_bins, "bins");
  // Below the median the upper clip would fall under the lower one.
  if (o.percentile && !(*o.percentile >= 50.0 && *o.percentile <= 100.0)) {
    throwUsage(who + ": option 'percentile' must be in [50, 100], got " + std::to_string(*o.percentile));
  }
  // 0 would never move past the first batch.
  if (o.momentum && !(*o.momentum > 0.0 && *o.momentum <= 1.0)) {
    throwUsage(who + ": option 'momentum' must be in (0, 1], got " + std::to_string(*o.momentum));
  }
  if (o.bins && (*o.bins < kMinHistogramBins || *o.bins > kMaxHistogramBins || *o.bins % 2 != 0)) {
    throwUsage(who + ": option 'bins' must be an even number in [" + std::to_string(kMinHistogramBins) + ", " +
               std::to_string(kMaxHistogramBins) + "], got " + std::to_string(*o.bins));
  }
}

[[noreturn]] void throwNothingObserved(const char* name) {
  throwInput(std::string("observer '") + name + "': no values observed");
}

// ---- per tensor ----------------------------------------------------------------------------------

class MinMaxObserver final : public ActivationObserver {
 public:
  void observe(const float* x, int64_t n) override {
    const ValueRange r = scanFiniteRange("observer 'minmax'", x, n);
    if (n == 0) return;
    min_ = count_ == 0 ? r.min : std::min(min_, r.min);
    max_ = count_ == 0 ? r.max : std::max(max_, r.max);
    count_ += n;
  }
  RangeResult compute(const GridSpec& g) const override {
    validateActivationGrid(g);
    if (count_ == 0) throwNothingObserved(name());
    return rangeResultFor(min_, max_, g);
  }
  int64_t count() const override { return count_; }
  const char* name() const override { return "minmax"; }

 private:
  float min_ = 0.0f, max_ = 0.0f;
  int64_t count_ = 0;
};

// PyTorch's MovingAverageMinMaxObserver: the first batch sets the statistics, each later one moves
// them by momentum * (batch - running). Kept in double; empty batches are skipped.
class MovingMinMaxObserver final : public ActivationObserver {
 public:
  explicit MovingMinMaxObserver(double momentum) : momentum_(momentum) {}
  void observe(const float* x, int64_t n) override {
    const ValueRange r = scanFiniteRange("observer 'moving_minmax'", x, n);
    if (n == 0) return;
    if (count_ == 0) {
      min_ = r.min;
      max_ = r.max;
    } else {
      min_ += momentum_ * (static_cast<double>(r.min) - min_);
      max_ += momentum_ * (static_cast<double>(r.max) - max_);
    }
    count_ += n;
  }
  RangeResult compute(const GridSpec& g) const override {
    validateActivationGrid(g);
    if (count_ == 0) throwNothingObserved(name());
    return rangeResultFor(static_cast<float>(min_), static_cast<float>(max_), g);
  }
  int64_t count() const override { return count_; }
  const char* name() const override { return "moving_minmax"; }

 private:
  double momentum_;
  double min_ = 0.0, max_ = 0.0;
  int64_t count_ = 0;
};

// ---- per channel ---------------------------------------------------------------------------------

// Both channel observers: exact min / max, or (moving) the running average of MovingMinMaxObserver.
class ChannelMinMaxObserver final : public ChannelObserver {
 public:
  ChannelMinMaxObserver(bool moving, double momentum) : moving_(moving), momentum_(momentum) {}

  void observe(const float* x, int64_t rows, int64_t channels) override {
    if (rows < 0 || channels < 1) {
      throwUsage(std::string("observer '") + name() + "': bad batch shape [" + std::to_string(rows) + ", " +
                 std::to_string(channels) + "]");
    }
    if (channels_ != 0 && channels != channels_) {
      throwInput(std::string("observer '") + name() + "': batch has " + std::to_string(channels) +
                 " channels, earlier batches had " + std::to_string(channels_));
    }
    if (rows == 0) return;
    const std::vector<ValueRange> r = scanFiniteChannelRanges(name(), x, rows, channels);
    const size_t nc = static_cast<size_t>(channels);
    if (channels_ == 0) {
      channels_ = channels;
      min_.resize(nc);
      max_.resize(nc);
      for (size_t c = 0; c < nc; ++c) {
        min_[c] = r[c].min;
        max_[c] = r[c].max;
      }
    } else if (!moving_) {
      for (size_t c = 0; c < nc; ++c) {
        min_[c] = std::min(min_[c], static_cast<double>(r[c].min));
        max_[c] = std::max(max_[c], static_cast<double>(r[c].max));
      }
    } else {
      for (size_t c = 0; c < nc; ++c) {
        min_[c] += momentum_ * (static_cast<double>(r[c].min) - min_[c]);
        max_[c] += momentum_ * (static_cast<double>(r[c].max) - max_[c]);
      }
    }
  }

  std::vector<RangeResult> compute(const GridSpec& g) const override {
    validateActivationGrid(g);
    if (channels_ == 0) throwNothingObserved(name());
    std::vector<RangeResult> out(min_.size());
    for (size_t c = 0; c < out.size(); ++c) {
      out[c] = rangeResultFor(static_cast<float>(min_[c]), static_cast<float>(max_[c]), g);
    }
    return out;
  }
  int64_t channels() const override { return channels_; }
  const char* name() const override { return moving_ ? "moving_minmax" : "minmax"; }

 private:
  bool moving_;
  double momentum_;
  int64_t channels_ = 0;
  std::vector<double> min_, max_;  // exact for floats (minmax) or the running average
};

}  // namespace

RangeResult rangeResultFor(float lo, float hi, const GridSpec& g) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) {
    throwInternal("rangeResultFor: non-finite range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  RangeResult r;
  r.lo = std::min(lo, 0.0f) + 0.0f;
  r.hi = std::max(hi, 0.0f) + 0.0f;
  if (g.symmetric) {
    const float a = std::max(-r.lo, r.hi);
    r.lo = -a + 0.0f;
    r.hi = a;
  }
  r.params = paramsForRange(r.lo, r.hi, g);
  return r;
}

std::unique_ptr<ActivationObserver> makeObserver(const std::string& name, const ObserverOptions& opts) {
  const ObserverEntry& e = findObserver(name);
  checkOptions(e, opts);
  const std::string n = e.name;
  if (n == "minmax") return std::make_unique<MinMaxObserver>();
  if (n == "moving_minmax") return std::make_unique<MovingMinMaxObserver>(opts.momentum.value_or(kDefaultMomentum));
  const int bins = opts.bins.value_or(kDefaultBins);
  if (n == "percentile") return detail::makePercentileObserver(opts.percentile.value_or(kDefaultPercentile), bins);
  if (n == "mse") return detail::makeMseObserver(bins);
  if (n == "entropy") return detail::makeEntropyObserver(bins);
  throwInternal("observer table entry " + quoted(n) + " has no constructor");
}

std::unique_ptr<ChannelObserver> makeChannelObserver(const std::string& name, const ObserverOptions& opts) {
  const ObserverEntry& e = findObserver(name);
  if (!e.per_channel) {
    std::string known;
    for (const ObserverEntry& k : kObservers) {
      if (k.per_channel) known += (known.empty() ? "" : ", ") + std::string(k.name);
    }
    throwUsage("observer " + quoted(name) + " has no per-channel form (per-channel: " + known + ")");
  }
  checkOptions(e, opts);
  const std::string n = e.name;
  return std::make_unique<ChannelMinMaxObserver>(n == "moving_minmax", opts.momentum.value_or(kDefaultMomentum));
}

std::vector<std::string> observerNames() {
  std::vector<std::string> names;
  for (const ObserverEntry& e : kObservers) names.emplace_back(e.name);
  return names;
}

}  // namespace ptq::quant
