#include "qeval/framework/evidence.h"

#include <optional>

#include "qeval/eval/task/task.h"
#include "qeval/framework/paths.h"
#include "qeval/io/model.h"
#include "qeval/quant/export.h"
#include "qeval/quant/spec.h"

namespace qeval::framework {
namespace {

// Variation facts of one configuration.
void add_configuration(CoverageEvidence& e, const std::string& spec_str, int64_t calib, const std::string& origin) {
  const quant::QuantSpec spec = quant::QuantSpec::parse(spec_str);
  if (spec.weights) {
    e.weight_bits.insert(spec.weights->bits);
    if (spec.weights->scale_factor != 1.0 || spec.weights->zero_factor != 1.0) e.perturbed.insert(spec_str);
  }
  for (auto t : {quant::Target::Activations, quant::Target::KV})
    if (const auto& c = spec.config(t); c && (c->scale_factor != 1.0 || c->zero_factor != 1.0)) e.perturbed.insert(spec_str);
  if (origin.rfind("ablation of", 0) == 0) e.ablations.insert(spec_str);
  if (calib > 0) e.calibration_sizes.insert(calib);
}

}  // namespace

CoverageEvidence evidence_from_plan(const Plan& plan, const std::string& tasks_dir) {
  CoverageEvidence e;
  if (!plan.tasks.empty()) {
    const std::string dir = !tasks_dir.empty() ? tasks_dir : plan.tasks_dir;
    const eval::task::TaskRegistry registry(eval::task::resolve_tasks_dir(
        dir.empty() ? std::nullopt : std::optional<std::string>(dir), find_checkout_folder("tasks", "arc_easy.yaml")));
    for (const auto& t : plan.tasks) {
      if (!registry.has_task(t.name)) throw Error(plan.path + ": unknown task '" + t.name + "'");
      const auto tc = registry.load(t.name);
      // Perplexity-style tasks report a bootstrap or closed-form error like the others.
      e.quality.push_back({tc.dimension, short_sub_dimension(tc.sub_dimension), t.name, t.limit ? *t.limit : -1, true, true});
    }
  }
  for (const auto& p : plan.perplexity)
    e.quality.push_back({"quality", "language_modeling", "perplexity " + p.name, -1, p.method == "llamacpp", false});
  for (const auto& k : plan.kld) e.quality.push_back({"quality", "language_modeling", "kld " + k.name, -1, true, false});
  if (!plan.efficiency.empty()) e.efficiency = {"latency", "throughput", "memory", "cpu_load"};
  for (const auto& c : plan.configurations) add_configuration(e, c.spec, c.calib_samples, c.origin);
  for (const auto& m : plan.models) {
    std::error_code ec;
    if (!std::filesystem::exists(m.path, ec)) continue;
    e.architectures.insert(quant::load_any_model(m.path).config.architecture);
  }
  return e;
}

CoverageEvidence evidence_from_store(const store::Store& store) {
  CoverageEvidence e;
  for (const auto& c : store.cells()) {
    if (!c.architecture.empty()) e.architectures.insert(c.architecture);
    add_configuration(e, c.spec, c.calib_samples, c.params.value("origin", ""));
    if (c.kind == "task" || c.kind == "perplexity" || c.kind == "kld") {
      int64_t n = 0;
      bool se = false;
      for (const auto& m : c.metrics) {
        n = std::max(n, m.n);
        se = se || m.stderr_value.has_value();
      }
      // A task's items are its docs (metrics of perplexity cells count tokens).
      if (c.kind == "task") n = c.params.value("n_docs", n);
      e.quality.push_back({c.dimension, short_sub_dimension(c.sub_dimension), c.task, n, se, c.kind == "task"});
    } else if (c.kind == "bench") {
      for (const auto& m : c.metrics) {
        const auto dot = m.name.find('.');
        if (dot != std::string::npos && std::isfinite(m.value)) e.efficiency.insert(m.name.substr(0, dot));
      }
    }
  }
  return e;
}

}  // namespace qeval::framework
