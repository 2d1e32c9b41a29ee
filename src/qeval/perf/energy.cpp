#include "qeval/perf/energy.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace qeval::perf {
namespace {

bool read_u64(const std::string& path, uint64_t& value, std::string* why) {
  std::ifstream in(path);
  if (!in) {
    if (why) *why = path + ": " + std::strerror(errno);
    return false;
  }
  if (!(in >> value)) {
    if (why) *why = path + ": unreadable value (permission? since 2020 energy_uj is root-only on many kernels)";
    return false;
  }
  return true;
}

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

}  // namespace

uint64_t energy_delta_uj(uint64_t start, uint64_t end, uint64_t max_range_uj) {
  if (end >= start) return end - start;
  // Wrapped once: the counter went from start up to max_range, restarted at 0, reached end.
  if (max_range_uj >= start) return (max_range_uj - start) + end + 1;
  return end;  // inconsistent max_range: count from the wrap only
}

EnergyMeter::EnergyMeter(std::string root) : root_(std::move(root)) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) {
    unavailable_reason_ = root_ + " does not exist (no powercap/RAPL interface: virtual machine, container or unsupported CPU)";
    return;
  }
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    const std::string name = e.path().filename().string();
    // Top-level package zones are "intel-rapl:N" (sub-zones are "intel-rapl:N:M").
    if (name.rfind("intel-rapl:", 0) == 0 && std::count(name.begin(), name.end(), ':') == 1) dirs.push_back(e.path().string());
  }
  std::sort(dirs.begin(), dirs.end());
  if (dirs.empty()) {
    unavailable_reason_ = root_ + " has no intel-rapl package zones (RAPL driver not loaded or not supported)";
    return;
  }
  for (const std::string& d : dirs) {
    RaplZone z;
    z.path = d;
    z.name = read_line(d + "/name");
    std::string why;
    uint64_t probe = 0;
    if (!read_u64(d + "/energy_uj", probe, &why)) {
      unavailable_reason_ = why;
      zones_.clear();
      return;
    }
    if (!read_u64(d + "/max_energy_range_uj", z.max_range_uj, &why)) z.max_range_uj = 0;
    zones_.push_back(z);
  }
}

std::vector<uint64_t> EnergyMeter::read() const {
  std::vector<uint64_t> v;
  v.reserve(zones_.size());
  for (const RaplZone& z : zones_) {
    uint64_t x = 0;
    read_u64(z.path + "/energy_uj", x, nullptr);
    v.push_back(x);
  }
  return v;
}

double EnergyMeter::joules(const std::vector<uint64_t>& start, const std::vector<uint64_t>& end) const {
  double uj = 0;
  for (size_t i = 0; i < zones_.size() && i < start.size() && i < end.size(); ++i)
    uj += static_cast<double>(energy_delta_uj(start[i], end[i], zones_[i].max_range_uj));
  return uj * 1e-6;
}

nlohmann::json energy_json(const EnergyMeter& meter, const std::vector<uint64_t>& start, const std::vector<uint64_t>& end,
                           double seconds) {
  if (!meter.available()) return {{"available", false}, {"reason", meter.unavailable_reason()}};
  const double j = meter.joules(start, end);
  nlohmann::json zones = nlohmann::json::array();
  for (const RaplZone& z : meter.zones()) zones.push_back(z.name.empty() ? z.path : z.name);
  return {{"available", true},
          {"source", "RAPL (powercap), package zones"},
          {"joules", j},
          {"watts", seconds > 0 ? j / seconds : 0.0},
          {"zones", zones}};
}

}  // namespace qeval::perf
