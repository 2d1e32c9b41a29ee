// qeval quantize MODEL --spec SPEC [--calib FILE] [--calib-samples N --calib-seqlen L --calib-seed S] -o OUT
//   [--simulate] [--include-output] [--format auto|gguf|packed] [--json]
//   [--layer-stats FILE] [--mixed-precision BPW [--mixed-bits 2,3,4,8]]
// --layer-stats writes per-linear weight and calibration-activation statistics (layer_stats.h);
// --mixed-precision assigns each decoder linear a bit width from --mixed-bits under an average
// budget of BPW effective bits per weight (mixed_precision.h), most sensitive layers first.
// Progress (one line per decoder layer) goes to stderr; --json prints a JSON summary on stdout.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "qeval/engine/engine.h"
#include "qeval/io/model.h"
#include "qeval/quant/calibration.h"
#include "qeval/quant/export.h"
#include "qeval/quant/layer_stats.h"
#include "qeval/quant/mixed_precision.h"
#include "qeval/quant/pipeline.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

struct QuantizeArgs {
  std::string model, spec, calib, out, format = "auto", layer_stats;
  double mixed_budget = 0.0;
  std::vector<int> mixed_bits = {2, 3, 4, 8};
  int64_t samples = 128, seqlen = 512;
  uint64_t seed = 0;
  bool simulate = false, include_output = false, verbose = false, json = false;
  int threads = 0;
};

int run(const QuantizeArgs& a) {
  using namespace qeval::quant;
  const QuantSpec spec = QuantSpec::parse(a.spec);
  if (!spec.weights) throw Error("quantize: spec '" + spec.str() + "' quantizes no weights; nothing to write");
  if (a.format != "auto" && a.format != "gguf" && a.format != "packed")
    throw Error("quantize: --format must be auto, gguf or packed");
  const Model model = load_any_model(a.model);
  auto tok = load_tokenizer(model);
  Engine engine(model, {.threads = a.threads});
  Calibration calib;
  if (needs_calibration(spec) && a.calib.empty()) throw Error("quantize: spec '" + spec.str() + "' needs --calib FILE");
  if (!a.calib.empty()) {
    calib = load_calibration(a.calib, *tok, {.samples = a.samples, .seqlen = a.seqlen, .seed = a.seed}, engine.context_length());
    std::fprintf(stderr, "calibration: %zu x %lld tokens from %s (seed %llu)\n", calib.samples.size(),
                 static_cast<long long>(calib.seqlen), a.calib.c_str(), static_cast<unsigned long long>(a.seed));
  }
  PipelineOptions po;
  po.include_output = a.include_output;
  po.measure_errors = false;  // not reported here; saves two products per linear
  if (a.verbose) po.log = [](const std::string& s) { std::fprintf(stderr, "  %s\n", s.c_str()); };
  nlohmann::json stats_json, plan_json;
  if (!a.layer_stats.empty() || a.mixed_budget > 0) {
    // Statistics of the float model: weights, and the linears' inputs over the calibration text.
    ActivationStatsObserver acts;
    if (!calib.samples.empty()) run_calibration_forward(engine, calib, acts);
    const LayerStatsReport report = collect_layer_stats(engine, calib.samples.empty() ? nullptr : &acts);
    stats_json = report.to_json();
    if (a.mixed_budget > 0) {
      if (spec.family != Family::Int || spec.uses(Method::Awq) || spec.uses(Method::SmoothQuant))
        throw Error("quantize: --mixed-precision applies to rtn and gptq specs, not '" + spec.str() + "'");
      std::vector<LayerCost> costs;
      std::vector<LinearId> ids;
      for (const LayerStats& ls : report.layers) {
        if (ls.id.role == LinearRole::Output && !a.include_output) continue;
        costs.push_back({ls.id.name(), ls.out_features, ls.in_features, ls.sensitivity});
        ids.push_back(ls.id);
      }
      MixedPrecisionOptions mo;
      mo.candidates = a.mixed_bits;
      mo.budget_bpw = a.mixed_budget;
      mo.base = *spec.weights;
      const MixedPrecisionPlan plan = assign_mixed_precision(costs, mo);
      plan_json = plan.to_json();
      for (size_t i = 0; i < ids.size(); ++i) po.layer_configs[ids[i]] = plan.layers[i].config;
      std::fprintf(stderr, "mixed precision: %.4f bits per weight planned (budget %.4f) over %zu linears\n", plan.achieved_bpw,
                   a.mixed_budget, ids.size());
    }
    if (!a.layer_stats.empty()) {
      nlohmann::json j = {{"model", a.model}, {"calibration", a.calib}, {"layers", stats_json}};
      if (!plan_json.is_null()) j["mixed_precision"] = plan_json;
      write_file_atomic(a.layer_stats, j.dump(2) + "\n");
      std::fprintf(stderr, "wrote %s\n", a.layer_stats.c_str());
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  po.progress = [&](int done, int total) { std::fprintf(stderr, "quantize: layer %d/%d done (%.1f s)\n", done, total, elapsed()); };
  const QuantizedModelResult r = quantize_model(engine, spec, calib, po);
  const double quantize_seconds = elapsed();
  std::fprintf(stderr, "quantized %zu linears (%lld weights) with %s in %.1f s: %.4f bits per weight in the scheme\n",
               r.linears.size(), static_cast<long long>(r.quantized_params), spec.str().c_str(), quantize_seconds,
               r.bits_per_weight);
  ExportInfo info;
  if (a.simulate) {
    const bool gguf = a.out.ends_with(".gguf");
    info = export_simulated(model, engine, r, a.out, gguf);
  } else {
    const auto gt = po.layer_configs.empty() ? gguf_type_for(spec) : std::nullopt;  // mixed widths: not one GGUF type
    if (a.format == "gguf" && !gt) throw Error("quantize: spec '" + spec.str() + "' has no exact GGUF type; use --format packed");
    if (gt && a.format != "packed") {
      if (!a.out.ends_with(".gguf")) throw Error("quantize: GGUF output must end in .gguf (or use --format packed)");
      info = export_gguf(model, engine, r, a.out);
      if (info.fallback_linears > 0)
        std::printf("note: %lld linears have rows that are not a multiple of 32 and were written as F32 (dequantized)\n",
                    static_cast<long long>(info.fallback_linears));
    } else {
      info = export_packed(model, engine, r, a.out);
    }
  }
  if (a.json) {
    nlohmann::json j = {{"model", a.model},
                        {"spec", spec.str()},
                        {"output", info.path},
                        {"format", info.format},
                        {"calibration", {{"file", a.calib}, {"samples", calib.samples.size()}, {"seqlen", calib.seqlen}, {"seed", a.seed}}},
                        {"quantized_linears", r.linears.size()},
                        {"quantized_params", r.quantized_params},
                        {"scheme_bits_per_weight", r.bits_per_weight},
                        {"stored_bits_per_weight", info.bits_per_weight},
                        {"quantize_seconds", quantize_seconds},
                        {"notes", r.notes}};
    if (!plan_json.is_null()) j["mixed_precision"] = plan_json;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("wrote %s (%s): %.4f effective bits per quantized weight (scales, zeros, outliers and fallbacks counted) over %lld weights\n",
                info.path.c_str(), info.format.c_str(), info.bits_per_weight, static_cast<long long>(info.quantized_params));
  }
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  app.add_option("model", a->model, "GGUF file, HF directory or packed directory")->required();
  app.add_option("--spec", a->spec, "quantization spec (w4g32, w4g128-awq-gptq, ...)")->required();
  app.add_option("--calib", a->calib, "calibration text file (needed by gptq / awq / smoothquant)");
  app.add_option("--calib-samples,--samples", a->samples, "calibration windows (default 128)");
  app.add_option("--calib-seqlen,--seqlen", a->seqlen, "tokens per window (default 512, capped by the context)");
  app.add_option("--calib-seed,--seed", a->seed, "calibration sampling seed (default 0)");
  app.add_option("-o,--output", a->out, "output: .gguf file (exact GGUF types) or directory (packed / HF)")->required();
  app.add_flag("--simulate", a->simulate, "write dequantized F32 weights (GGUF when OUT ends in .gguf, else HF)");
  app.add_flag("--include-output", a->include_output, "also quantize the output head");
  app.add_option("--format", a->format, "auto | gguf | packed");
  app.add_option("--threads,-t", a->threads, "threads");
  app.add_flag("-v,--verbose", a->verbose, "what each method did per layer (stderr)");
  app.add_flag("--json", a->json, "print a JSON summary on stdout");
  app.add_option("--layer-stats", a->layer_stats, "write per-layer weight / activation statistics (JSON) to FILE");
  app.add_option("--mixed-precision", a->mixed_budget, "average bits-per-weight budget: per-layer bit widths by sensitivity");
  app.add_option("--mixed-bits", a->mixed_bits, "candidate bit widths for --mixed-precision (default 2,3,4,8)")->delimiter(',');
  return [a] { return run(*a); };
}

QEVAL_COMMAND("quantize", "Post-training quantization (RTN, GPTQ, AWQ, SmoothQuant, LLM.int8(), SpQR) to GGUF or packed safetensors", setup);

}  // namespace
}  // namespace qeval::cli
