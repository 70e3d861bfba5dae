// Errors that travel to the CLI: each carries the exit code the user sees and a message that
// names the file, node or config key it is about. Context is prepended as the error travels up.
#pragma once
#include <stdexcept>
#include <string>

namespace ptq {

// Exit codes, documented in README.md ("Exit codes"). Keep both in sync.
enum class ExitCode : int {
  kOk = 0,
  kUsage = 1,        // bad command line or config (unknown key, wrong type, out of range)
  kInput = 2,        // unreadable / invalid model or data file, unsupported op or dtype
  kAccuracyGate = 3, // an accuracy gate failed (evaluation)
  kOutput = 4,       // the output could not be written (directory missing, not writable, same as input)
  kInternal = 5,     // a bug: an invariant of the tool itself broke
  kBatchFailed = 6,  // batch: at least one model failed (or a shard summary is missing from --merge)
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  ExitCode code() const { return code_; }
  // Returns a copy whose message is "context: <old message>".
  Error withContext(const std::string& context) const { return Error(code_, context + ": " + what()); }

 private:
  ExitCode code_;
};

[[noreturn]] inline void throwUsage(const std::string& m) { throw Error(ExitCode::kUsage, m); }
[[noreturn]] inline void throwInput(const std::string& m) { throw Error(ExitCode::kInput, m); }
[[noreturn]] inline void throwOutput(const std::string& m) { throw Error(ExitCode::kOutput, m); }
[[noreturn]] inline void throwInternal(const std::string& m) { throw Error(ExitCode::kInternal, m); }

}  // namespace ptq
