// qeval synth --arch llama --preset tinyllama-1.1b|smollm-135m|stories260k --seed S -o model.gguf
//             [--type f32|f16] [--vocab-from FILE.gguf]
// Writes a deterministic random-weight model of a real shape as GGUF (llama.cpp loads it).
#include <fmt/format.h>

#include <cstdio>
#include <string>

#include "cli/command.h"
#include "qeval/engine/synth.h"
#include "qeval/io/model_export.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

struct SynthArgs {
  std::string arch = "llama", preset, out, type = "f32", vocab_from;
  uint64_t seed = 0;
  int threads = 0;
};

int run(const SynthArgs& a) {
  if (a.arch != "llama") throw Error("--arch: only 'llama' presets exist (got '" + a.arch + "')");
  DType type;
  if (a.type == "f32" || a.type == "F32") type = DType::F32;
  else if (a.type == "f16" || a.type == "F16") type = DType::F16;
  else throw Error("--type must be f32 or f16 (got '" + a.type + "')");
  ModelConfig cfg = synth_preset(a.preset);
  GGUFMetadata vocab;
  if (!a.vocab_from.empty()) {
    vocab = tokenizer_metadata_from(a.vocab_from);
    const auto n = static_cast<int64_t>(vocab.get_string_array("tokenizer.ggml.tokens").size());
    if (n != cfg.vocab_size)
      std::fprintf(stderr, "qeval: note: vocabulary of %s has %lld tokens; the model uses that instead of the preset's %lld\n",
                   a.vocab_from.c_str(), static_cast<long long>(n), static_cast<long long>(cfg.vocab_size));
    cfg.vocab_size = n;
  } else {
    vocab = synth_spm_vocab(cfg.vocab_size);
  }
  const Model m = synth_model(cfg, a.seed, vocab, a.threads);
  GGUFExportOptions opts;
  opts.type = type;
  opts.name = fmt::format("synth-{}-seed{}", a.preset, a.seed);
  save_gguf(m, a.out, opts);
  std::printf("wrote %s: %s, %lld parameters, %s, seed %llu\n", a.out.c_str(), a.preset.c_str(),
              static_cast<long long>(m.parameter_count()), a.type.c_str(), static_cast<unsigned long long>(a.seed));
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<SynthArgs>();
  app.add_option("--arch", a->arch, "architecture (llama)");
  app.add_option("--preset", a->preset, "tinyllama-1.1b | smollm-135m | stories260k")->required();
  app.add_option("--seed", a->seed, "random seed");
  app.add_option("-o,--output", a->out, "output GGUF file")->required();
  app.add_option("--type", a->type, "f32 | f16");
  app.add_option("--vocab-from", a->vocab_from, "copy the tokenizer from this GGUF file (default: a byte-level SPM vocabulary)");
  app.add_option("--threads,-t", a->threads, "threads for weight generation");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("synth", "Write a deterministic random-weight model of a real shape as GGUF", setup);

}  // namespace
}  // namespace qeval::cli
