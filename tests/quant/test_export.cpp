#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "qeval/engine/engine.h"
#include "qeval/io/model.h"
#include "qeval/quant/calibration.h"
#include "qeval/quant/export.h"
#include "qeval/quant/pipeline.h"
#include "qeval/tokenizer/tokenizer.h"
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

}  // namespace
}  // namespace qeval::quant
