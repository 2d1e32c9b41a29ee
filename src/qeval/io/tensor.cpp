#include "qeval/io/tensor.h"

#include <cstring>

#include "qeval/io/dequantize.h"
#include "qeval/util/error.h"

namespace qeval {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t Tensor::bytes_per_row() const {
  if (packed) throw Error(name + ": a packed low-bit matrix has no fixed-size rows (use row_to_f32)");
  auto rb = row_bytes(dtype, cols());
  if (!rb) throw Error(name + ": row length " + std::to_string(cols()) + " is not a multiple of the " +
                       std::string(dtype_name(dtype)) + " block size");
  return *rb;
}

const uint8_t* Tensor::row_data(int64_t logical_row) const {
  const int64_t phys = row_order.empty() ? logical_row : row_order[static_cast<size_t>(logical_row)];
  return data + static_cast<size_t>(phys) * bytes_per_row();
}

void Tensor::row_to_f32(int64_t logical_row, float* out) const {
  if (packed) return packed->row_to_f32(logical_row, out);
  dequantize_row(dtype, row_data(logical_row), out, cols());
}

std::vector<float> Tensor::to_f32() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  const int64_t n = cols();
  for (int64_t r = 0; r < rows(); ++r) row_to_f32(r, out.data() + r * n);
  return out;
}

Tensor Tensor::from_f32(std::string name, std::vector<int64_t> shape, std::vector<float> values) {
  auto buf = std::make_shared<std::vector<float>>(std::move(values));
  Tensor t;
  t.name = std::move(name);
  t.dtype = DType::F32;
  t.shape = std::move(shape);
  if (static_cast<size_t>(t.numel()) != buf->size()) throw Error(t.name + ": value count does not match shape " + shape_string(t.shape));
  t.data = reinterpret_cast<const uint8_t*>(buf->data());
  t.nbytes = buf->size() * sizeof(float);
  t.owner = buf;
  return t;
}

Tensor Tensor::from_bytes(std::string name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  auto buf = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  Tensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = buf->data();
  t.nbytes = buf->size();
  t.owner = buf;
  if (t.numel() > 0 && t.bytes_per_row() * static_cast<size_t>(t.rows()) != t.nbytes)
    throw Error(t.name + ": byte size does not match shape " + shape_string(t.shape));
  return t;
}

Tensor Tensor::from_packed(std::string name, std::shared_ptr<const PackedWeight> packed) {
  if (!packed) throw Error(name + ": no packed matrix");
  packed->validate(name);
  Tensor t;
  t.name = std::move(name);
  t.dtype = DType::U8;
  t.shape = {packed->rows, packed->cols};
  t.data = packed->codes;
  t.nbytes = packed->storage_bytes();
  t.packed = std::move(packed);
  return t;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace qeval
