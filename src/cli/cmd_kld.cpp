// qeval kld REFERENCE MODEL -f FILE --ctx N [--chunks N] [--json] [--save-topk K FILE] [--spec SPEC [--calib FILE]]
// qeval kld MODEL --reference-topk FILE -f FILE --ctx N [...]
// KL divergence of MODEL against REFERENCE in llama-perplexity's --kl-divergence layout
// (definitions in src/qeval/eval/kld.h).
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "qeval/eval/kld.h"
#include "qeval/io/model.h"
#include "qeval/quant/export.h"
#include "qeval/quant/in_memory.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

struct KldArgs {
  std::vector<std::string> models, save_topk;
  std::string file, reference_topk;
  int64_t ctx = 512, chunks = -1, batch = 16;
  bool json = false;
  int threads = 0;
  bool ggml_compat = false, kv_f16 = false;
  // In-memory quantization of MODEL before measuring (quant/pipeline.h).
  std::string spec, calib;
  int64_t calib_samples = 128, calib_seqlen = 512;
  uint64_t calib_seed = 0;
};

nlohmann::json pct_json(const std::vector<std::pair<std::string, double>>& v, double scale) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, x] : v) {
    const std::string key = (name == "max" || name == "min" || name == "median") ? name : "p" + name;
    j[key] = x * scale;
  }
  return j;
}

int run(const KldArgs& a) {
  const bool from_file = !a.reference_topk.empty();
  if (from_file && a.models.size() != 1)
    throw Error("with --reference-topk give one model (the one to compare): qeval kld MODEL --reference-topk FILE ...");
  if (!from_file && a.models.size() != 2) throw Error("give REFERENCE and MODEL (or MODEL with --reference-topk FILE)");
  KldOptions o;
  o.n_ctx = a.ctx;
  o.max_chunks = a.chunks;
  o.batch = a.batch;
  o.reference_topk_path = a.reference_topk;
  if (!a.save_topk.empty()) {
    try {
      o.save_topk = std::stoll(a.save_topk[0]);
    } catch (const std::exception&) {
      throw Error("--save-topk K FILE: K must be a positive integer (got '" + a.save_topk[0] + "')");
    }
    if (o.save_topk < 1) throw Error("--save-topk K FILE: K must be a positive integer");
    o.save_topk_path = a.save_topk[1];
  }
  std::ifstream in(a.file, std::ios::binary);
  if (!in) fail_file(a.file, "cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();

  const EngineOptions eo{.threads = a.threads, .ggml_compat = a.ggml_compat, .kv_f16 = a.kv_f16};
  std::unique_ptr<Model> ref_model;
  std::unique_ptr<Engine> ref_engine;
  if (!from_file) {
    ref_model = std::make_unique<Model>(load_model(a.models[0]));
    auto o2 = eo;
    o2.context_length = std::max<int64_t>(a.ctx, ref_model->config.context_length);
    ref_engine = std::make_unique<Engine>(*ref_model, o2);
  }
  const Model model = quant::load_any_model(a.models.back());
  auto o2 = eo;
  o2.context_length = std::max<int64_t>(a.ctx, model.config.context_length);
  Engine engine(model, o2);
  auto tok = load_tokenizer(ref_model ? *ref_model : model);
  const auto quantized = quant::quantize_for_command(
      engine, model, *tok, a.spec, {a.calib, {.samples = a.calib_samples, .seqlen = a.calib_seqlen, .seed = a.calib_seed}},
      text, "kld", [&](const std::string& line) {
        if (!a.json) std::fprintf(stderr, "kld: MODEL %s\n", line.c_str());
      });
  if (!a.json)
    o.progress = [](int64_t done, int64_t total) {
      std::fprintf(stderr, "\rkld: %lld/%lld chunks", static_cast<long long>(done), static_cast<long long>(total));
      if (done == total) std::fputc('\n', stderr);
    };
  const KldResult r = kl_divergence(ref_engine.get(), engine, *tok, text, o);

  if (a.json) {
    nlohmann::json j = {
        {"reference", from_file ? a.reference_topk : a.models[0]},
        {"model", a.models.back()},
        {"file", a.file},
        {"method", "llamacpp"},
        {"n_ctx", r.n_ctx},
        {"n_chunks", r.chunks},
        {"text_tokens", r.text_tokens},
        {"scored_tokens", r.scored_tokens},
        {"reference_topk", r.topk_reference ? nlohmann::json(r.topk) : nlohmann::json(nullptr)},
        {"mean_ppl_q", r.ppl_q},
        {"mean_ppl_q_err", r.ppl_q_err},
        {"mean_ppl_base", r.ppl_base},
        {"mean_ppl_base_err", r.ppl_base_err},
        {"cor_ln_ppl_pct", 100 * r.cor_ln_ppl},
        {"mean_ln_ppl_ratio", r.ln_ratio},
        {"mean_ln_ppl_ratio_err", r.ln_ratio_err},
        {"mean_ppl_ratio", r.ppl_ratio},
        {"mean_ppl_ratio_err", r.ppl_ratio_err},
        {"mean_ppl_diff", r.ppl_diff},
        {"mean_ppl_diff_err", r.ppl_diff_err},
        {"mean_kld", r.kld},
        {"mean_kld_err", r.kld_err},
        {"kld_percentiles", pct_json(r.kld_percentiles, 1.0)},
        {"mean_delta_p_pct", 100 * r.dp},
        {"mean_delta_p_pct_err", 100 * r.dp_err},
        {"rms_delta_p_pct", 100 * r.dp_rms},
        {"rms_delta_p_pct_err", 100 * r.dp_rms_err},
        {"delta_p_percentiles_pct", pct_json(r.dp_percentiles, 100.0)},
        {"mean_delta_p_top_pct", 100 * r.dp_top},
        {"mean_delta_p_top_pct_err", 100 * r.dp_top_err},
        {"rms_delta_p_top_pct", 100 * r.dp_top_rms},
        {"rms_delta_p_top_pct_err", 100 * r.dp_top_rms_err},
        {"delta_p_top_percentiles_pct", pct_json(r.dp_top_percentiles, 100.0)},
        {"same_top_p_pct", 100 * r.same_top},
        {"same_top_p_pct_err", 100 * r.same_top_err},
    };
    if (r.topk_reference) {
      j["kld_gap_bound_mean"] = r.kld_bound_mean;
      j["kld_gap_bound_max"] = r.kld_bound_max;
    }
    if (o.save_topk > 0) j["saved_topk"] = {{"k", o.save_topk}, {"file", o.save_topk_path}};
    std::puts(j.dump(2).c_str());
    return 0;
  }
  std::printf("kld: method llamacpp, ctx %lld, %lld chunks, %lld scored tokens%s\n\n", static_cast<long long>(r.n_ctx),
              static_cast<long long>(r.chunks), static_cast<long long>(r.scored_tokens),
              r.topk_reference ? fmt::format(", reference: top-{} file {}", r.topk, a.reference_topk).c_str() : "");
  std::fputs(format_kld_report(r).c_str(), stdout);
  if (o.save_topk > 0) std::printf("\nwrote top-%lld reference file %s\n", static_cast<long long>(o.save_topk), o.save_topk_path.c_str());
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<KldArgs>();
  app.add_option("models", a->models, "REFERENCE MODEL (or MODEL alone with --reference-topk)")->required()->expected(1, 2);
  app.add_option("-f,--file", a->file, "text file")->required();
  app.add_option("-c,--ctx", a->ctx, "window length in tokens (llama-perplexity chunks; second half scored)");
  app.add_option("--chunks", a->chunks, "use at most N windows");
  app.add_option("--batch", a->batch, "windows evaluated together");
  app.add_flag("--json", a->json, "JSON output (field names as shared/reference/perplexity.json)");
  app.add_option("--save-topk", a->save_topk,
                 "K FILE: write the reference's top-K log-probabilities, ids, ln p(actual token) and tail mass per "
                 "scored position (binary, see src/qeval/eval/kld.h)")
      ->expected(2);
  app.add_option("--reference-topk", a->reference_topk,
                 "compare against a --save-topk file instead of a reference model. KLD is then computed over the "
                 "top-K entries plus one tail bucket: by the log-sum inequality it is a LOWER bound of the true KLD; "
                 "the report gives the mean and max of a per-position upper bound on the gap (P_T * ln of a chi-square "
                 "bound over the tail; P_T: reference tail mass; see src/qeval/eval/kld.h). PPL, Δp and same-top figures are exact.");
  app.add_option("--spec", a->spec, "quantize MODEL in memory with this spec before measuring (quant/spec.h)");
  app.add_option("--calib", a->calib, "calibration text for --spec (gptq / awq / smoothquant / static activations)");
  app.add_option("--calib-samples", a->calib_samples, "calibration windows (default 128)");
  app.add_option("--calib-seqlen", a->calib_seqlen, "calibration window length (default 512)");
  app.add_option("--calib-seed", a->calib_seed, "calibration sampling seed (default 0)");
  app.add_option("--threads,-t", a->threads, "threads (default: hardware concurrency)");
  app.add_flag("--ggml-compat", a->ggml_compat, "round activations like llama.cpp for F16/quantized weights (both models)");
  app.add_flag("--kv-f16", a->kv_f16, "round K/V to F16 like llama.cpp's default KV cache (both models)");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("kld", "KL divergence of a model vs a reference (llama-perplexity --kl-divergence report)", setup);

}  // namespace
}  // namespace qeval::cli
