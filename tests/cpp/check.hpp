// A tiny test harness: TEST(name) { ... } defines and registers a test; the CHECK macros record
// a failure (file, line, what) and let the test go on. main.cpp runs every test, or those whose
// name contains its argument, and exits with 1 when any check failed.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace steepest::test {

struct Case {
  const char* name;
  void (*run)();
};
std::vector<Case>& cases();

struct Register {
  Register(const char* name, void (*run)()) { cases().push_back({name, run}); }
};

// Records a failed check of the running test and prints it.
void fail(const char* file, int line, const std::string& what);

// The first index at which got differs from want by more than atol + rtol |want|, or -1.
template <class T, class U>
int64_t first_far(const std::vector<T>& got, const std::vector<U>& want, double rtol,
                  double atol) {
  if (got.size() != want.size()) return 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]);
    if (!(std::fabs(g - w) <= atol + rtol * std::fabs(w))) return int64_t(i);
  }
  return -1;
}

template <class T, class U>
std::string describe_far(const std::vector<T>& got, const std::vector<U>& want, int64_t i) {
  if (got.size() != want.size())
    return "sizes " + std::to_string(got.size()) + " and " + std::to_string(want.size());
  return "element " + std::to_string(i) + " is " + std::to_string(double(got[size_t(i)])) +
         ", reference " + std::to_string(double(want[size_t(i)]));
}

// The relative tolerance of a float32 (T = float) or float64 result against a float64 reference.
template <class T>
double tolerance() {
  return sizeof(T) == 4 ? 2e-5 : 1e-12;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

}  // namespace steepest::test

#define TEST(name)                                                                   \
  static void test_##name();                                                         \
  static const ::steepest::test::Register register_##name(#name, &test_##name);     \
  static void test_##name()

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) ::steepest::test::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

// got (a vector) within atol + rtol |want| of want, element by element; what names it.
#define CHECK_CLOSE(got, want, rtol, atol, what)                                         \
  do {                                                                                   \
    const int64_t far_ = ::steepest::test::first_far((got), (want), (rtol), (atol));     \
    if (far_ >= 0)                                                                       \
      ::steepest::test::fail(__FILE__, __LINE__,                                         \
                             std::string(what) + ": " +                                  \
                                 ::steepest::test::describe_far((got), (want), far_));  \
  } while (0)

// Two vectors of the same type bitwise identical (compared as bytes).
#define CHECK_BITWISE(a, b, what)                                                        \
  do {                                                                                   \
    if (!::steepest::test::same_bits((a), (b)))                                          \
      ::steepest::test::fail(__FILE__, __LINE__, std::string(what) + ": not bitwise identical"); \
  } while (0)
