// The message (and exit code) of the ptq::Error a callable throws; "" when it throws none.
#pragma once
#include <functional>
#include <string>

#include "lib/util/error.h"

namespace ptq::test {

inline std::string errorText(const std::function<void()>& f, ptq::ExitCode* code = nullptr) {
  try {
    f();
  } catch (const ptq::Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  if (code) *code = ptq::ExitCode::kOk;
  return "";
}

}  // namespace ptq::test
