// qeval quantize MODEL --spec SPEC [--calib FILE] [--samples N --seqlen L --seed S] -o OUT [--simulate]
//   [--include-output] [--format auto|gguf|packed]
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/command.h"
#include "qeval/engine/engine.h"
#include "qeval/io/model.h"
#include "qeval/quant/calibration.h"
#include "qeval/quant/export.h"
#include "qeval/quant/pipeline.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

struct QuantizeArgs {
  std::string model, spec, calib, out, format = "auto";
  int64_t samples = 128, seqlen = 512;
  uint64_t seed = 0;
  bool simulate = false, include_output = false, verbose = false;
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
  const bool needs_calib = spec.uses(Method::Gptq) || spec.uses(Method::Awq) || spec.uses(Method::SmoothQuant);
  if (needs_calib) {
    if (a.calib.empty()) throw Error("quantize: spec '" + spec.str() + "' needs --calib FILE");
    calib = load_calibration(a.calib, *tok, {.samples = a.samples, .seqlen = a.seqlen, .seed = a.seed}, engine.context_length());
    std::printf("calibration: %zu x %lld tokens from %s (seed %llu)\n", calib.samples.size(),
                static_cast<long long>(calib.seqlen), a.calib.c_str(), static_cast<unsigned long long>(a.seed));
  }
  PipelineOptions po;
  po.include_output = a.include_output;
  if (a.verbose) po.log = [](const std::string& s) { std::printf("  %s\n", s.c_str()); };
  const QuantizedModelResult r = quantize_model(engine, spec, calib, po);
  std::printf("quantized %zu linears (%lld weights) with %s: %.4f bits per weight in the scheme (codes + 16-bit scales + zeros)\n",
              r.linears.size(), static_cast<long long>(r.quantized_params), spec.str().c_str(), r.bits_per_weight);
  ExportInfo info;
  if (a.simulate) {
    const bool gguf = a.out.ends_with(".gguf");
    info = export_simulated(model, engine, r, a.out, gguf);
  } else {
    const auto gt = gguf_type_for(spec);
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
  std::printf("wrote %s (%s): %.4f effective bits per quantized weight (scales, zeros and fallbacks counted) over %lld weights\n",
              info.path.c_str(), info.format.c_str(), info.bits_per_weight, static_cast<long long>(info.quantized_params));
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  app.add_option("model", a->model, "GGUF file, HF directory or packed directory")->required();
  app.add_option("--spec", a->spec, "quantization spec (w4g32, w4g128-awq-gptq, ...)")->required();
  app.add_option("--calib", a->calib, "calibration text file (needed by gptq / awq / smoothquant)");
  app.add_option("--samples", a->samples, "calibration windows (default 128)");
  app.add_option("--seqlen", a->seqlen, "tokens per window (default 512, capped by the context)");
  app.add_option("--seed", a->seed, "calibration sampling seed (default 0)");
  app.add_option("-o,--output", a->out, "output: .gguf file (exact GGUF types) or directory (packed / HF)")->required();
  app.add_flag("--simulate", a->simulate, "write dequantized F32 weights (GGUF when OUT ends in .gguf, else HF)");
  app.add_flag("--include-output", a->include_output, "also quantize the output head");
  app.add_option("--format", a->format, "auto | gguf | packed");
  app.add_option("--threads,-t", a->threads, "threads");
  app.add_flag("-v,--verbose", a->verbose, "per-layer progress");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("quantize", "Post-training quantization (RTN, GPTQ, AWQ, SmoothQuant) to GGUF or packed safetensors", setup);

}  // namespace
}  // namespace qeval::cli
