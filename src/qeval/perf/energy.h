#pragma once
// Package energy from Intel RAPL through the Linux powercap interface
// (/sys/class/powercap/intel-rapl:N/energy_uj, a counter that wraps at max_energy_range_uj).
// Only the top-level package zones are summed (their sub-zones, core/uncore/dram, are parts of
// them or separate domains). Where the interface is missing or unreadable (VMs, containers,
// non-root since the 2020 PLATYPUS mitigation, AMD without the driver) the reading says why.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qeval::perf {

struct RaplZone {
  std::string path;      // .../intel-rapl:0
  std::string name;      // "package-0"
  uint64_t max_range_uj = 0;
};

// Counter difference with one wrap-around allowed: end < start means the counter wrapped.
uint64_t energy_delta_uj(uint64_t start, uint64_t end, uint64_t max_range_uj);

class EnergyMeter {
 public:
  // Looks for zones under `root` (default /sys/class/powercap); tests pass a fake tree.
  explicit EnergyMeter(std::string root = "/sys/class/powercap");
  bool available() const { return unavailable_reason_.empty(); }
  const std::string& unavailable_reason() const { return unavailable_reason_; }
  const std::vector<RaplZone>& zones() const { return zones_; }

  // Counter values of every zone (empty when unavailable).
  std::vector<uint64_t> read() const;
  // Joules between two read() results (wrap-around handled per zone).
  double joules(const std::vector<uint64_t>& start, const std::vector<uint64_t>& end) const;

 private:
  std::string root_;
  std::vector<RaplZone> zones_;
  std::string unavailable_reason_;
};

// {"available": true, "joules": J, "watts": J / seconds, "zones": [...]} or
// {"available": false, "reason": "..."}.
nlohmann::json energy_json(const EnergyMeter& meter, const std::vector<uint64_t>& start,
                           const std::vector<uint64_t>& end, double seconds);

}  // namespace qeval::perf
