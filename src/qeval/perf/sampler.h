#pragma once
// Resource usage of a process (this one, or a server by PID) over a measured interval:
// CPU time from /proc/PID/stat (utime + stime), resident memory from /proc/PID/status (VmRSS,
// and VmHWM, the kernel's own peak), sampled by a background thread so that the peak RSS and
// the CPU utilization curve are seen even when the work in between allocates and frees.
//
// CPU utilization = CPU seconds / wall seconds / cores, where "cores" is what the caller says
// the process may use (the benchmark's thread count), so 1.0 means every allowed core busy.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace qeval::perf {

// One reading of /proc/PID. Throws qeval::Error naming the file when it cannot be read
// (e.g. the process has exited).
struct ProcessSnapshot {
  double cpu_seconds = 0;     // user + system time of all threads
  int64_t rss_bytes = 0;      // VmRSS
  int64_t hwm_bytes = 0;      // VmHWM: peak resident set since the process started
  std::chrono::steady_clock::time_point time;
};
ProcessSnapshot read_process(int pid);  // pid 0: this process

// Parses the "utime stime" fields of a /proc/PID/stat line (the command name may hold
// spaces and parentheses) into CPU seconds. Throws qeval::Error on a malformed line.
double parse_stat_cpu_seconds(const std::string& stat_line, long clock_ticks_per_second);
// Reads "<key>:   123 kB" from a /proc/PID/status text; -1 when the key is absent.
int64_t parse_status_kib(const std::string& status_text, const std::string& key);

struct ResourceUsage {
  double wall_seconds = 0;
  double cpu_seconds = 0;
  double cores = 1;                  // the divisor of cpu_utilization
  double cpu_utilization = 0;        // cpu_seconds / wall_seconds / cores
  int64_t rss_peak_bytes = 0;        // max sampled VmRSS
  int64_t rss_mean_bytes = 0;        // mean sampled VmRSS
  int64_t hwm_bytes = 0;             // VmHWM at the end
  int64_t samples = 0;
  std::vector<double> cpu_utilization_samples;  // per sampling interval (same divisor)
  std::string sampling_error;        // set when the process could not be read any more (exited)
  nlohmann::json to_json() const;
};

// Samples a process every `interval` between start() and stop(). Not copyable.
class ResourceSampler {
 public:
  ResourceSampler(int pid, double cores, std::chrono::milliseconds interval = std::chrono::milliseconds(50));
  ~ResourceSampler();
  ResourceSampler(const ResourceSampler&) = delete;
  ResourceSampler& operator=(const ResourceSampler&) = delete;

  void start();          // takes the first snapshot (throws when the process cannot be read)
  ResourceUsage stop();  // joins the thread, takes the last snapshot

 private:
  void loop();
  void record(const ProcessSnapshot& s);

  int pid_;
  double cores_;
  std::chrono::milliseconds interval_;
  std::thread thread_;
  std::atomic<bool> running_{false};
  std::mutex mu_;
  ProcessSnapshot first_, last_;
  int64_t rss_peak_ = 0, hwm_ = 0, samples_ = 0;
  double rss_sum_ = 0;
  std::vector<double> util_samples_;
  std::string error_;  // first sampling failure (process gone), reported by stop()
};

}  // namespace qeval::perf
