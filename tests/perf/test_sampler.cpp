#include <gtest/gtest.h>

#include <time.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <vector>

#include "qeval/perf/energy.h"
#include "qeval/perf/sampler.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval::perf {
namespace {

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

TEST(PerfSampler, ParsesStatLineWithAwkwardCommandName) {
  // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
  const std::string line = "4242 (evil) (name x) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0";
  EXPECT_DOUBLE_EQ(parse_stat_cpu_seconds(line, 100), 3.0);
  EXPECT_THROW(parse_stat_cpu_seconds("4242 (x) S 1 2", 100), Error);
  EXPECT_THROW(parse_stat_cpu_seconds("garbage", 100), Error);
}

TEST(PerfSampler, ParsesStatusKib) {
  const std::string status = "Name:\tqeval\nVmPeak:\t  9000 kB\nVmHWM:\t    4096 kB\nVmRSS:\t    2048 kB\n";
  EXPECT_EQ(parse_status_kib(status, "VmRSS"), 2048);
  EXPECT_EQ(parse_status_kib(status, "VmHWM"), 4096);
  EXPECT_EQ(parse_status_kib(status, "VmSwap"), -1);
}

TEST(PerfSampler, ReadsThisProcess) {
  // A fresh test process may not have used one clock tick (10 ms) yet: use some first.
  volatile double x = 0;
  while (process_cpu_seconds() < 0.05) x = x + 1.0;
  const ProcessSnapshot s = read_process(0);
  EXPECT_GT(s.rss_bytes, 0);
  EXPECT_GE(s.hwm_bytes, s.rss_bytes);
  EXPECT_GT(s.cpu_seconds, 0.0);
  EXPECT_THROW(read_process(999999999), Error);
}

TEST(PerfSampler, SeesBusyCpuAndAllocatedMemory) {
  ResourceSampler sampler(0, 1.0, std::chrono::milliseconds(10));
  const double cpu0 = process_cpu_seconds();
  sampler.start();
  // Touch 64 MiB, then spin until this process has used 0.3 s of CPU (however long that takes
  // on a shared machine, bounded at 20 s): RSS must rise and the CPU time must be seen.
  std::vector<char> block(64u << 20);
  for (size_t i = 0; i < block.size(); i += 4096) block[i] = static_cast<char>(i);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  volatile double x = 0;
  while (process_cpu_seconds() - cpu0 < 0.3 && std::chrono::steady_clock::now() < give_up) x = x + 1.0;
  const ResourceUsage u = sampler.stop();
  const double used = process_cpu_seconds() - cpu0;
  ASSERT_GE(used, 0.3) << "the machine gave this test no CPU for 20 s";
  // /proc counts in clock ticks (10 ms): the sampler's figure matches the kernel's own clock.
  EXPECT_NEAR(u.cpu_seconds, used, 0.05);
  EXPECT_NEAR(u.cpu_utilization, u.cpu_seconds / u.wall_seconds / 1.0, 1e-9);
  EXPECT_LE(u.cpu_utilization, 1.5);  // one spinning thread (plus the sampler) on cores = 1
  EXPECT_GE(u.rss_peak_bytes, static_cast<int64_t>(64u << 20));
  EXPECT_GE(u.hwm_bytes, u.rss_peak_bytes);
  EXPECT_GE(u.samples, 3);
  EXPECT_FALSE(u.cpu_utilization_samples.empty());
  EXPECT_TRUE(u.sampling_error.empty());
  EXPECT_GT(block[4096 * 3], -128);
}

TEST(PerfEnergy, DeltaHandlesWrapAround) {
  EXPECT_EQ(energy_delta_uj(100, 250, 1000), 150u);
  EXPECT_EQ(energy_delta_uj(900, 50, 999), 150u);  // 900..999 (100 steps incl. the wrap to 0) + 50
  EXPECT_EQ(energy_delta_uj(5, 5, 1000), 0u);
}

TEST(PerfEnergy, MissingInterfaceSaysWhy) {
  const EnergyMeter m("/nonexistent/powercap");
  EXPECT_FALSE(m.available());
  EXPECT_NE(m.unavailable_reason().find("/nonexistent/powercap"), std::string::npos);
  const auto j = energy_json(m, m.read(), m.read(), 1.0);
  EXPECT_FALSE(j["available"].get<bool>());
  EXPECT_FALSE(j["reason"].get<std::string>().empty());
}

TEST(PerfEnergy, ReadsFakeRaplTree) {
  test::TempDir dir;
  auto zone = [&](const std::string& name, const std::string& label, uint64_t uj, uint64_t max) {
    const auto d = dir.path() / name;
    std::filesystem::create_directories(d);
    std::ofstream(d / "name") << label << "\n";
    std::ofstream(d / "energy_uj") << uj << "\n";
    std::ofstream(d / "max_energy_range_uj") << max << "\n";
  };
  zone("intel-rapl:0", "package-0", 1'000'000, 10'000'000);
  zone("intel-rapl:0:0", "core", 5, 10'000'000);  // sub-zone: not summed
  zone("intel-rapl:1", "package-1", 9'900'000, 10'000'000);
  const EnergyMeter m(dir.path().string());
  ASSERT_TRUE(m.available()) << m.unavailable_reason();
  ASSERT_EQ(m.zones().size(), 2u);
  const std::vector<uint64_t> start = m.read();
  std::ofstream(dir.path() / "intel-rapl:0" / "energy_uj") << 3'000'000 << "\n";
  std::ofstream(dir.path() / "intel-rapl:1" / "energy_uj") << 99'999 << "\n";  // wrapped
  const std::vector<uint64_t> end = m.read();
  // 2 J + (10'000'000 - 9'900'000 + 99'999 + 1) uj = 2 J + 0.2 J
  EXPECT_NEAR(m.joules(start, end), 2.2, 1e-9);
  const auto j = energy_json(m, start, end, 2.0);
  EXPECT_TRUE(j["available"].get<bool>());
  EXPECT_NEAR(j["watts"].get<double>(), 1.1, 1e-9);
}

TEST(PerfEnergy, EmptyPowercapDirectory) {
  test::TempDir dir;
  const EnergyMeter m(dir.path().string());
  EXPECT_FALSE(m.available());
  EXPECT_NE(m.unavailable_reason().find("no intel-rapl"), std::string::npos);
}

}  // namespace
}  // namespace qeval::perf
