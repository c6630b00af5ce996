#include "steepest/rows.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <stdexcept>

namespace steepest {

namespace {

// IEEE binary16 -> binary32, exactly (every half value is a float value).
float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu, bits;
  if (exponent == 0x1f) {  // infinity or NaN
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {  // normal: rebias 15 -> 127
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {  // signed zero
    bits = sign;
  } else {  // subnormal: mantissa * 2^-24, normalized
    int shift = 0;
    while (!(mantissa & 0x400u)) {
      mantissa <<= 1;
      ++shift;
    }
    bits = sign | (uint32_t(113 - shift) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

struct Half {
  uint16_t bits;
};

template <class T, class S>
void convert(T* out, const S* in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<S, Half>) {
      out[i] = T(half_to_float(in[i].bits));
    } else {
      out[i] = T(in[i]);
    }
  }
}

// out (n) <- n values of type `type` at in, converted to T.
template <class T>
void convert_values(T* out, const void* in, StoredType type, int64_t n) {
  switch (type) {
    case StoredType::F16: convert(out, static_cast<const Half*>(in), n); break;
    case StoredType::F32: convert(out, static_cast<const float*>(in), n); break;
    case StoredType::F64: convert(out, static_cast<const double*>(in), n); break;
    case StoredType::I8: convert(out, static_cast<const int8_t*>(in), n); break;
    case StoredType::I16: convert(out, static_cast<const int16_t*>(in), n); break;
    case StoredType::I32: convert(out, static_cast<const int32_t*>(in), n); break;
    case StoredType::I64: convert(out, static_cast<const int64_t*>(in), n); break;
    case StoredType::U8: convert(out, static_cast<const uint8_t*>(in), n); break;
    case StoredType::U16: convert(out, static_cast<const uint16_t*>(in), n); break;
    case StoredType::U32: convert(out, static_cast<const uint32_t*>(in), n); break;
    case StoredType::U64: convert(out, static_cast<const uint64_t*>(in), n); break;
  }
}

size_t item_size(StoredType type) {
  switch (type) {
    case StoredType::I8: case StoredType::U8: return 1;
    case StoredType::F16: case StoredType::I16: case StoredType::U16: return 2;
    case StoredType::F32: case StoredType::I32: case StoredType::U32: return 4;
    case StoredType::F64: case StoredType::I64: case StoredType::U64: return 8;
  }
  return 0;
}

// The address of row r (local to part p) of width values.
const void* row_address(const RowPart& p, int64_t r, int64_t width) {
  return static_cast<const char*>(p.data) + size_t(r * width) * item_size(p.type);
}

}  // namespace

Rows::Rows(std::vector<RowPart> parts, int64_t width) : parts_(std::move(parts)), width_(width) {
  if (width < 1) throw std::invalid_argument("Rows: width must be >= 1");
  int64_t end = 0;
  for (const RowPart& p : parts_) {
    if (p.rows < 0 || (p.rows > 0 && p.data == nullptr))
      throw std::invalid_argument("Rows: a part has no data");
    end += p.rows;
    ends_.push_back(end);
  }
}

size_t Rows::part_of(int64_t r, int64_t* local) const {
  const size_t i = size_t(std::upper_bound(ends_.begin(), ends_.end(), r) - ends_.begin());
  *local = r - (i == 0 ? 0 : ends_[i - 1]);
  return i;
}

template <class T>
const T* Rows::contiguous(int64_t start, int64_t n) const {
  int64_t local;
  const size_t i = part_of(start, &local);
  if (i >= parts_.size()) return nullptr;
  const RowPart& p = parts_[i];
  if (p.type != stored_type_of<T>() || local + n > p.rows) return nullptr;
  return static_cast<const T*>(row_address(p, local, width_));
}

template <class T>
void Rows::copy(T* out, int64_t start, int64_t n) const {
  while (n > 0) {  // one run per part the rows cross
    int64_t local;
    const RowPart& p = parts_[part_of(start, &local)];
    const int64_t run = std::min(n, p.rows - local);
    convert_values(out, row_address(p, local, width_), p.type, run * width_);
    out += run * width_;
    start += run;
    n -= run;
  }
}

template <class T>
void Rows::gather(T* out, const int64_t* index, int64_t n) const {
  for (int64_t k = 0; k < n; ++k) {
    int64_t local;
    const RowPart& p = parts_[part_of(index[k], &local)];
    convert_values(out + k * width_, row_address(p, local, width_), p.type, width_);
  }
}

template const float* Rows::contiguous<float>(int64_t, int64_t) const;
template const double* Rows::contiguous<double>(int64_t, int64_t) const;
template const int64_t* Rows::contiguous<int64_t>(int64_t, int64_t) const;
template void Rows::copy<float>(float*, int64_t, int64_t) const;
template void Rows::copy<double>(double*, int64_t, int64_t) const;
template void Rows::copy<int64_t>(int64_t*, int64_t, int64_t) const;
template void Rows::gather<float>(float*, const int64_t*, int64_t) const;
template void Rows::gather<double>(double*, const int64_t*, int64_t) const;
template void Rows::gather<int64_t>(int64_t*, const int64_t*, int64_t) const;

}  // namespace steepest
