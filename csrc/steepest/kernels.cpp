#include "steepest/kernels.hpp"

#include <cblas.h>

#include <climits>
#include <stdexcept>
#include <string>

namespace steepest {

namespace {
int g_num_threads = 1;
// Below this many cheap operations a loop stays on one thread: forking costs more than it saves.
constexpr int64_t kParallelThreshold = 1 << 15;
}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("number of threads must be >= 1");
  g_num_threads = n;
  scipy_openblas_set_num_threads(n);
}

int get_num_threads() { return g_num_threads; }

int threads_for(int64_t work) { return work < kParallelThreshold ? 1 : g_num_threads; }

namespace {
blasint blas_dim(int64_t d) {
  if (d > INT_MAX)
    throw std::length_error("matrix dimension " + std::to_string(d) +
                            " exceeds the 32-bit limit of the BLAS library");
  return blasint(d);
}
}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    blas_dim(M), blas_dim(N), blas_dim(K), alpha, A, blas_dim(lda), B,
                    blas_dim(ldb), beta, C, blas_dim(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                  const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                  double* C, int64_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    blas_dim(M), blas_dim(N), blas_dim(K), alpha, A, blas_dim(lda), B,
                    blas_dim(ldb), beta, C, blas_dim(ldc));
}

}  // namespace steepest
