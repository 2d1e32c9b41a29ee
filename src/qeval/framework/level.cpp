#include "qeval/framework/level.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fmt/format.h>

#include "qeval/util/error.h"

namespace qeval::framework {
namespace {

[[noreturn]] void fail_at(const std::string& file, const YAML::Node& n, const std::string& what) {
  const int line = n.Mark().line;
  throw Error(file + (line >= 0 ? ":" + std::to_string(line + 1) : std::string()) + ": " + what);
}

std::vector<std::string> strings(const std::string& file, const YAML::Node& n, const std::string& key) {
  if (!n.IsSequence()) fail_at(file, n, key + ": expected a list");
  std::vector<std::string> out;
  for (const auto& x : n) {
    if (!x.IsScalar()) fail_at(file, x, key + ": expected strings");
    out.push_back(x.Scalar());
  }
  return out;
}

std::string required(const std::string& file, const YAML::Node& n, const std::string& key) {
  if (!n[key] || !n[key].IsScalar()) fail_at(file, n, "'" + key + "' is required");
  return n[key].Scalar();
}

std::string join_words(const std::vector<std::string>& xs) {
  if (xs.empty()) return "";
  if (xs.size() == 1) return xs[0];
  std::string s;
  for (size_t i = 0; i + 1 < xs.size(); ++i) s += (i ? ", " : "") + xs[i];
  return s + " and " + xs.back();
}

}  // namespace

std::string short_sub_dimension(const std::string& s) {
  const std::string prefix = "knowledge_capacity/";
  return s.rfind(prefix, 0) == 0 ? s.substr(prefix.size()) : s;
}

CoverageRules load_coverage_rules(const std::filesystem::path& path) {
  const std::string file = path.string();
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    throw Error(file + ": cannot read coverage rules");
  } catch (const YAML::Exception& e) {
    throw Error(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  CoverageRules r;
  r.file = file;
  if (!root.IsMap()) throw Error(file + ": coverage rules must be a YAML mapping");
  if (root["min_items"]) r.min_items = root["min_items"].as<int64_t>();
  if (!root["areas"] || !root["areas"].IsMap()) fail_at(file, root, "'areas' mapping is required");
  for (const auto& kv : root["areas"]) {
    r.area_order.push_back(kv.first.Scalar());
    r.area_labels[kv.first.Scalar()] = kv.second.Scalar();
  }
  if (!root["dimensions"] || !root["dimensions"].IsMap()) fail_at(file, root, "'dimensions' mapping is required");
  for (const auto& kv : root["dimensions"]) {
    const std::string dim = kv.first.Scalar();
    r.dimension_labels[dim] = kv.second["label"] ? kv.second["label"].Scalar() : dim;
    const YAML::Node subs = kv.second["sub_dimensions"];
    if (!subs) fail_at(file, kv.second, "dimension '" + dim + "': 'sub_dimensions' is required");
    if (subs.IsMap()) {
      for (const auto& g : subs) {
        r.efficiency_groups[g.first.Scalar()] = strings(file, g.second, g.first.Scalar());
        r.dimension_sub_dimensions[dim].push_back(g.first.Scalar());
      }
    } else {
      r.dimension_sub_dimensions[dim] = strings(file, subs, "sub_dimensions");
    }
  }
  if (!root["levels"] || !root["levels"].IsSequence()) fail_at(file, root, "'levels' list is required");
  for (const auto& l : root["levels"]) {
    LevelRule lr;
    lr.id = required(file, l, "id");
    lr.name = required(file, l, "name");
    lr.summary = required(file, l, "summary");
    if (!l["requirements"] || !l["requirements"].IsSequence()) fail_at(file, l, "level '" + lr.id + "': 'requirements' list is required");
    for (const auto& q : l["requirements"]) {
      Requirement req;
      req.id = required(file, q, "id");
      req.area = required(file, q, "area");
      req.fact = required(file, q, "fact");
      req.need = required(file, q, "need");
      if (const auto pos = req.need.find("min_items"); pos != std::string::npos)
        req.need.replace(pos, 9, std::to_string(r.min_items));
      if (!r.area_labels.count(req.area)) fail_at(file, q, "requirement '" + req.id + "': unknown area '" + req.area + "'");
      if (q["at_least"]) req.at_least = q["at_least"].as<int64_t>();
      if (q["includes"]) req.includes = strings(file, q["includes"], "includes");
      if (req.at_least < 0 && req.includes.empty())
        fail_at(file, q, "requirement '" + req.id + "': needs 'at_least' or 'includes'");
      lr.requirements.push_back(std::move(req));
    }
    r.levels.push_back(std::move(lr));
  }
  if (r.levels.empty()) throw Error(file + ": no levels");
  return r;
}

std::map<std::string, std::set<std::string>> coverage_facts(const CoverageEvidence& e, const CoverageRules& rules) {
  std::map<std::string, std::set<std::string>> f;
  for (const char* dim : {"quality", "alignment", "robustness"}) {
    f[std::string(dim) + ".sub_dimensions"];
    f[std::string(dim) + ".valid"];
  }
  for (const auto& q : e.quality) {
    const std::string sub = short_sub_dimension(q.sub_dimension);
    f[q.dimension + ".sub_dimensions"].insert(sub);
    const bool enough = q.items < 0 || q.items >= rules.min_items;
    if (q.standardized && q.has_stderr && enough) f[q.dimension + ".valid"].insert(sub);
    f["any.measures"].insert(q.dimension + "/" + sub);
  }
  auto& measures = f["efficiency.measures"];
  auto& subs = f["efficiency.sub_dimensions"];
  auto& deployment = f["deployment.aspects"];
  for (const auto& m : e.efficiency) {
    measures.insert(m);
    f["any.measures"].insert("efficiency/" + m);
    for (const auto& [group, members] : rules.efficiency_groups)
      if (std::find(members.begin(), members.end(), m) != members.end()) subs.insert(group);
    if (m == "cpu_load" || m == "energy") deployment.insert(m);
  }
  auto& bits = f["variation.weight_bits"];
  for (int b : e.weight_bits) bits.insert(std::to_string(b));
  f["variation.parameter_sensitivity"] = e.perturbed;
  f["variation.architectures"] = e.architectures;
  f["variation.ablations"] = e.ablations;
  auto& cal = f["variation.calibration_sizes"];
  for (int64_t c : e.calibration_sizes) cal.insert(std::to_string(c));
  f["any.measures"];
  return f;
}

CoverageResult classify(const CoverageEvidence& e, const CoverageRules& rules) {
  CoverageResult r;
  r.facts = coverage_facts(e, rules);
  std::vector<bool> level_met;
  for (const auto& l : rules.levels) {
    bool all = true;
    for (const auto& q : l.requirements) {
      RequirementStatus s;
      s.req = &q;
      s.level = l.id;
      const auto it = r.facts.find(q.fact);
      const std::set<std::string> empty;
      const auto& have = it == r.facts.end() ? empty : it->second;
      s.have.assign(have.begin(), have.end());
      s.met = true;
      if (q.at_least >= 0 && static_cast<int64_t>(have.size()) < q.at_least) s.met = false;
      for (const auto& x : q.includes)
        if (!have.count(x)) s.met = false;
      all = all && s.met;
      r.all.push_back(std::move(s));
    }
    level_met.push_back(all);
  }
  size_t reached = 0;  // number of levels reached (nested: stop at the first one not met)
  while (reached < rules.levels.size() && level_met[reached]) ++reached;
  r.level_name = "None";
  if (reached > 0) {
    r.level = rules.levels[reached - 1].id;
    r.level_name = rules.levels[reached - 1].name;
  }
  if (reached < rules.levels.size()) {
    r.next_level = rules.levels[reached].id;
    r.next_level_name = rules.levels[reached].name;
    for (const auto& s : r.all)
      if (s.level == r.next_level && !s.met) r.gaps.push_back(s);
  }
  // Partial credit: areas of requirements met above the level reached.
  std::set<std::string> credit;
  for (size_t li = reached; li < rules.levels.size(); ++li)
    for (const auto& s : r.all)
      if (s.level == rules.levels[li].id && s.met) credit.insert(s.req->area);
  if (reached == 0) credit.clear();  // below Preliminary nothing was measured
  for (const auto& a : rules.area_order)
    if (credit.count(a)) r.credit_areas.push_back(a);
  if (reached == 0) {
    r.statement = "No coverage: nothing is measured";
  } else {
    r.statement = r.level_name + " coverage";
    if (!r.credit_areas.empty()) {
      std::vector<std::string> labels;
      for (const auto& a : r.credit_areas) labels.push_back(rules.area_labels.at(a));
      r.statement += " with additional " + join_words(labels) + " analyses";
    }
  }
  return r;
}

nlohmann::ordered_json to_json(const CoverageResult& r) {
  nlohmann::ordered_json j;
  j["level"] = r.level.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.level);
  j["level_name"] = r.level_name;
  j["statement"] = r.statement;
  j["additional_areas"] = r.credit_areas;
  j["next_level"] = r.next_level.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.next_level);
  nlohmann::ordered_json gaps = nlohmann::ordered_json::array();
  for (const auto& g : r.gaps)
    gaps.push_back({{"id", g.req->id}, {"area", g.req->area}, {"need", g.req->need}, {"have", g.have}});
  j["gaps"] = gaps;
  nlohmann::ordered_json reqs = nlohmann::ordered_json::array();
  for (const auto& s : r.all)
    reqs.push_back({{"level", s.level}, {"id", s.req->id}, {"area", s.req->area}, {"met", s.met}, {"have", s.have}});
  j["requirements"] = reqs;
  nlohmann::ordered_json facts = nlohmann::ordered_json::object();
  for (const auto& [k, v] : r.facts) facts[k] = std::vector<std::string>(v.begin(), v.end());
  j["facts"] = facts;
  return j;
}

std::string format_coverage(const CoverageResult& r, const CoverageRules& rules) {
  std::string s;
  s += fmt::format("Coverage: {}\n", r.statement);
  auto list = [&](const std::string& fact) {
    const auto it = r.facts.find(fact);
    if (it == r.facts.end() || it->second.empty()) return std::string("-");
    std::string x;
    for (const auto& v : it->second) x += (x.empty() ? "" : ", ") + v;
    return x;
  };
  s += "\nCovered per dimension:\n";
  for (const char* dim : {"quality", "alignment", "robustness"}) {
    const auto lab = rules.dimension_labels.count(dim) ? rules.dimension_labels.at(dim) : dim;
    s += fmt::format("  {:<22} measured: {}; valid (>= {} items, stderr): {}\n", lab, list(std::string(dim) + ".sub_dimensions"),
                     rules.min_items, list(std::string(dim) + ".valid"));
  }
  s += fmt::format("  {:<22} {} (sub-dimensions: {})\n", "efficiency", list("efficiency.measures"),
                   list("efficiency.sub_dimensions"));
  s += fmt::format("  {:<22} {}\n", "deployment", list("deployment.aspects"));
  s += fmt::format("  {:<22} bit-widths: {}; perturbed: {}; architectures: {}; ablations: {}; calibration sizes: {}\n",
                   "variation", list("variation.weight_bits"), list("variation.parameter_sensitivity"),
                   list("variation.architectures"), list("variation.ablations"), list("variation.calibration_sizes"));
  if (r.next_level.empty()) {
    s += "\nHighest level reached.\n";
  } else {
    s += fmt::format("\nTo reach {}, add:\n", r.next_level_name);
    for (const auto& g : r.gaps) {
      const std::string& need = g.req->need;
      std::string have;
      for (const auto& h : g.have) have += (have.empty() ? "" : ", ") + h;
      s += fmt::format("  - {} (now: {})\n", need, have.empty() ? "none" : have);
    }
  }
  return s;
}

}  // namespace qeval::framework
