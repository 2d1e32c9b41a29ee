// Logits parity with llama.cpp (shared/reference/logits/*.logits.json, F32 KV cache, one batch).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "qeval/engine/engine.h"
#include "qeval/io/model.h"
#include "test_support.h"

namespace qeval {
namespace {

struct Diff {
  std::vector<double> per_sequence;
  double max_abs = 0;
  int argmax_mismatch = 0;
  int positions = 0;
};

Diff compare_logits(const std::string& model_rel, const std::string& ref_rel, EngineOptions opts) {
  const Model model = load_model(test::shared_path(model_rel).string());
  Engine engine(model, opts);
  std::ifstream in(test::shared_path(ref_rel));
  const auto ref = nlohmann::json::parse(in);
  Diff d;
  const int64_t V = ref.at("n_vocab").get<int64_t>();
  EXPECT_EQ(engine.vocab_size(), V);
  for (const auto& s : ref.at("sequences")) {
    const auto tokens = s.at("tokens").get<std::vector<TokenId>>();
    const auto got = engine.logits(tokens);
    const auto& rows = s.at("logits");
    const double before = d.max_abs;
    d.max_abs = 0;
    for (size_t p = 0; p < rows.size(); ++p) {
      const auto& row = rows[p];
      int64_t ref_arg = 0, got_arg = 0;
      for (int64_t v = 0; v < V; ++v) {
        const double r = row[static_cast<size_t>(v)].get<double>();
        const double g = got[p * static_cast<size_t>(V) + static_cast<size_t>(v)];
        d.max_abs = std::max(d.max_abs, std::fabs(r - g));
        if (r > row[static_cast<size_t>(ref_arg)].get<double>()) ref_arg = v;
        if (g > got[p * static_cast<size_t>(V) + static_cast<size_t>(got_arg)]) got_arg = v;
      }
      d.argmax_mismatch += ref_arg != got_arg;
      ++d.positions;
    }
    d.per_sequence.push_back(d.max_abs);
    d.max_abs = std::max(before, d.max_abs);
  }
  return d;
}

struct Case {
  const char* model;
  const char* ref;
  bool compat;
  double tol;
};

class LogitsParity : public ::testing::TestWithParam<Case> {};

TEST_P(LogitsParity, MatchesLlamaCpp) {
  const Case& c = GetParam();
  QEVAL_REQUIRE_SHARED(c.model);
  QEVAL_REQUIRE_SHARED(c.ref);
  EngineOptions opts;
  opts.threads = 2;
  opts.ggml_compat = c.compat;
  const Diff d = compare_logits(c.model, c.ref, opts);
  std::printf("  %s (%s): max |diff| %.3g over %d positions, argmax mismatches %d\n", c.model,
              c.compat ? "ggml-compat" : "float", d.max_abs, d.positions, d.argmax_mismatch);
  EXPECT_GT(d.positions, 0);
  EXPECT_LE(d.max_abs, c.tol);
}

INSTANTIATE_TEST_SUITE_P(
    Reference, LogitsParity,
    ::testing::Values(
        Case{"models/stories260K-gguf/stories260K-F32.gguf", "reference/logits/stories260K-F32.logits.json", false, 1e-4},
        Case{"models/stories260K-hf", "reference/logits/stories260K-F32.logits.json", false, 1e-4},
        Case{"models/aidreams260K-gguf/aidreams260K-F32.gguf", "reference/logits/aidreams260K-F32.logits.json", false, 1e-4},
        Case{"models/aidreams260K-hf", "reference/logits/aidreams260K-F32.logits.json", false, 1e-4},
        Case{"reference/gguf-types/synth-k256-F32.gguf", "reference/logits/synth-k256-F32.logits.json", false, 1e-4},
        // ggml-compatible mode. Q4_0 (with F16 ffn_down and Q8_0 output) reproduces llama.cpp to
        // float rounding. Elsewhere an activation-rounding flip (F16 or Q8) caused by a last-bit
        // difference upstream (libm vs ggml's SIMD expf, ...) moves later logits; the bounds
        // below are regression guards at about twice the measured value (see
        // Q8_0CompatMatchesMostSequencesExactly for the exact part of Q8_0).
        Case{"models/stories260K-gguf/stories260K-Q4_0.gguf", "reference/logits/stories260K-Q4_0.logits.json", true, 1e-4},
        Case{"models/stories260K-gguf/stories260K-F16.gguf", "reference/logits/stories260K-F16.logits.json", true, 1.5e-2},
        Case{"models/stories260K-gguf/stories260K-Q8_0.gguf", "reference/logits/stories260K-Q8_0.logits.json", true, 0.6},
        Case{"reference/gguf-types/synth-k256-Q6_K.pure.gguf", "reference/logits/synth-k256-Q6_K.logits.json", true, 5e-2},
        Case{"reference/gguf-types/synth-k256-Q4_K_M.mix.gguf", "reference/logits/synth-k256-Q4_K_M.logits.json", true, 6e-2}),
    [](const auto& info) {
      std::string n = std::string(info.param.ref).substr(17);
      n = n.substr(0, n.find(".logits")) + (std::string(info.param.model).find("-hf") != std::string::npos ? "_hf" : "_gguf");
      for (auto& ch : n)
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

// The Q8_0 file in ggml-compatible mode: most sequences agree with llama.cpp to float rounding
// (a later rounding flip is allowed in at most one).
TEST(LogitsParityControl, Q8_0CompatMatchesMostSequencesExactly) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-Q8_0.gguf");
  const Diff d = compare_logits("models/stories260K-gguf/stories260K-Q8_0.gguf", "reference/logits/stories260K-Q8_0.logits.json",
                                {.threads = 2, .ggml_compat = true});
  int exact = 0;
  for (double x : d.per_sequence) {
    std::printf("  Q8_0 ggml-compat sequence max |diff| %.3g\n", x);
    exact += x <= 1e-4;
  }
  EXPECT_GE(exact, 2);
}

// Without the activation rounding a quantized file does NOT reproduce llama.cpp's logits; this
// guards against the compat mode being silently inactive.
TEST(LogitsParityControl, FloatMathDiffersOnQ8_0) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-Q8_0.gguf");
  const Diff d = compare_logits("models/stories260K-gguf/stories260K-Q8_0.gguf", "reference/logits/stories260K-Q8_0.logits.json",
                                {.threads = 2});
  std::printf("  Q8_0 without ggml-compat: max |diff| %.3g\n", d.max_abs);
  EXPECT_GT(d.max_abs, 1e-2);
}

}  // namespace
}  // namespace qeval
