#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qeval/engine/engine.h"
#include "qeval/engine/perplexity.h"
#include "qeval/io/model.h"
#include "qeval/quant/calibration.h"
#include "qeval/quant/export.h"
#include "qeval/quant/pipeline.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval::quant {
namespace {

const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";
const char* kText = "data/tinystories/tinystories_eval.txt";

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

struct Run {
  std::vector<float> logits;  // in-memory simulated model
  ExportInfo info;
};

// Quantize stories260K with spec, export (kind: gguf / packed / sim-gguf / sim-hf) to path.
Run quantize_and_export(const std::string& spec, const std::string& kind, const std::string& path,
                        const std::vector<TokenId>& probe) {
  const Model m = load_model(test::shared_path(kModel).string());
  auto tok = load_tokenizer(m);
  const auto calib = make_calibration(*tok, test::read_text(test::shared_path(kText)), {.samples = 8, .seqlen = 128, .seed = 3}, 512);
  Engine e(m, {.threads = 2});
  const auto r = quantize_model(e, QuantSpec::parse(spec), calib);
  Run out;
  out.logits = e.logits(probe);
  if (kind == "gguf") out.info = export_gguf(m, e, r, path);
  else if (kind == "packed") out.info = export_packed(m, e, r, path);
  else out.info = export_simulated(m, e, r, path, kind == "sim-gguf");
  return out;
}

std::vector<TokenId> probe_tokens() {
  const Model m = load_model(test::shared_path(kModel).string());
  auto tok = load_tokenizer(m);
  auto p = tok->encode("Once upon a time, there was a little dog named Max. Max liked to run in the park with his friend.");
  return p;
}

std::vector<float> reload_logits(const std::string& path, const std::vector<TokenId>& probe) {
  const Model m = load_any_model(path);
  Engine e(m, {.threads = 2});
  return e.logits(probe);
}

TEST(Export, SpecToGgufTypeMapping) {
  EXPECT_EQ(gguf_type_for(QuantSpec::parse("w4g32")), DType::Q4_0);
  EXPECT_EQ(gguf_type_for(QuantSpec::parse("w4g32-asym")), DType::Q4_1);
  EXPECT_EQ(gguf_type_for(QuantSpec::parse("w8g32-gptq")), DType::Q8_0);
  EXPECT_EQ(gguf_type_for(QuantSpec::parse("w4g128")), std::nullopt);
  EXPECT_EQ(gguf_type_for(QuantSpec::parse("w3g32")), std::nullopt);
  EXPECT_EQ(gguf_type_for(QuantSpec::parse("w8g32-asym")), std::nullopt);
  EXPECT_EQ(gguf_type_for(QuantSpec::parse("w4a8")), std::nullopt);
}

void check_roundtrip(const std::string& spec, const std::string& kind, const std::string& name, double bits_lo, double bits_hi) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  test::TempDir dir;
  const auto probe = probe_tokens();
  const Run r = quantize_and_export(spec, kind, dir.file(name), probe);
  const auto back = reload_logits(dir.file(name), probe);
  EXPECT_LE(max_abs_diff(r.logits, back), 1e-4) << spec << " " << kind;
  EXPECT_GE(r.info.bits_per_weight, bits_lo) << r.info.format;
  EXPECT_LE(r.info.bits_per_weight, bits_hi) << r.info.format;
  // Not vacuous: quantized logits differ from the float model's.
  const Model m = load_model(test::shared_path(kModel).string());
  Engine fp(m, {.threads = 2});
  EXPECT_GT(max_abs_diff(fp.logits(probe), back), 1e-3);
}

TEST(Export, GgufQ4_0GptqReloadsToSimulatedLogits) { check_roundtrip("w4g32-gptq", "gguf", "m.gguf", 4.5, 32); }
TEST(Export, GgufQ4_1AwqReloadsToSimulatedLogits) { check_roundtrip("w4g32-awq-asym", "gguf", "m.gguf", 5.0, 32); }
TEST(Export, GgufQ8_0ReloadsToSimulatedLogits) { check_roundtrip("w8g32", "gguf", "m.gguf", 8.5, 32); }
TEST(Export, PackedW3ReloadsToSimulatedLogits) { check_roundtrip("w3g16-gptq-asym", "packed", "packed", 4.1, 4.3); }
TEST(Export, SimulatedGgufAndHfReload) {
  check_roundtrip("w4g64-awq", "sim-gguf", "s.gguf", 4.2, 4.3);
  check_roundtrip("w4g64-awq", "sim-hf", "hf", 4.2, 4.3);
}

TEST(Export, SameInputsAndSeedGiveIdenticalBytes) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  test::TempDir dir;
  const auto probe = probe_tokens();
  quantize_and_export("w4g32-awq-gptq", "gguf", dir.file("a.gguf"), probe);
  quantize_and_export("w4g32-awq-gptq", "gguf", dir.file("b.gguf"), probe);
  EXPECT_EQ(test::read_text(dir.file("a.gguf")), test::read_text(dir.file("b.gguf")));
  quantize_and_export("w3g16-gptq", "packed", dir.file("pa"), probe);
  quantize_and_export("w3g16-gptq", "packed", dir.file("pb"), probe);
  EXPECT_EQ(test::read_text(dir.path() / "pa/quantized.safetensors"), test::read_text(dir.path() / "pb/quantized.safetensors"));
  quantize_and_export("w3g16", "packed", dir.file("pc"), probe);
  EXPECT_NE(test::read_text(dir.path() / "pa/quantized.safetensors"), test::read_text(dir.path() / "pc/quantized.safetensors"));
}


// ---- packed kernels (issue 8): the packed directory runs on packed kernels, equal to the
// simulated (dequantized) model up to float summation order ----

const char* kAidreams = "models/aidreams260K-gguf/aidreams260K-F32.gguf";

struct PackedPair {
  std::vector<float> simulated_logits;
  double simulated_ppl = 0;
  std::vector<std::vector<float>> simulated_weights;  // per linear, as the simulated engine holds them
};

double ppl_of(Engine& e, const Tokenizer& tok, const std::string& text) {
  return perplexity(e, tok, text, {.method = PerplexityMethod::LlamaCpp, .n_ctx = 128, .max_chunks = 12, .batch = 16, .progress = {}}).ppl;
}

// Quantizes `model_rel` with `spec` (in memory: the simulated model), exports it packed to
// `dir`, and returns the simulated figures.
PackedPair simulate_and_export(const std::string& model_rel, const std::string& spec, const std::string& dir,
                               const std::vector<TokenId>& probe, const std::string& text) {
  const Model m = load_model(test::shared_path(model_rel).string());
  auto tok = load_tokenizer(m);
  Calibration calib;
  if (needs_calibration(QuantSpec::parse(spec)))
    calib = make_calibration(*tok, test::read_text(test::shared_path(kText)), {.samples = 8, .seqlen = 64, .seed = 3}, 512);
  Engine e(m, {.threads = 2});
  const auto r = quantize_model(e, QuantSpec::parse(spec), calib);
  PackedPair out;
  out.simulated_logits = e.logits(probe);
  out.simulated_ppl = ppl_of(e, *tok, text);
  for (const LinearId& id : e.linear_ids()) out.simulated_weights.push_back(e.linear(id).weights->to_f32());
  export_packed(m, e, r, dir);
  return out;
}

void check_packed_matches_simulated(const std::string& model_rel, const std::string& spec, const std::string& kernel_prefix) {
  QEVAL_REQUIRE_SHARED(model_rel);
  QEVAL_REQUIRE_SHARED(kText);
  SCOPED_TRACE(model_rel + " " + spec);
  test::TempDir dir;
  const std::string text = test::read_text(test::shared_path(kText)).substr(0, 60000);
  const Model src = load_model(test::shared_path(model_rel).string());
  const auto probe = load_tokenizer(src)->encode("Once upon a time, there was a little dog named Max. He liked to play.");
  const PackedPair sim = simulate_and_export(model_rel, spec, dir.file("p"), probe, text);

  const Model packed = load_any_model(dir.file("p"));
  Engine e(packed, {.threads = 2});
  int kernels = 0;
  size_t i = 0;
  for (const LinearId& id : e.linear_ids()) {
    const Linear& L = e.linear(id);
    const std::string fmt(L.weights->format());
    if (fmt.rfind(kernel_prefix, 0) == 0) ++kernels;
    if (fmt.rfind("w", 0) == 0) {
      // The packed weights dequantize to exactly the simulated ones.
      EXPECT_EQ(L.weights->to_f32(), sim.simulated_weights[i]) << id.name() << " (" << fmt << ")";
    }
    ++i;
  }
  EXPECT_GT(kernels, 0) << "no linear runs a '" << kernel_prefix << "' kernel";
  const auto logits = e.logits(probe);
  EXPECT_LE(max_abs_diff(sim.simulated_logits, logits), 1e-4);
  const double ppl = ppl_of(e, *load_tokenizer(packed), text);
  EXPECT_LE(std::fabs(ppl / sim.simulated_ppl - 1.0), 1e-3) << "packed " << ppl << " vs simulated " << sim.simulated_ppl;
  // Decoding one token at a time (the GEMV path) gives the same logits with 1 and 2 threads.
  Engine e1(packed, {.threads = 1});
  KVCache c1 = e1.new_cache(), c2 = e.new_cache();
  for (TokenId t : std::vector<TokenId>(probe.begin(), probe.begin() + 6)) {
    const auto a = e1.append(c1, {&t, 1});
    const std::vector<float> av(a.begin(), a.end());
    const auto b = e.append(c2, {&t, 1});
    EXPECT_EQ(av, std::vector<float>(b.begin(), b.end()));
  }
}

TEST(PackedKernels, W4g128MatchesSimulatedStories) { check_packed_matches_simulated(kModel, "w4g128", "w4g128/"); }
TEST(PackedKernels, W4g32AsymMatchesSimulatedStories) { check_packed_matches_simulated(kModel, "w4g32-asym", "w4g32-asym/"); }
TEST(PackedKernels, W8MatchesSimulatedStories) { check_packed_matches_simulated(kModel, "w8", "w8/"); }
TEST(PackedKernels, W4g64MatchesSimulatedAidreams) { check_packed_matches_simulated(kAidreams, "w4g64", "w4g64/"); }
TEST(PackedKernels, W8MatchesSimulatedAidreams) { check_packed_matches_simulated(kAidreams, "w8", "w8/"); }
TEST(PackedKernels, LlmInt8OutliersMatchSimulated) { check_packed_matches_simulated(kModel, "llmint8", "w8+outliers/"); }

TEST(PackedKernels, DirectoryIsSelfContained) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  test::TempDir dir;
  // Quantize a copy of the model, then delete the copy: the directory must still load.
  const std::string copy = dir.file("source.gguf");
  std::filesystem::copy_file(test::shared_path(kModel), copy);
  const auto probe = probe_tokens();
  std::vector<float> sim;
  {
    const Model m = load_model(copy);
    Engine e(m, {.threads = 2});
    const auto r = quantize_model(e, QuantSpec::parse("w4g64"), Calibration{});
    sim = e.logits(probe);
    export_packed(m, e, r, dir.file("p"));
  }
  std::filesystem::remove(copy);
  const auto j = nlohmann::json::parse(test::read_text(dir.path() / "p/quant_config.json"));
  EXPECT_FALSE(j.contains("base_model"));
  EXPECT_EQ(j.at("version"), 2);
  const Model packed = load_any_model(dir.file("p"));
  auto tok = load_tokenizer(packed);
  EXPECT_EQ(tok->encode("Once upon a time, there was a little dog named Max. Max liked to run in the park with his friend."), probe);
  Engine e(packed, {.threads = 2});
  EXPECT_LE(max_abs_diff(sim, e.logits(probe)), 1e-4);
}

TEST(PackedKernels, BadPackedDirectoryIsReported) {
  QEVAL_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  {
    const Model m = load_model(test::shared_path(kModel).string());
    Engine e(m, {.threads = 1});
    export_packed(m, e, quantize_model(e, QuantSpec::parse("w4g64"), Calibration{}), dir.file("p"));
  }
  // Truncated scales: a one-line error naming the file, no crash.
  auto j = nlohmann::json::parse(test::read_text(dir.path() / "p/quant_config.json"));
  j["linears"]["blk.0.attn_q"]["shape"] = {64, 128};
  {
    std::ofstream f(dir.path() / "p/quant_config.json");
    f << j.dump();
  }
  try {
    load_any_model(dir.file("p"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("quantized.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q"), std::string::npos) << e.what();
  }
}

// A llama.cpp Q4_0 file runs on the q4_0 kernel and matches the dense model of its
// dequantized weights.
TEST(PackedKernels, GgufQ4_0FileMatchesDequantizedDense) {
  const char* q40 = "models/stories260K-gguf/stories260K-Q4_0.gguf";
  QEVAL_REQUIRE_SHARED(q40);
  QEVAL_REQUIRE_SHARED(kText);
  const Model m = load_model(test::shared_path(q40).string());
  auto tok = load_tokenizer(m);
  Engine packed(m, {.threads = 2}), dense(m, {.threads = 2});
  int q4 = 0;
  for (const LinearId& id : packed.linear_ids()) {
    const std::string fmt(packed.linear(id).weights->format());
    if (fmt.rfind("q4_0/", 0) == 0) ++q4;
    dense.set_linear_weights(id, packed.linear(id).weights->to_f32());
    EXPECT_EQ(dense.linear(id).weights->format(), "dense-f32");
  }
  EXPECT_GT(q4, 0);
  const auto probe = probe_tokens();
  EXPECT_LE(max_abs_diff(packed.logits(probe), dense.logits(probe)), 1e-4);
  const std::string text = test::read_text(test::shared_path(kText)).substr(0, 60000);
  const double a = ppl_of(packed, *tok, text), b = ppl_of(dense, *tok, text);
  EXPECT_LE(std::fabs(a / b - 1.0), 1e-3) << a << " vs " << b;
}

}  // namespace
}  // namespace qeval::quant
