#include "qeval/kernels/packed_gemm.h"

#include "qeval/kernels/isa_kernels.h"
#include "qeval/util/error.h"

namespace qeval::kernels {

bool gemm_supported(const PackedMatrix& m, Isa isa) {
  return isa == Isa::Avx512 && isa_available(Isa::Avx512) && m.outlier_row_ptr == nullptr &&
         usable_isa(m, Isa::Avx512) == Isa::Avx512;
}

void gemm(const PackedMatrix& m, Isa isa, const float* x, int64_t rows, float* y, int64_t ldy, int64_t b, int64_t e) {
  if (!gemm_supported(m, isa)) throw Error(std::string("packed gemm: no path for ") + format_name(m.format) + " on " + isa_name(isa));
  if (rows <= 0 || b >= e) return;
  detail::gemm_avx512(m, x, rows, y, ldy, b, e);
}

}  // namespace qeval::kernels
