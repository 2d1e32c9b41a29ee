#include "qeval/perf/machine.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "qeval/build_info.h"

// OpenBLAS's own description ("OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64");
// declared here so that perf does not need cblas.h on its include path.
extern "C" char* openblas_get_config(void);

namespace qeval::perf {
namespace {

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t");
  const auto e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// "key : value" of the first processor in /proc/cpuinfo.
std::string cpuinfo_field(const std::string& cpuinfo, const std::string& key) {
  std::istringstream in(cpuinfo);
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    if (trim(line.substr(0, colon)) == key) return trim(line.substr(colon + 1));
  }
  return {};
}

int64_t meminfo_bytes(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream f(line.substr(key.size() + 1));
    int64_t kib = 0;
    f >> kib;
    return kib * 1024;
  }
  return 0;
}

nlohmann::json build_isa() {
  nlohmann::json a = nlohmann::json::array();
#ifdef __SSE4_2__
  a.push_back("SSE4_2");
#endif
#ifdef __AVX__
  a.push_back("AVX");
#endif
#ifdef __AVX2__
  a.push_back("AVX2");
#endif
#ifdef __FMA__
  a.push_back("FMA");
#endif
#ifdef __F16C__
  a.push_back("F16C");
#endif
#ifdef __AVX512F__
  a.push_back("AVX512F");
#endif
#ifdef __AVX512BW__
  a.push_back("AVX512BW");
#endif
#ifdef __AVX512VNNI__
  a.push_back("AVX512VNNI");
#endif
#ifdef __ARM_NEON
  a.push_back("NEON");
#endif
  if (a.empty()) a.push_back("baseline");
  return a;
}

}  // namespace

nlohmann::json describe_machine(int threads_used) {
  nlohmann::json m;
  std::string cpuinfo;
  {
    std::ifstream in("/proc/cpuinfo");
    std::stringstream ss;
    ss << in.rdbuf();
    cpuinfo = ss.str();
  }
  std::string model = cpuinfo_field(cpuinfo, "model name");
  if (model.empty()) model = cpuinfo_field(cpuinfo, "Model");  // some ARM kernels
  m["cpu_model"] = model.empty() ? "unknown" : model;
  std::string flags = cpuinfo_field(cpuinfo, "flags");
  if (flags.empty()) flags = cpuinfo_field(cpuinfo, "Features");
  nlohmann::json all_flags = nlohmann::json::array();
  std::set<std::string> flag_set;
  {
    std::istringstream f(flags);
    std::string w;
    while (f >> w) {
      all_flags.push_back(w);
      flag_set.insert(w);
    }
  }
  nlohmann::json isa = nlohmann::json::array();
  for (const char* f : {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                        "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve"})
    if (flag_set.count(f)) isa.push_back(f);
  m["cpu_isa"] = isa;
  m["cpu_flags"] = all_flags;
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  m["logical_cores"] = online > 0 ? online : static_cast<long>(std::thread::hardware_concurrency());
  m["threads_used"] = threads_used;
  m["memory_total_bytes"] = meminfo_bytes("MemTotal");
  m["memory_available_bytes"] = meminfo_bytes("MemAvailable");
  const char* blas = openblas_get_config();
  m["blas"] = blas ? trim(blas) : std::string("unknown");
  m["compiler"] = build::kCompiler;
  m["compile_flags"] = trim(build::kCompileFlags);
  m["build_type"] = build::kBuildType;
  m["build_isa"] = build_isa();
  m["qeval_version"] = build::kVersion;
  m["git_commit"] = build::git_commit();
  struct utsname u {};
  if (uname(&u) == 0) {
    m["kernel"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
    m["hostname"] = u.nodename;
  }
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) == 3) m["load_average"] = {load[0], load[1], load[2]};
  const std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  m["time_utc"] = buf;
  return m;
}

}  // namespace qeval::perf
