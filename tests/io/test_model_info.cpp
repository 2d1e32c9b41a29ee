// `qeval info` end to end: runs the built executable on the shared models.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <map>
#include <string>

#include "test_support.h"

namespace qeval {
namespace {

struct CommandResult {
  int code = -1;
  std::string out;
};

CommandResult run_qeval(const std::string& args, bool merge_stderr = false) {
  const std::string cmd = std::string("'") + QEVAL_EXE + "' " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null");
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(QevalInfo, QuantizedGGUFTypeTable) {
  QEVAL_REQUIRE_SHARED("models/stories260K-gguf/stories260K-Q4_0.gguf");
  const std::string path = test::shared_path("models/stories260K-gguf/stories260K-Q4_0.gguf").string();
  const CommandResult r = run_qeval("info --json '" + path + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["format"], "gguf");
  EXPECT_EQ(j["config"]["n_layers"], 5);
  EXPECT_EQ(j["config"]["n_kv_heads"], 4);
  EXPECT_EQ(j["config"]["head_dim"], 8);
  EXPECT_EQ(j["config"]["context_length"], 512);
  EXPECT_EQ(j["tensor_count"], 48);
  std::map<std::string, nlohmann::json> types;
  int64_t params = 0, bytes = 0;
  for (const auto& t : j["types"]) {
    types[t["type"].get<std::string>()] = t;
    params += t["parameters"].get<int64_t>();
    bytes += t["bytes"].get<int64_t>();
  }
  ASSERT_EQ(types.size(), 4u);
  EXPECT_EQ(types["Q4_0"]["tensors"], 31);
  EXPECT_EQ(types["Q4_0"]["bits_per_weight"], 4.5);
  EXPECT_EQ(types["F16"]["tensors"], 5);
  EXPECT_EQ(types["F16"]["kinds"], nlohmann::json::array({"ffn_down.weight"}));
  EXPECT_EQ(types["Q8_0"]["kinds"], nlohmann::json::array({"output.weight"}));
  EXPECT_EQ(types["Q8_0"]["bits_per_weight"], 8.5);
  EXPECT_EQ(types["F32"]["tensors"], 11);
  EXPECT_EQ(j["parameters"], params);
  EXPECT_EQ(j["total_bytes"], bytes);
  EXPECT_DOUBLE_EQ(j["bits_per_weight"].get<double>(), 8.0 * static_cast<double>(bytes) / static_cast<double>(params));

  const CommandResult text = run_qeval("info '" + path + "'");
  ASSERT_EQ(text.code, 0);
  for (const char* s : {"architecture    llama", "heads           8 (kv heads 4, head_dim 8)", "Q4_0", "Q8_0",
                        "ffn_down.weight", "bits/weight"})
    EXPECT_NE(text.out.find(s), std::string::npos) << s << "\n" << text.out;
}

TEST(QevalInfo, HFDirectoryAndErrors) {
  QEVAL_REQUIRE_SHARED("models/stories260K-hf");
  const CommandResult r = run_qeval("info --json --tensors '" + test::shared_path("models/stories260K-hf").string() + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["format"], "hf");
  EXPECT_EQ(j["config"]["tied_embeddings"], true);
  EXPECT_EQ(j["output_aliases_token_embd"], true);
  EXPECT_EQ(j["tensor_count"], 47);  // the alias is not counted
  EXPECT_EQ(j["tensors"].size(), 48u);
  EXPECT_EQ(j["config"]["norm_eps"], 1e-5);

  const CommandResult bad = run_qeval("info /nonexistent/model.gguf", true);
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(bad.out.rfind("qeval: error: /nonexistent/model.gguf: cannot open", 0), 0u) << bad.out;
  EXPECT_EQ(bad.out.find('\n'), bad.out.size() - 1) << "one line: " << bad.out;
}

}  // namespace
}  // namespace qeval
