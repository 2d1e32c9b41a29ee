#include "qeval/framework/plan.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "qeval/engine/perplexity.h"
#include "qeval/quant/pipeline.h"
#include "qeval/quant/spec.h"
#include "qeval/store/sha256.h"
#include "qeval/util/error.h"

namespace qeval::framework {
namespace {

// Messages name the plan file and the line of the offending node.
struct Ctx {
  std::string file;
  [[noreturn]] void fail(const YAML::Node& n, const std::string& what) const {
    const int line = n.Mark().line;
    throw Error(file + (line >= 0 ? ":" + std::to_string(line + 1) : std::string()) + ": " + what);
  }
  [[noreturn]] void fail(const std::string& what) const { throw Error(file + ": " + what); }

  std::string expand(const YAML::Node& n, const std::string& s) const {
    std::string out;
    for (size_t i = 0; i < s.size();) {
      if (s.compare(i, 2, "${") == 0) {
        const size_t end = s.find('}', i + 2);
        if (end == std::string::npos) fail(n, "unterminated ${ in '" + s + "'");
        const std::string var = s.substr(i + 2, end - i - 2);
        const char* v = std::getenv(var.c_str());
        if (v != nullptr && *v != '\0')
          out += v;
        else if (var == "QEVAL_SHARED")
          out += "../shared";
        else
          fail(n, "environment variable " + var + " is not set");
        i = end + 1;
      } else {
        out += s[i++];
      }
    }
    return out;
  }
  std::string str(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(n, key + ": expected a string");
    return expand(n, n.Scalar());
  }
  int64_t integer(const YAML::Node& n, const std::string& key, int64_t min_value) const {
    int64_t v = 0;
    if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v)) fail(n, key + ": expected an integer");
    if (v < min_value) fail(n, key + ": must be at least " + std::to_string(min_value));
    return v;
  }
  bool boolean(const YAML::Node& n, const std::string& key) const {
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) fail(n, key + ": expected true or false");
    return v;
  }
  // A scalar or a list of scalars, as strings (numbers keep the text written in the plan).
  std::vector<std::string> list(const YAML::Node& n, const std::string& key) const {
    std::vector<std::string> out;
    if (n.IsScalar()) {
      out.push_back(expand(n, n.Scalar()));
    } else if (n.IsSequence()) {
      for (const auto& x : n) out.push_back(str(x, key));
      if (out.empty()) fail(n, key + ": empty list");
    } else {
      fail(n, key + ": expected a value or a list");
    }
    return out;
  }
  void only_keys(const YAML::Node& n, const std::string& what, const std::set<std::string>& allowed) const {
    if (!n.IsMap()) fail(n, what + ": expected a mapping");
    for (const auto& kv : n) {
      const std::string k = kv.first.as<std::string>();
      if (!allowed.count(k)) {
        std::string all;
        for (const auto& a : allowed) all += (all.empty() ? "" : ", ") + a;
        fail(kv.first, "unknown key '" + k + "' in " + what + " (known: " + all + ")");
      }
    }
  }
};

std::string canonical_or_fail(const Ctx& c, const YAML::Node& n, const std::string& s) {
  try {
    const quant::QuantSpec spec = quant::QuantSpec::parse(s);
    std::string why;
    if (!quant::pipeline_supports(spec, &why)) c.fail(n, "spec '" + s + "' cannot be evaluated: " + why);
    return spec.str();
  } catch (const Error& e) {
    if (std::string(e.what()).rfind(c.file, 0) == 0) throw;
    c.fail(n, e.what());
  }
}

// Every combination of the grid's axes, as spec strings in the grammar of quant/spec.h.
std::vector<std::string> grid_specs(const Ctx& c, const YAML::Node& g) {
  c.only_keys(g, "grid", {"bits", "group", "activations", "kv", "method", "asym", "clip", "scale", "zero"});
  if (!g["bits"]) c.fail(g, "grid: 'bits' is required");
  auto axis = [&](const char* key, std::vector<std::string> dflt) {
    return g[key] ? c.list(g[key], std::string("grid.") + key) : dflt;
  };
  const auto bits = axis("bits", {});
  const auto groups = axis("group", {"0"});
  const auto acts = axis("activations", {"0"});
  const auto kvs = axis("kv", {"0"});
  const auto methods = axis("method", {"rtn"});
  const auto asyms = axis("asym", {"false"});
  const auto clips = axis("clip", {"1"});
  const auto scales = axis("scale", {"1"});
  const auto zeros = axis("zero", {"1"});
  std::vector<std::string> out;
  for (const auto& b : bits)
    for (const auto& gs : groups)
      for (const auto& a : acts)
        for (const auto& kv : kvs)
          for (const auto& m : methods)
            for (const auto& as : asyms)
              for (const auto& cl : clips)
                for (const auto& sc : scales)
                  for (const auto& z : zeros) {
                    std::string s = "w" + b + (gs == "0" ? "" : "g" + gs) + (a == "0" ? "" : "a" + a) +
                                    (kv == "0" ? "" : "kv" + kv);
                    if (m != "rtn" && !m.empty()) s += "-" + m;
                    if (as == "true") s += "-asym";
                    else if (as != "false") c.fail(g["asym"], "grid.asym: expected true or false");
                    if (std::stod(cl) != 1.0) s += "-clip" + cl;
                    if (std::stod(sc) != 1.0) s += "-scale" + sc;
                    if (std::stod(z) != 1.0) s += "-zero" + z;
                    out.push_back(canonical_or_fail(c, g, s));
                  }
  return out;
}

// The spec with each of its components (a method, an option or a modifier) switched off in turn;
// variants that are not valid specs on their own are left out.
std::vector<std::pair<std::string, std::string>> ablations(const Ctx& c, const YAML::Node& n, const std::string& base) {
  std::vector<std::string> parts;
  std::stringstream ss(base);
  for (std::string p; std::getline(ss, p, '-');) parts.push_back(p);
  std::vector<std::pair<std::string, std::string>> out;
  const size_t first = (parts.size() > 1 && parts[0] == "spqr") ? 2 : 1;
  for (size_t i = first; i < parts.size(); ++i) {
    std::string s;
    for (size_t j = 0; j < parts.size(); ++j)
      if (j != i) s += (s.empty() ? "" : "-") + parts[j];
    try {
      const quant::QuantSpec spec = quant::QuantSpec::parse(s);
      if (quant::pipeline_supports(spec)) out.emplace_back(spec.str(), parts[i]);
    } catch (const Error&) {
      // e.g. removing gptq from w4-gptq-actorder leaves actorder without gptq
    }
  }
  if (out.empty()) c.fail(n, "ablation: spec '" + base + "' has no component that can be switched off");
  return out;
}

template <class T>
void read_list(const Ctx& c, const YAML::Node& n, const std::string& key, const std::function<T(const YAML::Node&)>& f,
               std::vector<T>& out) {
  if (!n) return;
  if (!n.IsSequence()) c.fail(n, key + ": expected a list");
  for (const auto& x : n) out.push_back(f(x));
}

}  // namespace

std::string Configuration::label() const {
  std::string s = spec;
  if (calib_samples > 0) s += "@calib" + std::to_string(calib_samples);
  if (seed >= 0) s += "@seed" + std::to_string(seed);
  return s;
}

bool spec_needs_calibration(const std::string& canonical_spec) {
  const quant::QuantSpec s = quant::QuantSpec::parse(canonical_spec);
  return !s.methods.empty() || s.static_activations;
}

Plan load_plan(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file.string() + ": cannot read plan");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_plan(ss.str(), file.string());
}

Plan parse_plan(const std::string& text, const std::string& name) {
  const Ctx c{name};
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(name + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root.IsMap()) c.fail("a plan is a YAML mapping");
  c.only_keys(root, "plan",
              {"name", "description", "models", "specs", "sweeps", "seeds", "calibration", "tasks", "defaults",
               "perplexity", "kld", "efficiency", "generations", "layer_stats", "threads", "data_dir", "tasks_dir",
               "repetitions"});
  Plan p;
  p.path = name;
  p.sha256 = store::sha256_hex(text);
  p.name = root["name"] ? c.str(root["name"], "name") : std::filesystem::path(name).stem().string();
  if (root["description"]) p.description = c.str(root["description"], "description");
  if (root["threads"]) p.threads = static_cast<int>(c.integer(root["threads"], "threads", 0));
  if (root["data_dir"]) p.data_dir = c.str(root["data_dir"], "data_dir");
  if (root["tasks_dir"]) p.tasks_dir = c.str(root["tasks_dir"], "tasks_dir");
  if (root["layer_stats"]) p.layer_stats = c.boolean(root["layer_stats"], "layer_stats");
  const int repetitions = root["repetitions"] ? static_cast<int>(c.integer(root["repetitions"], "repetitions", 1)) : 3;

  // ---- models ----
  if (!root["models"] || !root["models"].IsSequence() || root["models"].size() == 0)
    c.fail(root, "'models' must be a non-empty list");
  std::set<std::string> model_names;
  for (const auto& m : root["models"]) {
    PlanModel pm;
    if (m.IsScalar()) {
      pm.path = c.str(m, "models");
    } else {
      c.only_keys(m, "model", {"name", "path"});
      if (!m["path"]) c.fail(m, "model: 'path' is required");
      pm.path = c.str(m["path"], "path");
      if (m["name"]) pm.name = c.str(m["name"], "name");
    }
    if (pm.name.empty()) {
      std::filesystem::path fp(pm.path);
      pm.name = (fp.has_filename() ? fp.filename() : fp.parent_path().filename()).stem().string();
    }
    if (!model_names.insert(pm.name).second) c.fail(m, "model name '" + pm.name + "' appears twice");
    p.models.push_back(pm);
  }

  // ---- calibration ----
  if (const auto cal = root["calibration"]) {
    c.only_keys(cal, "calibration", {"file", "samples", "seqlen"});
    if (cal["file"]) p.calibration.file = c.str(cal["file"], "calibration.file");
    if (cal["samples"]) p.calibration.samples = c.integer(cal["samples"], "calibration.samples", 1);
    if (cal["seqlen"]) p.calibration.seqlen = c.integer(cal["seqlen"], "calibration.seqlen", 2);
  }

  // ---- configurations ----
  std::vector<Configuration> configs{{"fp32", 0, -1, "reference"}};
  auto add = [&](const YAML::Node& n, const std::string& spec, int64_t calib, const std::string& origin) {
    Configuration cfg{spec, 0, -1, origin};
    if (spec_needs_calibration(spec)) {
      if (p.calibration.file.empty())
        c.fail(n, "spec '" + spec + "' needs calibration data: add calibration.file to the plan");
      cfg.calib_samples = calib > 0 ? calib : p.calibration.samples;
    }
    if (std::find(configs.begin(), configs.end(), cfg) == configs.end()) configs.push_back(cfg);
  };
  if (const auto specs = root["specs"]) {
    for (const auto& s : c.list(specs, "specs")) add(specs, canonical_or_fail(c, specs, s), 0, "specs");
  }
  if (const auto sweeps = root["sweeps"]) {
    if (!sweeps.IsSequence()) c.fail(sweeps, "sweeps: expected a list");
    for (const auto& sw : sweeps) {
      c.only_keys(sw, "sweep", {"grid", "calibration", "ablation"});
      if (sw.size() != 1) c.fail(sw, "a sweep has exactly one of grid, calibration, ablation");
      if (sw["grid"]) {
        for (const auto& s : grid_specs(c, sw["grid"])) add(sw["grid"], s, 0, "grid");
      } else if (const auto cs = sw["calibration"]) {
        c.only_keys(cs, "calibration sweep", {"spec", "samples"});
        if (!cs["spec"] || !cs["samples"]) c.fail(cs, "calibration sweep: 'spec' and 'samples' are required");
        const std::string spec = canonical_or_fail(c, cs["spec"], c.str(cs["spec"], "spec"));
        if (!spec_needs_calibration(spec)) c.fail(cs["spec"], "calibration sweep: spec '" + spec + "' uses no calibration data");
        for (const auto& n : c.list(cs["samples"], "samples")) {
          YAML::Node v(n);
          add(cs, spec, c.integer(v, "samples", 1), "calibration size");
        }
      } else {
        const YAML::Node a = sw["ablation"];
        const std::string base = canonical_or_fail(c, a, c.str(a, "ablation"));
        add(a, base, 0, "ablation base");
        for (const auto& [s, removed] : ablations(c, a, base)) add(a, s, 0, "ablation of " + base + ": without " + removed);
      }
    }
  }
  if (const auto seeds = root["seeds"]) {
    std::vector<Configuration> seeded;
    for (const auto& cfg : configs) {
      if (cfg.spec == "fp32") {
        seeded.push_back(cfg);
        continue;
      }
      for (const auto& s : c.list(seeds, "seeds")) {
        YAML::Node v(s);
        Configuration x = cfg;
        x.seed = c.integer(v, "seeds", 0);
        seeded.push_back(x);
      }
    }
    configs = seeded;
  }
  p.configurations = configs;

  // ---- cells ----
  std::optional<int64_t> default_limit;
  std::optional<int> default_fewshot;
  if (const auto d = root["defaults"]) {
    c.only_keys(d, "defaults", {"limit", "num_fewshot"});
    if (d["limit"]) default_limit = c.integer(d["limit"], "defaults.limit", 1);
    if (d["num_fewshot"]) default_fewshot = static_cast<int>(c.integer(d["num_fewshot"], "defaults.num_fewshot", 0));
  }
  read_list<PlanTask>(c, root["tasks"], "tasks", [&](const YAML::Node& t) {
    PlanTask pt;
    if (t.IsScalar()) {
      pt.name = c.str(t, "tasks");
    } else {
      c.only_keys(t, "task", {"name", "limit", "num_fewshot"});
      if (!t["name"]) c.fail(t, "task: 'name' is required");
      pt.name = c.str(t["name"], "name");
      if (t["limit"]) pt.limit = c.integer(t["limit"], "limit", 1);
      if (t["num_fewshot"]) pt.num_fewshot = static_cast<int>(c.integer(t["num_fewshot"], "num_fewshot", 0));
    }
    if (!pt.limit) pt.limit = default_limit;
    if (!pt.num_fewshot) pt.num_fewshot = default_fewshot;
    return pt;
  }, p.tasks);
  read_list<PlanPerplexity>(c, root["perplexity"], "perplexity", [&](const YAML::Node& x) {
    c.only_keys(x, "perplexity", {"name", "file", "ctx", "method", "chunks"});
    PlanPerplexity pp;
    if (!x["file"]) c.fail(x, "perplexity: 'file' is required");
    pp.file = c.str(x["file"], "file");
    pp.name = x["name"] ? c.str(x["name"], "name") : std::filesystem::path(pp.file).stem().string();
    if (x["ctx"]) pp.ctx = c.integer(x["ctx"], "ctx", 4);
    if (x["chunks"]) pp.chunks = c.integer(x["chunks"], "chunks", 1);
    if (x["method"]) {
      pp.method = c.str(x["method"], "method");
      try {
        parse_perplexity_method(pp.method);
      } catch (const Error& e) {
        c.fail(x["method"], e.what());
      }
    }
    return pp;
  }, p.perplexity);
  read_list<PlanKld>(c, root["kld"], "kld", [&](const YAML::Node& x) {
    c.only_keys(x, "kld", {"name", "file", "ctx", "chunks"});
    PlanKld k;
    if (!x["file"]) c.fail(x, "kld: 'file' is required");
    k.file = c.str(x["file"], "file");
    k.name = x["name"] ? c.str(x["name"], "name") : std::filesystem::path(k.file).stem().string();
    if (x["ctx"]) k.ctx = c.integer(x["ctx"], "ctx", 4);
    if (x["chunks"]) k.chunks = c.integer(x["chunks"], "chunks", 1);
    return k;
  }, p.kld);
  read_list<PlanScenario>(c, root["efficiency"], "efficiency", [&](const YAML::Node& x) {
    c.only_keys(x, "efficiency scenario", {"name", "prompt", "gen", "batch", "reps", "warmup"});
    PlanScenario s;
    s.reps = repetitions;
    if (x["prompt"]) s.prompt = c.integer(x["prompt"], "prompt", 1);
    if (x["gen"]) s.gen = c.integer(x["gen"], "gen", 1);
    if (x["batch"]) s.batch = c.integer(x["batch"], "batch", 1);
    if (x["reps"]) s.reps = static_cast<int>(c.integer(x["reps"], "reps", 1));
    if (x["warmup"]) s.warmup = static_cast<int>(c.integer(x["warmup"], "warmup", 0));
    s.name = x["name"] ? c.str(x["name"], "name")
                       : "pp" + std::to_string(s.prompt) + "-tg" + std::to_string(s.gen) + "-b" + std::to_string(s.batch);
    return s;
  }, p.efficiency);
  if (const auto g = root["generations"]) {
    c.only_keys(g, "generations", {"prompts", "max_tokens"});
    PlanGenerations pg;
    if (!g["prompts"]) c.fail(g, "generations: 'prompts' is required");
    pg.prompts = c.list(g["prompts"], "generations.prompts");
    if (g["max_tokens"]) pg.max_tokens = c.integer(g["max_tokens"], "generations.max_tokens", 1);
    p.generations = pg;
  }
  auto unique_names = [&](const auto& items, const char* what) {
    std::set<std::string> seen;
    for (const auto& x : items)
      if (!seen.insert(x.name).second) c.fail(root[what], std::string(what) + ": name '" + x.name + "' appears twice");
  };
  unique_names(p.tasks, "tasks");
  unique_names(p.perplexity, "perplexity");
  unique_names(p.kld, "kld");
  unique_names(p.efficiency, "efficiency");
  if (p.tasks.empty() && p.perplexity.empty() && p.kld.empty() && p.efficiency.empty() && !p.generations)
    c.fail(root, "the plan evaluates nothing: add tasks, perplexity, kld, efficiency or generations");
  return p;
}

}  // namespace qeval::framework
