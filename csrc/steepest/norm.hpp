// Normalization kernels: BatchNorm1d (statistics of each feature over the batch), LayerNorm
// (statistics of each row over its features) and Rescale ((x - shift) / scale per feature: the
// Standardize and MinMaxScale layers). As in llm.c's layernorm_forward/backward, the forward
// pass saves the mean and the reciprocal standard deviation rstd = 1 / sqrt(var + eps) that
// the backward pass needs, and the backward pass recomputes xhat = (x - mean) rstd from x.
// B = batch rows, C = features; w, b (C) are the affine weight and bias, nullptr when absent.
// Sums run in double in a fixed order (over rows: 0..B-1; over a row: fixed lanes), so the
// results do not depend on the thread count or the SIMD width. No allocation.
#pragma once

#include <cstdint>

namespace steepest {

// Batch statistics of x (B, C), B >= 2: mean (C), rstd (C) from the biased variance (the one
// that normalizes), and var (C), the unbiased variance (the one running_var averages).
template <class T>
void batchnorm_statistics(T* mean, T* rstd, T* var, const T* x, int64_t B, int64_t C,
                          double eps);

// rstd (C) <- 1 / sqrt(running_var (C) + eps): the statistics of eval mode.
template <class T>
void batchnorm_running_rstd(T* rstd, const T* running_var, int64_t C, double eps);

// running_mean (C), running_var (C) <- (1 - factor) running + factor batch (mean, var (C) of
// batchnorm_statistics); factor is torch's momentum, or 1 / num_batches_tracked for the
// cumulative average (momentum=None).
template <class T>
void batchnorm_update_running(T* running_mean, T* running_var, const T* mean, const T* var,
                              int64_t C, double factor);

// y (B, C) <- (x - mean) rstd w + b, per feature; y may be x.
template <class T>
void batchnorm_forward(T* y, const T* x, const T* mean, const T* rstd, const T* w, const T* b,
                       int64_t B, int64_t C);

// Backward of batchnorm_forward, dy (B, C) -> dw (C) = sum over rows of dy xhat, db (C) = sum
// of dy (added to them when accumulate; each may be nullptr), and dx (B, C) (nullptr: not
// wanted; may be dy). With batch_stats, mean and rstd were x's own (training, or no running
// statistics) and the gradient flows through them: dx = rstd w (dy - mean(dy) - xhat
// mean(dy xhat)); otherwise they were constants and dx = rstd w dy.
template <class T>
void batchnorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean,
                        const T* rstd, const T* w, int64_t B, int64_t C, bool batch_stats,
                        bool accumulate);

// LayerNorm of each row of x (B, C): mean (B) and rstd (B) saved (the biased variance), y (B, C)
// <- (x - mean) rstd w + b; y may be x.
template <class T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t B,
                       int64_t C, double eps);

// Backward of layernorm_forward: dw (C), db (C) as batchnorm_backward's; dx (B, C) (nullptr:
// not wanted; may be dy) = rstd (g - mean(g) - xhat mean(g xhat)) per row, with g = dy w.
template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean,
                        const T* rstd, const T* w, int64_t B, int64_t C, bool accumulate);

// y (B, C) <- (x - shift) / scale per feature; y may be x.
template <class T>
void rescale_forward(T* y, const T* x, const T* shift, const T* scale, int64_t B, int64_t C);

// dx (B, C) <- dy (B, C) / scale; dx may be dy.
template <class T>
void rescale_backward(T* dx, const T* dy, const T* scale, int64_t B, int64_t C);

}  // namespace steepest
