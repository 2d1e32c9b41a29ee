#include "qeval/perf/sampler.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "qeval/util/error.h"

namespace qeval::perf {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail_file(path, "cannot read (process gone?)");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string proc_dir(int pid) { return pid == 0 ? std::string("/proc/self") : "/proc/" + std::to_string(pid); }

}  // namespace

double parse_stat_cpu_seconds(const std::string& stat_line, long clock_ticks_per_second) {
  // Fields after the command name "(...)": the command may itself hold ") ", so the last
  // ')' ends it. utime and stime are fields 14 and 15 overall, 12 and 13 after the name.
  const size_t close = stat_line.rfind(')');
  if (close == std::string::npos || clock_ticks_per_second <= 0) throw Error("/proc stat line: malformed (no command name)");
  std::istringstream in(stat_line.substr(close + 1));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 1; i <= 13; ++i) {
    if (!(in >> field)) throw Error("/proc stat line: malformed (too few fields)");
    if (i == 12 || i == 13) {
      char* end = nullptr;
      const unsigned long long v = std::strtoull(field.c_str(), &end, 10);
      if (end == field.c_str() || *end != '\0') throw Error("/proc stat line: malformed (cpu time '" + field + "')");
      (i == 12 ? utime : stime) = v;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(clock_ticks_per_second);
}

int64_t parse_status_kib(const std::string& status_text, const std::string& key) {
  std::istringstream in(status_text);
  std::string line;
  const std::string prefix = key + ":";
  while (std::getline(in, line)) {
    if (line.compare(0, prefix.size(), prefix) != 0) continue;
    std::istringstream fields(line.substr(prefix.size()));
    int64_t kib = -1;
    if (!(fields >> kib)) return -1;
    return kib;
  }
  return -1;
}

ProcessSnapshot read_process(int pid) {
  static const long ticks = sysconf(_SC_CLK_TCK);
  const std::string dir = proc_dir(pid);
  ProcessSnapshot s;
  s.time = std::chrono::steady_clock::now();
  std::string stat = slurp(dir + "/stat");
  try {
    s.cpu_seconds = parse_stat_cpu_seconds(stat, ticks);
  } catch (const Error& e) {
    fail_file(dir + "/stat", e.what());
  }
  const std::string status = slurp(dir + "/status");
  const int64_t rss = parse_status_kib(status, "VmRSS");
  const int64_t hwm = parse_status_kib(status, "VmHWM");
  // Kernel threads and zombies have no Vm* lines; report 0 rather than failing.
  s.rss_bytes = rss < 0 ? 0 : rss * 1024;
  s.hwm_bytes = hwm < 0 ? 0 : hwm * 1024;
  return s;
}

nlohmann::json ResourceUsage::to_json() const {
  nlohmann::json j = {{"wall_seconds", wall_seconds},
          {"cpu_seconds", cpu_seconds},
          {"cores", cores},
          {"cpu_utilization", cpu_utilization},
          {"rss_peak_bytes", rss_peak_bytes},
          {"rss_mean_bytes", rss_mean_bytes},
          {"vm_hwm_bytes", hwm_bytes},
          {"samples", samples}};
  if (!sampling_error.empty()) j["sampling_error"] = sampling_error;
  return j;
}

ResourceSampler::ResourceSampler(int pid, double cores, std::chrono::milliseconds interval)
    : pid_(pid), cores_(cores > 0 ? cores : 1.0), interval_(interval.count() > 0 ? interval : std::chrono::milliseconds(1)) {}

ResourceSampler::~ResourceSampler() {
  running_ = false;
  if (thread_.joinable()) thread_.join();
}

void ResourceSampler::record(const ProcessSnapshot& s) {
  std::lock_guard lock(mu_);
  const double dt = std::chrono::duration<double>(s.time - last_.time).count();
  if (samples_ > 0 && dt > 0) util_samples_.push_back((s.cpu_seconds - last_.cpu_seconds) / dt / cores_);
  last_ = s;
  rss_peak_ = std::max(rss_peak_, s.rss_bytes);
  hwm_ = std::max(hwm_, s.hwm_bytes);
  rss_sum_ += static_cast<double>(s.rss_bytes);
  ++samples_;
}

void ResourceSampler::start() {
  if (thread_.joinable()) throw Error("ResourceSampler: already started");
  const ProcessSnapshot s = read_process(pid_);
  {
    std::lock_guard lock(mu_);
    first_ = last_ = s;
    rss_peak_ = hwm_ = 0;
    rss_sum_ = 0;
    samples_ = 0;
    util_samples_.clear();
    error_.clear();
  }
  record(s);
  running_ = true;
  thread_ = std::thread([this] { loop(); });
}

void ResourceSampler::loop() {
  auto next = std::chrono::steady_clock::now() + interval_;
  while (running_) {
    std::this_thread::sleep_until(next);
    next += interval_;
    if (!running_) break;
    try {
      record(read_process(pid_));
    } catch (const Error& e) {
      std::lock_guard lock(mu_);
      if (error_.empty()) error_ = e.what();
      break;
    }
  }
}

ResourceUsage ResourceSampler::stop() {
  running_ = false;
  if (thread_.joinable()) thread_.join();
  std::string err;
  {
    std::lock_guard lock(mu_);
    err = error_;
  }
  if (err.empty()) {
    try {
      record(read_process(pid_));
    } catch (const Error& e) {
      err = e.what();
    }
  }
  std::lock_guard lock(mu_);
  ResourceUsage u;
  u.wall_seconds = std::chrono::duration<double>(last_.time - first_.time).count();
  u.cpu_seconds = last_.cpu_seconds - first_.cpu_seconds;
  u.cores = cores_;
  u.cpu_utilization = u.wall_seconds > 0 ? u.cpu_seconds / u.wall_seconds / cores_ : 0.0;
  u.rss_peak_bytes = rss_peak_;
  u.rss_mean_bytes = samples_ > 0 ? static_cast<int64_t>(rss_sum_ / static_cast<double>(samples_)) : 0;
  u.hwm_bytes = hwm_;
  u.samples = samples_;
  u.cpu_utilization_samples = util_samples_;
  // A process that exited mid-run keeps what was sampled up to then, with the reason.
  u.sampling_error = err;
  return u;
}

}  // namespace qeval::perf
