#include "qeval/kernels/packed_matrix.h"

#include <algorithm>
#include <cstring>

#include "qeval/kernels/isa_kernels.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"

namespace qeval::kernels {

const char* format_name(Format f) {
  switch (f) {
    case Format::F16: return "f16";
    case Format::Q8_0: return "q8_0";
    case Format::Q4_0: return "q4_0";
    case Format::Q4_1: return "q4_1";
    case Format::Int8: return "int8";
    case Format::Int4: return "int4";
  }
  return "?";
}


size_t PackedMatrix::storage_bytes() const {
  size_t n = row_bytes * static_cast<size_t>(rows);
  if (format == Format::Int8 || format == Format::Int4) {
    const int64_t groups = scale_row_stride == 0 ? 1 : rows * scale_row_stride;
    n += static_cast<size_t>(groups) * sizeof(float) * (zeros ? 2 : 1);
    if (outlier_row_ptr) {
      const int64_t k = outlier_row_ptr[rows];
      n += static_cast<size_t>(rows + 1) * sizeof(int64_t) + static_cast<size_t>(k) * (sizeof(int32_t) + sizeof(float));
    }
  }
  return n;
}

size_t format_row_bytes(Format f, int64_t cols) {
  auto blocks = [&](size_t bytes) {
    if (cols % 32 != 0) throw Error(std::string(format_name(f)) + ": row of " + std::to_string(cols) + " is not a multiple of 32");
    return static_cast<size_t>(cols / 32) * bytes;
  };
  switch (f) {
    case Format::F16: return static_cast<size_t>(cols) * 2;
    case Format::Q8_0: return blocks(34);
    case Format::Q4_0: return blocks(18);
    case Format::Q4_1: return blocks(20);
    case Format::Int8: return static_cast<size_t>(cols);
    case Format::Int4: return static_cast<size_t>((cols + 1) / 2);
  }
  return 0;
}

void validate(const PackedMatrix& m, const std::string& what) {
  auto bad = [&](const std::string& msg) { throw Error(what + ": " + msg); };
  if (m.rows <= 0 || m.cols <= 0 || m.data == nullptr) bad("empty packed matrix");
  if (m.row_bytes < format_row_bytes(m.format, m.cols)) bad("row stride shorter than a row");
  if (m.format == Format::Int8 || m.format == Format::Int4) {
    if (m.group_size <= 0 || m.scales == nullptr) bad("group size or scales missing");
    if (m.scale_row_stride != 0 && m.scale_row_stride != (m.cols + m.group_size - 1) / m.group_size)
      bad("scale stride does not match the group size");
    if (m.scale_row_stride == 0 && m.group_size != m.cols) bad("a per-tensor matrix has one group of cols");
    if (m.outlier_row_ptr && (!m.outlier_cols || !m.outlier_values)) bad("incomplete outlier index");
  } else if (m.outlier_row_ptr) {
    bad("outliers are only supported for int8 / int4 matrices");
  }
}

Isa usable_isa(const PackedMatrix& m, Isa limit) {
  Isa isa = std::min(limit, best_isa());
  while (isa != Isa::Scalar && !isa_available(isa)) isa = static_cast<Isa>(static_cast<int>(isa) - 1);
  if (m.format == Format::Int4 && m.group_size % 32 != 0) return Isa::Scalar;
  return isa;
}

size_t activation_scratch_floats(const PackedMatrix& m) {
  return m.format == Format::Int4 ? static_cast<size_t>(m.cols) : 0;
}

namespace {
// Element 8j + k of the 128 elements at c moves to 16k + j: nibble k of 32-bit word j.
void order_chunk128(const float* x, int64_t c, float* out) {
  for (int k = 0; k < 8; ++k)
    for (int j = 0; j < 16; ++j) out[c + 16 * k + j] = x[c + 8 * j + k];
}
// The 16 even elements of the 32 at c, then the 16 odd ones.
void order_chunk32(const float* x, int64_t c, float* out) {
  for (int j = 0; j < 16; ++j) {
    out[c + j] = x[c + 2 * j];
    out[c + 16 + j] = x[c + 2 * j + 1];
  }
}
}  // namespace

const float* prepare_activation(const PackedMatrix& m, Isa isa, const float* x, float* scratch) {
  if (m.format != Format::Int4 || isa == Isa::Scalar) return x;
  const int64_t n = m.cols, ng = m.scale_row_stride ? m.scale_row_stride : 1;
  std::copy(x, x + n, scratch);
  if (isa == Isa::Avx512 && detail::int4_small_groups(m)) {  // 128-chunks across groups, then 32-chunks
    int64_t c = 0;
    for (; c + 128 <= n; c += 128) order_chunk128(x, c, scratch);
    for (; c + 32 <= n; c += 32) order_chunk32(x, c, scratch);
    return scratch;
  }
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t c0 = g * m.group_size, c1 = std::min(n, c0 + m.group_size);
    int64_t c = c0;
    if (isa == Isa::Avx512)
      for (; c + 128 <= c1; c += 128) order_chunk128(x, c, scratch);
    for (; c + 32 <= c1; c += 32) order_chunk32(x, c, scratch);
  }
  return scratch;
}

void gemv(const PackedMatrix& m, Isa isa, const float* x, const float* prepared, float* y, int64_t b, int64_t e) {
  switch (isa) {
    case Isa::Avx512: return detail::gemv_avx512(m, x, prepared, y, b, e);
    case Isa::Avx2: return detail::gemv_avx2(m, x, prepared, y, b, e);
    case Isa::Scalar: return detail::gemv_scalar(m, x, y, b, e);
  }
}

void dequantize_rows(const PackedMatrix& m, Isa isa, int64_t b, int64_t e, float* out) {
  switch (isa) {
    case Isa::Avx512: return detail::dequantize_avx512(m, b, e, detail::ColumnSpan{0, m.cols}, out, m.cols);
    case Isa::Avx2: return detail::dequantize_avx2(m, b, e, out);
    case Isa::Scalar: return detail::dequantize_scalar(m, b, e, out);
  }
}

namespace detail {

bool int4_small_groups(const PackedMatrix& m) {
  return m.format == Format::Int4 && m.scale_row_stride != 0 && (m.group_size == 32 || m.group_size == 64);
}

namespace {
inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}
}  // namespace

float weight_at(const PackedMatrix& m, int64_t r, int64_t c) {
  const uint8_t* row = m.row(r);
  switch (m.format) {
    case Format::F16: return half_at(row + 2 * c);
    case Format::Q8_0: {
      const uint8_t* blk = row + (c / 32) * 34;
      return static_cast<float>(static_cast<int8_t>(blk[2 + c % 32])) * half_at(blk);
    }
    case Format::Q4_0: {
      const uint8_t* blk = row + (c / 32) * 18;
      const int j = static_cast<int>(c % 32);
      const int q = j < 16 ? (blk[2 + j] & 0x0F) : (blk[2 + j - 16] >> 4);
      return static_cast<float>(q - 8) * half_at(blk);
    }
    case Format::Q4_1: {
      const uint8_t* blk = row + (c / 32) * 20;
      const int j = static_cast<int>(c % 32);
      const int q = j < 16 ? (blk[4 + j] & 0x0F) : (blk[4 + j - 16] >> 4);
      return static_cast<float>(q) * half_at(blk) + half_at(blk + 2);
    }
    case Format::Int8: {
      const int64_t g = m.scale_row_stride ? c / m.group_size : 0;
      return m.scale(r, g) * (static_cast<float>(row[c]) - m.zero(r, g));
    }
    case Format::Int4: {
      const int64_t g = m.scale_row_stride ? c / m.group_size : 0;
      const int q = (c & 1) ? (row[c / 2] >> 4) : (row[c / 2] & 0x0F);
      return m.scale(r, g) * (static_cast<float>(q) - m.zero(r, g));
    }
  }
  return 0.0f;
}

float outlier_correction(const PackedMatrix& m, int64_t r, const float* x) {
  if (!m.outlier_row_ptr) return 0.0f;
  float s = 0.0f;
  for (int64_t k = m.outlier_row_ptr[r]; k < m.outlier_row_ptr[r + 1]; ++k) {
    const int64_t c = m.outlier_cols[k];
    s += x[c] * m.outlier_values[k];
    s -= x[c] * weight_at(m, r, c);
  }
  return s;
}

void apply_outliers(const PackedMatrix& m, int64_t r, float* out) {
  if (!m.outlier_row_ptr) return;
  for (int64_t k = m.outlier_row_ptr[r]; k < m.outlier_row_ptr[r + 1]; ++k) out[m.outlier_cols[k]] = m.outlier_values[k];
}

// Portable path: exact weights, eight interleaved float accumulators (element i goes to
// accumulator i % 8), so the rounding depth is about n / 8 as for the SIMD paths.
void gemv_scalar(const PackedMatrix& m, const float* x, float* y, int64_t b, int64_t e) {
  const int64_t n = m.cols;
  for (int64_t r = b; r < e; ++r) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t c = 0;
    for (; c + 8 <= n; c += 8)
      for (int j = 0; j < 8; ++j) acc[j] += x[c + j] * weight_at(m, r, c + j);
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; c < n; ++c) s += x[c] * weight_at(m, r, c);
    y[r - b] = s + outlier_correction(m, r, x);
  }
}

void dequantize_scalar(const PackedMatrix& m, int64_t b, int64_t e, float* out) {
  for (int64_t r = b; r < e; ++r) {
    float* o = out + (r - b) * m.cols;
    for (int64_t c = 0; c < m.cols; ++c) o[c] = weight_at(m, r, c);
    apply_outliers(m, r, o);
  }
}

}  // namespace detail
}  // namespace qeval::kernels
