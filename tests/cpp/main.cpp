// Runs the C++ tests of the core: all of them, or those whose name contains argv[1].
#include <cstdio>
#include <cstring>

#include "check.hpp"
#include "steepest/threads.hpp"

namespace steepest::test {

namespace {
int g_failures = 0;  // failed checks of the running test
}

std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}

void fail(const char* file, int line, const std::string& what) {
  ++g_failures;
  std::fprintf(stderr, "  %s:%d: %s\n", file, line, what.c_str());
}

}  // namespace steepest::test

int main(int argc, char** argv) {
  using namespace steepest::test;
  const char* filter = argc > 1 ? argv[1] : "";
  int run = 0, failed = 0;
  for (const Case& c : cases()) {
    if (!std::strstr(c.name, filter)) continue;
    steepest::set_num_threads(1);  // each test starts as the library does on one core
    g_failures = 0;
    c.run();
    ++run;
    if (g_failures) ++failed;
    std::printf("%s %s\n", g_failures ? "FAILED" : "ok    ", c.name);
  }
  std::printf("%d tests, %d failed\n", run, failed);
  return failed || run == 0 ? 1 : 0;
}
