// Rows: the training data as the epoch loop reads it, N rows of `width` values stored in one or
// more C-contiguous parts (arrays in memory, memory-mapped .npy files, a list of shards) of any
// numeric element type, read in place. A batch is gathered (or, when its rows lie in one part of
// the network's type, pointed to) and converted to the network's type as it is copied, so data
// larger than memory trains with O(batch) memory. Conversions are C casts: float64 -> float32
// rounds to nearest like numpy's astype, and float16 widens exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace steepest {

// Element types a part may hold (numpy's native-order f2, f4, f8, i1..i8, u1..u8; bool as u1).
enum class StoredType : int32_t { F16, F32, F64, I8, I16, I32, I64, U8, U16, U32, U64 };

struct RowPart {
  const void* data = nullptr;  // rows (rows, width), C order
  int64_t rows = 0;
  StoredType type = StoredType::F32;
};

template <class T>
constexpr StoredType stored_type_of();
template <> constexpr StoredType stored_type_of<float>() { return StoredType::F32; }
template <> constexpr StoredType stored_type_of<double>() { return StoredType::F64; }
template <> constexpr StoredType stored_type_of<int64_t>() { return StoredType::I64; }

class Rows {
 public:
  Rows() = default;
  Rows(std::vector<RowPart> parts, int64_t width);
  // One part of T in memory: data (rows, width).
  template <class T>
  static Rows of(const T* data, int64_t rows, int64_t width) {
    return Rows({{data, rows, stored_type_of<T>()}}, width);
  }

  int64_t size() const { return ends_.empty() ? 0 : ends_.back(); }
  int64_t width() const { return width_; }

  // Rows [start, start + n) in place when they lie in one part of type T, else nullptr.
  template <class T>
  const T* contiguous(int64_t start, int64_t n) const;
  // out (n, width) <- rows [start, start + n), converted to T.
  template <class T>
  void copy(T* out, int64_t start, int64_t n) const;
  // out (n, width) <- rows index[0], ..., index[n - 1], converted to T.
  template <class T>
  void gather(T* out, const int64_t* index, int64_t n) const;

 private:
  // The part holding global row r, and r's row inside it.
  size_t part_of(int64_t r, int64_t* local) const;

  std::vector<RowPart> parts_;
  std::vector<int64_t> ends_;  // ends_[i]: one past the last global row of part i
  int64_t width_ = 0;
};

}  // namespace steepest
