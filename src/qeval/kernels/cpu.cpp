#include "qeval/kernels/cpu.h"

#include <cstdlib>
#include <string>
#include <string_view>

#include "qeval/util/log.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace qeval::kernels {

namespace {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// CPUID leaf 1, ECX bit 29 (some compilers' __builtin_cpu_supports do not know "f16c").
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & (1u << 29)) != 0;
}
#endif
}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

bool isa_available(Isa isa) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    case Isa::Avx512:
      return isa_available(Isa::Avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl");
  }
  return false;
#else
  return isa == Isa::Scalar;
#endif
}

namespace {
Isa detect() {
  Isa best = Isa::Scalar;
  if (isa_available(Isa::Avx2)) best = Isa::Avx2;
  if (isa_available(Isa::Avx512)) best = Isa::Avx512;
  if (const char* env = std::getenv("QEVAL_ISA"); env && *env) {
    const std::string_view v(env);
    Isa cap = best;
    if (v == "scalar") cap = Isa::Scalar;
    else if (v == "avx2") cap = Isa::Avx2;
    else if (v == "avx512") cap = Isa::Avx512;
    else warn("QEVAL_ISA=" + std::string(v) + " is not one of scalar, avx2, avx512; ignored");
    if (cap < best) best = cap;
  }
  return best;
}
}  // namespace

Isa best_isa() {
  static const Isa isa = detect();
  return isa;
}

bool has_avx512_vnni() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool vnni = best_isa() == Isa::Avx512 && __builtin_cpu_supports("avx512vnni");
  return vnni;
#else
  return false;
#endif
}

}  // namespace qeval::kernels
