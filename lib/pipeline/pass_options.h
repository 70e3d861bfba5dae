// Typed pass options. Each pass declares its options once (name, type, default, range or choices,
// help) in its registry entry; the config reader parses and validates the "passes.<name>" object
// against that declaration when the config is loaded, fills in the defaults, and hands the pass an
// OptionValues it reads by name with the type it declared. `ptq-tool passes` prints the same table.
// Errors name the file and the key path: "w4a8.json: passes.gptq.damp: must be in (0, 1], got 2".
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ptq::pipeline {

using OptionValue = std::variant<int64_t, double, bool, std::string>;

struct OptionSpec {
  enum class Type { kInt, kFloat, kBool, kString, kChoice, kJson };
  std::string name;
  Type type = Type::kInt;
  OptionValue default_value;
  std::string help;
  // Numeric range (kInt, kFloat); an open end excludes its bound: (0, 1] = {0, 1, lo_open}.
  std::optional<double> lo, hi;
  bool lo_open = false, hi_open = false;
  std::vector<std::string> choices;  // kChoice
  // kString: returns why a value is malformed ("" when it is fine), checked when the config loads.
  std::function<std::string(const std::string&)> check_text;
  // kJson: the same for a JSON value (a list, an object); the value is kept as its compact JSON text.
  std::function<std::string(const nlohmann::json&)> check_json;
  std::string json_type;  // kJson: what it holds, for `ptq-tool passes` ("list", "object")

  static OptionSpec integer(std::string name, int64_t dflt, int64_t lo, int64_t hi, std::string help);
  // A float in a range; `lo_open` / `hi_open` exclude the ends.
  static OptionSpec real(std::string name, double dflt, double lo, double hi, bool lo_open, bool hi_open, std::string help);
  static OptionSpec flag(std::string name, bool dflt, std::string help);
  static OptionSpec choice(std::string name, std::string dflt, std::vector<std::string> choices, std::string help);
  static OptionSpec text(std::string name, std::string dflt, std::function<std::string(const std::string&)> check,
                         std::string help);
  // A JSON list or object (e.g. [2, 3, 4, 8] or {"avg_bits": 3}); `dflt` is its JSON text; `check` says why
  // a value is malformed ("" when fine). Read back with OptionValues::jsonValue.
  static OptionSpec jsonValue(std::string name, std::string json_type, std::string dflt,
                              std::function<std::string(const nlohmann::json&)> check, std::string help);

  std::string typeName() const;     // "int", "float", "bool", "string", "one of a|b"
  std::string rangeText() const;    // "(0, 1]", "1..1000", "" when unbounded
  std::string defaultText() const;  // as written in JSON
};

// Validated values of one pass's options, defaults filled in.
class OptionValues {
 public:
  int64_t integer(const std::string& name) const;
  double real(const std::string& name) const;
  bool flag(const std::string& name) const;
  const std::string& text(const std::string& name) const;  // kString and kChoice
  nlohmann::json jsonValue(const std::string& name) const;  // kJson
  bool given(const std::string& name) const { return given_.count(name) != 0; }  // in the config, not defaulted
  // The effective values as a JSON object text (for the report and provenance).
  std::string toJson() const;

 private:
  friend OptionValues parseOptions(const std::vector<OptionSpec>&, const nlohmann::json&, const std::string&);
  const OptionValue& at(const std::string& name) const;
  std::map<std::string, OptionValue> values_;
  std::map<std::string, bool> given_;
  std::map<std::string, bool> is_json_;
};

// Parses `options` (a JSON object, or null = all defaults) against `specs`. `where` prefixes errors
// ("w4a8.json: passes.gptq"). Throws Error(kUsage) for unknown keys, wrong types, values out of range.
OptionValues parseOptions(const std::vector<OptionSpec>& specs, const nlohmann::json& options, const std::string& where);

}  // namespace ptq::pipeline
