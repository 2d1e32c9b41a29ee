#pragma once
// What a benchmark ran on, recorded with every result: CPU model and ISA flags (from
// /proc/cpuinfo), logical cores online and the threads the run used, memory, BLAS library
// (openblas_get_config()), the compiler, its flags and the ISA extensions the build enabled,
// QEval's version and git commit, the kernel and the load average at the time.
#include <nlohmann/json.hpp>

namespace qeval::perf {

// Fields: cpu_model, cpu_flags (array), cpu_isa (the SIMD flags that matter: sse4_2, avx,
// avx2, fma, f16c, avx512f, avx512bw, avx512vnni, avx512_bf16, amx...), logical_cores,
// threads_used, memory_total_bytes, memory_available_bytes, blas, compiler, compile_flags,
// build_type, build_isa (array of __AVX2__-style macros defined when QEval was compiled),
// qeval_version, git_commit, kernel, hostname, load_average (array of 3), time_utc.
nlohmann::json describe_machine(int threads_used);

}  // namespace qeval::perf
