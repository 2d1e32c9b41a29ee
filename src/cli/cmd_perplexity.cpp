// qeval perplexity MODEL -f FILE --ctx N --method llamacpp|gptq|rolling [--chunks N] [--json] [--batch B]
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli/command.h"
#include "qeval/engine/perplexity.h"
#include "qeval/io/model.h"
#include "qeval/quant/export.h"
#include "qeval/quant/in_memory.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

struct PerplexityArgs {
  std::string model, file, method = "llamacpp";
  int64_t ctx = 512, chunks = -1, batch = 16;
  bool json = false;
  int threads = 0;
  bool ggml_compat = false, kv_f16 = false;
  // In-memory quantization before measuring (quant/pipeline.h).
  std::string spec, calib;
  int64_t calib_samples = 128, calib_seqlen = 512;
  uint64_t calib_seed = 0;
};

int run(const PerplexityArgs& a) {
  PerplexityOptions o;
  o.method = parse_perplexity_method(a.method);
  o.n_ctx = a.ctx;
  o.max_chunks = a.chunks;
  o.batch = a.batch;
  std::ifstream in(a.file, std::ios::binary);
  if (!in) fail_file(a.file, "cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const Model model = quant::load_any_model(a.model);
  auto tok = load_tokenizer(model);
  Engine engine(model, {.threads = a.threads, .ggml_compat = a.ggml_compat, .kv_f16 = a.kv_f16,
                        .context_length = std::max<int64_t>(a.ctx, model.config.context_length)});
  // In-memory quantization (its one-line summary on stdout, like the rest of the report).
  const auto quantized = quant::quantize_for_command(
      engine, model, *tok, a.spec, {a.calib, {.samples = a.calib_samples, .seqlen = a.calib_seqlen, .seed = a.calib_seed}},
      text, "perplexity", [&](const std::string& line) {
        if (!a.json) std::printf("%s\n", line.c_str());
      });
  const std::string method(perplexity_method_name(o.method));
  if (!a.json) {
    std::printf("perplexity: method %s, ctx %lld, batch %lld\n", method.c_str(), static_cast<long long>(a.ctx),
                static_cast<long long>(a.batch));
    o.progress = [&](int64_t done, int64_t, double ppl) {
      std::printf("[%lld]%.4f,", static_cast<long long>(done), ppl);
      std::fflush(stdout);
    };
  }
  const auto r = perplexity(engine, *tok, text, o);
  if (a.json) {
    nlohmann::json j = {{"method", method},          {"model", a.model},         {"file", a.file},
                        {"n_ctx", r.n_ctx},          {"chunks", r.chunks},       {"text_tokens", r.text_tokens},
                        {"scored_tokens", r.scored_tokens}, {"nll_sum", r.nll_sum}, {"ppl", r.ppl}};
    if (o.method == PerplexityMethod::LlamaCpp) j["ppl_err"] = r.ppl_err;
    if (o.method == PerplexityMethod::Rolling) {
      j["words"] = r.words;
      j["bytes"] = r.bytes;
      j["word_perplexity"] = r.word_ppl;
      j["byte_perplexity"] = r.byte_ppl;
      j["bits_per_byte"] = r.bits_per_byte;
    }
    std::puts(j.dump(2).c_str());
    return 0;
  }
  std::printf("\n");
  if (o.method == PerplexityMethod::LlamaCpp) {
    std::printf("Final estimate: PPL = %.4f +/- %.5f (method llamacpp, ctx %lld, %lld chunks, %lld scored tokens)\n", r.ppl,
                r.ppl_err, static_cast<long long>(r.n_ctx), static_cast<long long>(r.chunks),
                static_cast<long long>(r.scored_tokens));
  } else if (o.method == PerplexityMethod::GPTQ) {
    std::printf("PPL = %.4f (method gptq, ctx %lld, %lld windows, %lld scored tokens)\n", r.ppl,
                static_cast<long long>(r.n_ctx), static_cast<long long>(r.chunks), static_cast<long long>(r.scored_tokens));
  } else {
    std::printf("token PPL = %.4f, word PPL = %.4f, byte PPL = %.4f, bits/byte = %.4f (method rolling, ctx %lld, %lld documents, "
                "%lld tokens, %lld words, %lld bytes)\n",
                r.ppl, r.word_ppl, r.byte_ppl, r.bits_per_byte, static_cast<long long>(r.n_ctx),
                static_cast<long long>(r.chunks), static_cast<long long>(r.scored_tokens), static_cast<long long>(r.words),
                static_cast<long long>(r.bytes));
  }
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<PerplexityArgs>();
  app.add_option("model", a->model, "GGUF file or HF directory")->required();
  app.add_option("-f,--file", a->file, "text file")->required();
  app.add_option("-c,--ctx", a->ctx, "window length in tokens");
  app.add_option("--method", a->method, "llamacpp | gptq | rolling (see docs)");
  app.add_option("--chunks", a->chunks, "use at most N windows (llamacpp, gptq) or documents (rolling)");
  app.add_option("--batch", a->batch, "windows evaluated together");
  app.add_flag("--json", a->json, "JSON output");
  app.add_option("--threads,-t", a->threads, "threads (default: hardware concurrency)");
  app.add_flag("--ggml-compat", a->ggml_compat, "round activations like llama.cpp for F16/quantized weights");
  app.add_option("--spec", a->spec, "quantize in memory with this spec before measuring (quant/spec.h)");
  app.add_option("--calib", a->calib, "calibration text for --spec (gptq / awq / smoothquant / static activations)");
  app.add_option("--calib-samples", a->calib_samples, "calibration windows (default 128)");
  app.add_option("--calib-seqlen", a->calib_seqlen, "calibration window length (default 512)");
  app.add_option("--calib-seed", a->calib_seed, "calibration sampling seed (default 0)");
  app.add_flag("--kv-f16", a->kv_f16, "round K/V to F16 like llama.cpp's default KV cache");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("perplexity", "Perplexity of a text (llama.cpp, GPTQ or lm-eval rolling convention)", setup);

}  // namespace
}  // namespace qeval::cli
