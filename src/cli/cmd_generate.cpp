// qeval generate MODEL -p TEXT -n N [--temp T --top-k K --top-p P --seed S --stop STR] [--threads N]
// Streams the generated text to stdout; speeds go to stderr at the end.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "qeval/engine/generate.h"
#include "qeval/io/model.h"
#include "qeval/quant/export.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

struct GenerateArgs {
  std::string model, prompt;
  int64_t n = 128;
  float temp = 0.0f, top_p = 1.0f;
  int top_k = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  int threads = 0;
  bool ggml_compat = false, kv_f16 = false, ignore_eos = false, no_prompt = false, json = false;
};

int run(const GenerateArgs& a) {
  if (a.prompt.empty()) throw Error("empty prompt (-p TEXT)");
  GenerationOptions opts;
  opts.max_tokens = a.n;
  opts.sampling = {a.temp, a.top_k, a.top_p, a.seed};
  opts.stop = a.stop;
  opts.stop_at_eos = !a.ignore_eos;
  opts.validate();
  const Model model = quant::load_any_model(a.model);  // packed directories run on the packed kernels
  auto tok = load_tokenizer(model);
  Engine engine(model, {.threads = a.threads, .ggml_compat = a.ggml_compat, .kv_f16 = a.kv_f16});
  const auto prompt = tok->encode(a.prompt);
  if (prompt.empty()) throw Error("the prompt gives no tokens");
  if (!a.no_prompt && !a.json) {
    std::fputs(a.prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  auto res = generate(engine, tok.get(), prompt, opts, [&](const TokenEvent& ev) {
    if (!a.json && !ev.text.empty()) {
      std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
      std::fflush(stdout);
    }
    return true;
  });
  if (a.json) {
    std::printf("{\"prompt_tokens\":[");
    for (size_t i = 0; i < prompt.size(); ++i) std::printf("%s%d", i ? "," : "", prompt[i]);
    std::printf("],\"generated_tokens\":[");
    for (size_t i = 0; i < res.tokens.size(); ++i) std::printf("%s%d", i ? "," : "", res.tokens[i]);
    std::printf("],\"stop_reason\":\"%s\"}\n", std::string(stop_reason_name(res.stop_reason)).c_str());
  } else {
    std::fputc('\n', stdout);
  }
  std::fflush(stdout);
  std::fprintf(stderr, "%s",
               fmt::format("prompt: {} tokens, {:.2f} ms, {:.2f} tokens/s\n"
                           "eval:   {} tokens, {:.2f} ms, {:.2f} tokens/s (stop: {}, threads {})\n",
                           res.prompt_tokens, res.prompt_seconds() * 1e3, res.prompt_tokens_per_second(),
                           res.tokens.size(), res.decode_seconds() * 1e3, res.decode_tokens_per_second(),
                           stop_reason_name(res.stop_reason), engine.threads())
                   .c_str());
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  app.add_option("model", a->model, "GGUF file or HF directory")->required();
  app.add_option("-p,--prompt", a->prompt, "prompt text")->required();
  app.add_option("-n,--n-predict", a->n, "maximum number of tokens to generate")->check(CLI::NonNegativeNumber);
  app.add_option("--temp", a->temp, "temperature (0 = greedy)");
  app.add_option("--top-k", a->top_k, "keep the K most likely tokens (0 = all)");
  app.add_option("--top-p", a->top_p, "nucleus sampling threshold in (0, 1]");
  app.add_option("--seed", a->seed, "random seed for sampling");
  app.add_option("--stop", a->stop, "stop string (repeatable)");
  app.add_option("--threads,-t", a->threads, "threads (default: hardware concurrency)");
  app.add_flag("--ignore-eos", a->ignore_eos, "keep generating after the end-of-sequence token");
  app.add_flag("--no-prompt", a->no_prompt, "do not echo the prompt");
  app.add_flag("--json", a->json, "print prompt and generated token ids as JSON instead of text");
  app.add_flag("--ggml-compat", a->ggml_compat, "round activations like llama.cpp for F16/quantized weights");
  app.add_flag("--kv-f16", a->kv_f16, "round K/V to F16 like llama.cpp's default KV cache");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("generate", "Generate text from a prompt (greedy or sampled), streaming", setup);

}  // namespace
}  // namespace qeval::cli
