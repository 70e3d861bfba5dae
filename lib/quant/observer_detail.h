// Constructors of the histogram observers (observer_histogram.cc), for the factory in
// observer.cc. Options arrive validated. Internal to lib/quant; not an API.
#pragma once
#include <memory>

#include "lib/quant/observer.h"

namespace ptq::quant::detail {

std::unique_ptr<ActivationObserver> makePercentileObserver(double percentile, int bins);
std::unique_ptr<ActivationObserver> makeMseObserver(int bins);
std::unique_ptr<ActivationObserver> makeEntropyObserver(int bins);

}  // namespace ptq::quant::detail
