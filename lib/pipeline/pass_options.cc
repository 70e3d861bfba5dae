#include "lib/pipeline/pass_options.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "lib/util/error.h"

namespace ptq::pipeline {

using nlohmann::json;

OptionSpec OptionSpec::integer(std::string name, int64_t dflt, int64_t lo, int64_t hi, std::string help) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = Type::kInt;
  s.default_value = dflt;
  s.lo = static_cast<double>(lo);
  s.hi = static_cast<double>(hi);
  s.help = std::move(help);
  return s;
}

OptionSpec OptionSpec::real(std::string name, double dflt, double lo, double hi, bool lo_open, bool hi_open, std::string help) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = Type::kFloat;
  s.default_value = dflt;
  s.lo = lo;
  s.hi = hi;
  s.lo_open = lo_open;
  s.hi_open = hi_open;
  s.help = std::move(help);
  return s;
}

OptionSpec OptionSpec::flag(std::string name, bool dflt, std::string help) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = Type::kBool;
  s.default_value = dflt;
  s.help = std::move(help);
  return s;
}

OptionSpec OptionSpec::choice(std::string name, std::string dflt, std::vector<std::string> choices, std::string help) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = Type::kChoice;
  s.default_value = std::move(dflt);
  s.choices = std::move(choices);
  s.help = std::move(help);
  return s;
}

OptionSpec OptionSpec::text(std::string name, std::string dflt, std::function<std::string(const std::string&)> check,
                            std::string help) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = Type::kString;
  s.default_value = std::move(dflt);
  s.check_text = std::move(check);
  s.help = std::move(help);
  return s;
}

OptionSpec OptionSpec::jsonValue(std::string name, std::string json_type, std::string dflt,
                                 std::function<std::string(const json&)> check, std::string help) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = Type::kJson;
  s.json_type = std::move(json_type);
  s.default_value = json::parse(dflt).dump();
  s.check_json = std::move(check);
  s.help = std::move(help);
  return s;
}

namespace {
std::string number(double v) {
  std::ostringstream o;
  o << std::setprecision(12) << v;  // integers up to 2^40 exactly, not 1.04858e+06
  return o.str();
}
std::string joined(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (const auto& e : v) s += (s.empty() ? "" : sep) + e;
  return s;
}
}  // namespace

std::string OptionSpec::typeName() const {
  switch (type) {
    case Type::kInt: return "int";
    case Type::kFloat: return "float";
    case Type::kBool: return "bool";
    case Type::kString: return "string";
    case Type::kChoice: return "one of " + joined(choices, "|");
    case Type::kJson: return json_type;
  }
  return "?";
}

std::string OptionSpec::rangeText() const {
  if (!lo && !hi) return "";
  if (type == Type::kInt) return number(*lo) + ".." + number(*hi);
  return std::string(lo_open ? "(" : "[") + number(*lo) + ", " + number(*hi) + (hi_open ? ")" : "]");
}

std::string OptionSpec::defaultText() const {
  if (type == Type::kJson) return std::get<std::string>(default_value);
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) return "\"" + v + "\"";
        else if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
        else return number(static_cast<double>(v));
      },
      default_value);
}

const OptionValue& OptionValues::at(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throwInternal("pass option '" + name + "' is not declared");
  return it->second;
}

int64_t OptionValues::integer(const std::string& name) const { return std::get<int64_t>(at(name)); }
double OptionValues::real(const std::string& name) const { return std::get<double>(at(name)); }
bool OptionValues::flag(const std::string& name) const { return std::get<bool>(at(name)); }
const std::string& OptionValues::text(const std::string& name) const { return std::get<std::string>(at(name)); }
json OptionValues::jsonValue(const std::string& name) const { return json::parse(std::get<std::string>(at(name))); }

std::string OptionValues::toJson() const {
  json j = json::object();
  for (const auto& [k, v] : values_) {
    if (is_json_.count(k)) j[k] = json::parse(std::get<std::string>(v));
    else std::visit([&, key = k](const auto& x) { j[key] = x; }, v);
  }
  return j.dump();
}

OptionValues parseOptions(const std::vector<OptionSpec>& specs, const json& options, const std::string& where) {
  if (!options.is_null() && !options.is_object()) throwUsage(where + ": must be an object");
  OptionValues out;
  for (const auto& s : specs) {
    out.values_[s.name] = s.default_value;
    if (s.type == OptionSpec::Type::kJson) out.is_json_[s.name] = true;
  }
  if (options.is_null()) return out;
  for (auto it = options.begin(); it != options.end(); ++it) {
    const std::string key = where + "." + it.key();
    const OptionSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.name == it.key()) spec = &s;
    if (!spec) {
      std::vector<std::string> names;
      for (const auto& s : specs) names.push_back(s.name);
      throwUsage(key + ": unknown option" + (names.empty() ? " (this pass takes none)" : " (known: " + joined(names, ", ") + ")"));
    }
    const json& v = it.value();
    auto wrong = [&]() { throwUsage(key + ": must be " + spec->typeName() + ", got " + v.dump()); };
    auto checkRange = [&](double x) {
      const bool below = spec->lo && (spec->lo_open ? x <= *spec->lo : x < *spec->lo);
      const bool above = spec->hi && (spec->hi_open ? x >= *spec->hi : x > *spec->hi);
      if (below || above || !std::isfinite(x)) throwUsage(key + ": must be in " + spec->rangeText() + ", got " + v.dump());
    };
    switch (spec->type) {
      case OptionSpec::Type::kInt:
        if (!v.is_number_integer()) wrong();
        checkRange(static_cast<double>(v.get<int64_t>()));
        out.values_[spec->name] = v.get<int64_t>();
        break;
      case OptionSpec::Type::kFloat:
        if (!v.is_number()) wrong();
        checkRange(v.get<double>());
        out.values_[spec->name] = v.get<double>();
        break;
      case OptionSpec::Type::kBool:
        if (!v.is_boolean()) wrong();
        out.values_[spec->name] = v.get<bool>();
        break;
      case OptionSpec::Type::kString:
        if (!v.is_string()) wrong();
        if (spec->check_text)
          if (const std::string why = spec->check_text(v.get<std::string>()); !why.empty()) throwUsage(key + ": " + why);
        out.values_[spec->name] = v.get<std::string>();
        break;
      case OptionSpec::Type::kChoice: {
        if (!v.is_string()) wrong();
        const std::string s = v.get<std::string>();
        bool ok = false;
        for (const auto& c : spec->choices) ok = ok || c == s;
        if (!ok) throwUsage(key + ": '" + s + "' is not one of: " + joined(spec->choices, ", "));
        out.values_[spec->name] = s;
        break;
      }
      case OptionSpec::Type::kJson:
        if (spec->check_json)
          if (const std::string why = spec->check_json(v); !why.empty()) throwUsage(key + ": " + why + ", got " + v.dump());
        out.values_[spec->name] = v.dump();
        break;
    }
    out.given_[spec->name] = true;
  }
  return out;
}

}  // namespace ptq::pipeline
