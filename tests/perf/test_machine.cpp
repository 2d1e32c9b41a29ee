#include <gtest/gtest.h>

#include "qeval/perf/machine.h"

namespace qeval::perf {
namespace {

TEST(PerfMachine, DescribesCpuMemoryBuildAndVersion) {
  const nlohmann::json m = describe_machine(3);
  for (const char* key : {"cpu_model", "cpu_flags", "cpu_isa", "logical_cores", "threads_used", "memory_total_bytes", "blas",
                          "compiler", "compile_flags", "build_type", "build_isa", "qeval_version", "git_commit", "kernel",
                          "load_average", "time_utc"})
    EXPECT_TRUE(m.contains(key)) << key;
  EXPECT_EQ(m["threads_used"], 3);
  EXPECT_GE(m["logical_cores"].get<int>(), 1);
  EXPECT_GT(m["memory_total_bytes"].get<int64_t>(), 0);
  EXPECT_FALSE(m["cpu_model"].get<std::string>().empty());
  EXPECT_TRUE(m["cpu_flags"].is_array());
  // OpenBLAS describes itself ("OpenBLAS 0.3.21 ...").
  EXPECT_NE(m["blas"].get<std::string>().find("OpenBLAS"), std::string::npos) << m["blas"];
  EXPECT_FALSE(m["compiler"].get<std::string>().empty());
  EXPECT_FALSE(m["qeval_version"].get<std::string>().empty());
  EXPECT_EQ(m["load_average"].size(), 3u);
}

}  // namespace
}  // namespace qeval::perf
