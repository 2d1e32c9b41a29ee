// qeval quantize / perplexity / kld with the LLM.int8() and SpQR specs, end to end.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace qeval::quant {
namespace {

const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";
const char* kText = "data/tinystories/tinystories_eval.txt";

struct CliRun {
  int rc = -1;
  std::string out;  // stdout
  std::string all;  // stdout + stderr
};

CliRun run_qeval(const std::string& args, const test::TempDir& dir) {
  CliRun r;
  const std::string err = dir.file("stderr.txt");
  const std::string cmd = std::string(QEVAL_EXE) + " " + args + " 2>" + err;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.all = r.out + test::read_text(err);
  return r;
}

// Calibration text = the first half of the stories, evaluation text = the second half (disjoint).
struct Texts {
  std::string calib, eval;
};
Texts split_texts(const test::TempDir& dir) {
  const std::string text = test::read_text(test::shared_path(kText));
  const size_t cut = text.find("\n\n", text.size() / 2) + 2;
  Texts t{dir.file("calib.txt"), dir.file("eval.txt")};
  test::write_bytes(t.calib, text.substr(0, cut));
  test::write_bytes(t.eval, text.substr(cut, 60000));
  return t;
}

TEST(QuantizeCli, LlmInt8AndSpqrQuantizeAndEvaluate) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  test::TempDir dir;
  const Texts t = split_texts(dir);
  const std::string model = test::shared_path(kModel).string();
  const std::string calib = " --calib " + t.calib + " --calib-samples 4 --calib-seqlen 64";
  for (const char* spec : {"llmint8", "spqr-w3"}) {
    SCOPED_TRACE(spec);
    const std::string out = dir.file(std::string(spec) + ".gguf");
    const CliRun q = run_qeval("quantize " + model + " --spec " + spec + calib + " -o " + out + " --simulate --json -t 1", dir);
    ASSERT_EQ(q.rc, 0) << q.all;
    const auto j = nlohmann::json::parse(q.out);
    EXPECT_EQ(j["spec"], spec);
    EXPECT_EQ(j["quantized_linears"], 35);
    const double bits = j["scheme_bits_per_weight"];
    const bool int8 = std::string(spec) == "llmint8";
    EXPECT_GT(bits, int8 ? 8.0 : 3.0);  // + scales (+ zeros, outliers)
    EXPECT_LT(bits, int8 ? 9.0 : 5.0);
    EXPECT_NE(q.all.find("layer 5/5 done"), std::string::npos) << q.all;  // progress

    // The simulated file evaluates like the in-memory quantization.
    const std::string ppl_args = " -f " + t.eval + " --ctx 64 --chunks 6 --json -t 1";
    const CliRun a = run_qeval("perplexity " + out + ppl_args, dir);
    const CliRun b = run_qeval("perplexity " + model + ppl_args + " --spec " + spec + calib, dir);
    ASSERT_EQ(a.rc, 0) << a.all;
    ASSERT_EQ(b.rc, 0) << b.all;
    EXPECT_EQ(b.all.find("overlaps"), std::string::npos) << b.all;  // disjoint texts: no warning
    const double ppl_file = nlohmann::json::parse(a.out)["ppl"], ppl_mem = nlohmann::json::parse(b.out)["ppl"];
    if (!int8) {
      EXPECT_NEAR(ppl_file, ppl_mem, 1e-3 * ppl_mem);  // weights only: the same model
    } else {
      EXPECT_GT(ppl_mem, 0.0);  // llmint8 in memory also quantizes activations (the file holds weights only)
    }

    const CliRun k = run_qeval("kld " + model + " " + model + " -f " + t.eval + " --ctx 64 --chunks 6 --json -t 1 --spec " + spec + calib, dir);
    ASSERT_EQ(k.rc, 0) << k.all;
    EXPECT_NE(k.out.find("kld"), std::string::npos) << k.out;
  }
  const CliRun no_calib = run_qeval("perplexity " + model + " -f " + t.eval + " --ctx 64 --chunks 2 --spec llmint8", dir);
  EXPECT_EQ(no_calib.rc, 2);
  EXPECT_NE(no_calib.all.find("needs calibration text (--calib FILE)"), std::string::npos) << no_calib.all;
}

// A packed directory keeps weights (and a8 inputs) only: the KV part of its spec is a run-time
// setting, warned about at load and applied with --spec kvN on the packed model.
TEST(QuantizeCli, PackedModelTakesItsKvPartFromSpec) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  test::TempDir dir;
  const Texts t = split_texts(dir);
  const std::string model = test::shared_path(kModel).string();
  const std::string packed = dir.file("w4kv4");
  const CliRun q = run_qeval("quantize " + model + " --spec w4kv4 --format packed -o " + packed + " --json -t 1", dir);
  ASSERT_EQ(q.rc, 0) << q.all;

  const std::string ppl_args = " -f " + t.eval + " --ctx 64 --chunks 4 --json -t 1";
  const CliRun plain = run_qeval("perplexity " + packed + ppl_args, dir);
  ASSERT_EQ(plain.rc, 0) << plain.all;
  EXPECT_NE(plain.all.find(packed + ": the KV-cache part of spec 'w4kv4' is not applied at load"), std::string::npos) << plain.all;
  EXPECT_NE(plain.all.find("--spec kv4"), std::string::npos) << plain.all;

  const CliRun kv = run_qeval("perplexity " + packed + ppl_args + " --spec kv4", dir);
  ASSERT_EQ(kv.rc, 0) << kv.all;
  const CliRun in_memory = run_qeval("perplexity " + model + ppl_args + " --spec w4kv4", dir);
  ASSERT_EQ(in_memory.rc, 0) << in_memory.all;
  const double ppl_plain = nlohmann::json::parse(plain.out)["ppl"], ppl_kv = nlohmann::json::parse(kv.out)["ppl"],
               ppl_mem = nlohmann::json::parse(in_memory.out)["ppl"];
  std::printf("[ packed kv ] ppl packed %.6f, packed --spec kv4 %.6f, in memory w4kv4 %.6f\n", ppl_plain, ppl_kv, ppl_mem);
  EXPECT_NE(ppl_kv, ppl_plain);  // the 4-bit cache changes the result
  EXPECT_EQ(ppl_kv, ppl_mem);    // and equals the whole spec applied in memory (same codes, same stored cache)

  // Without --json the summary line says how the cache is held.
  const CliRun text = run_qeval("perplexity " + packed + " -f " + t.eval + " --ctx 64 --chunks 2 -t 1 --spec kv4", dir);
  ASSERT_EQ(text.rc, 0) << text.all;
  EXPECT_NE(text.out.find("quantized in memory: kv4, no linear weights quantized, KV cache kv4 (stored: q4 asym per token+head)"),
            std::string::npos)
      << text.out;
}

}  // namespace
}  // namespace qeval::quant
