/* The recurrent product of one step for small batches (1 <= nb <= 4 sequences), the same
 * primitive for every cell: a (nb, K) state against a (rows, K) weight matrix W,
 *
 *   forward:   G  += h @ W.T     G (nb, rows), h (nb, K)      (LSTM: W = w_hh, rows = 4H)
 *   backward:  dh += dG @ W      dh (nb, K), dG (nb, rows)
 *
 * At small batch a BLAS call costs more than its arithmetic (argument checks, repacking
 * W at every step), and the step is bound by streaming W (1 MiB for an LSTM with H = 256
 * in float32) through the caches. These kernels read W in place, once per step, for all nb
 * sequences at once, with register accumulators. `reverse` flips the order in which W
 * is walked; the caller alternates it between steps, so each step starts on the part of
 * W that the previous step touched last and that is still in the core's L2 cache.
 *
 * Vectors are lstmcpu_vf / lstmcpu_vd (activations.h), 8 floats / 4 doubles (256 bits):
 * AVX2 width, and the width at which Zen 4 executes AVX-512 anyway. Dispatch: see activations.h (LSTMCPU_DISPATCH).
 */
#ifndef LSTMCPU_RECURRENT_H
#define LSTMCPU_RECURRENT_H

#include <stddef.h>
#include <string.h>

#include "activations.h"

/* Largest batch the kernels take; larger batches go to BLAS GEMM. */
#define LSTMCPU_SMALL_BATCH 4

/* Columns of the backward kernel's strips: 4 vectors of T. */
#define LSTMCPU_STRIP(T) (4 * 32 / (int)sizeof(T))

/* Forward, one block of 4 rows of W against NB sequences: out[b][r] += w[r] . h[b].
 * U independent accumulators per dot product (k unrolled U times) hide the FMA latency
 * when NB is small. */
#define LSTMCPU_DOT_BLOCK(SUFFIX, T, V, NB, U)                                               \
    LSTMCPU_INLINE void lstmcpu_dot4_##SUFFIX##_##NB(ptrdiff_t K, const T *restrict w,     \
                                                    const T *restrict h, ptrdiff_t ldg,    \
                                                    T *restrict out)                       \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        V acc[NB][4][U];                                                                   \
        T tail[NB][4];                                                                     \
        for (int b = 0; b < NB; b++)                                                       \
            for (int r = 0; r < 4; r++) {                                                  \
                for (int u = 0; u < U; u++)                                                \
                    acc[b][r][u] = (V){0};                                                 \
                tail[b][r] = 0;                                                            \
            }                                                                              \
        ptrdiff_t k = 0;                                                                   \
        for (; k + U * L <= K; k += U * L)                                                 \
            for (int u = 0; u < U; u++) {                                                  \
                V wv[4];                                                                   \
                for (int r = 0; r < 4; r++)                                                \
                    wv[r] = *(const V *)(w + r * K + k + u * L);                           \
                for (int b = 0; b < NB; b++) {                                             \
                    V hv = *(const V *)(h + b * K + k + u * L);                            \
                    for (int r = 0; r < 4; r++)                                            \
                        acc[b][r][u] += wv[r] * hv;                                        \
                }                                                                          \
            }                                                                              \
        for (; k < K; k++)                                                                 \
            for (int b = 0; b < NB; b++)                                                   \
                for (int r = 0; r < 4; r++)                                                \
                    tail[b][r] += w[r * K + k] * h[b * K + k];                             \
        for (int b = 0; b < NB; b++)                                                       \
            for (int r = 0; r < 4; r++) {                                                  \
                V v = acc[b][r][0];                                                        \
                for (int u = 1; u < U; u++)                                                \
                    v += acc[b][r][u];                                                     \
                T s = tail[b][r];                                                          \
                for (int l = 0; l < L; l++)                                                \
                    s += v[l];                                                             \
                out[b * ldg + r] += s;                                                     \
            }                                                                              \
    }

/* Backward, one strip of C columns of W (C a multiple of the vector length) against NB
 * sequences: dh[b][c] += sum_j dG[b][j] w[j][c], the strip's rows ldw apart in w. */
#define LSTMCPU_AXPY_STRIP(SUFFIX, T, V, NB)                                                 \
    LSTMCPU_INLINE void lstmcpu_strip_##SUFFIX##_##NB(ptrdiff_t K, ptrdiff_t rows,         \
                                                     const T *restrict w, ptrdiff_t ldw,   \
                                                     const T *restrict dg, ptrdiff_t ldg,  \
                                                     T *restrict dh)                       \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        V acc[NB][4];                                                                      \
        for (int b = 0; b < NB; b++)                                                       \
            for (int v = 0; v < 4; v++)                                                    \
                acc[b][v] = *(const V *)(dh + b * K + v * L);                              \
        for (ptrdiff_t j = 0; j < rows; j++) {                                             \
            V wv[4];                                                                       \
            for (int v = 0; v < 4; v++)                                                    \
                wv[v] = *(const V *)(w + j * ldw + v * L);                                 \
            for (int b = 0; b < NB; b++) {                                                 \
                T s = dg[b * ldg + j];                                                     \
                for (int v = 0; v < 4; v++)                                                \
                    acc[b][v] += s * wv[v];                                                \
            }                                                                              \
        }                                                                                  \
        for (int b = 0; b < NB; b++)                                                       \
            for (int v = 0; v < 4; v++)                                                    \
                *(V *)(dh + b * K + v * L) = acc[b][v];                                    \
    }

#define LSTMCPU_SMALL_BATCH_KERNELS(SUFFIX, T, V)                                            \
    LSTMCPU_DOT_BLOCK(SUFFIX, T, V, 1, 4)                                                  \
    LSTMCPU_DOT_BLOCK(SUFFIX, T, V, 2, 2)                                                  \
    LSTMCPU_DOT_BLOCK(SUFFIX, T, V, 3, 1)                                                  \
    LSTMCPU_DOT_BLOCK(SUFFIX, T, V, 4, 1)                                                  \
    LSTMCPU_AXPY_STRIP(SUFFIX, T, V, 1)                                                    \
    LSTMCPU_AXPY_STRIP(SUFFIX, T, V, 2)                                                    \
    LSTMCPU_AXPY_STRIP(SUFFIX, T, V, 3)                                                    \
    LSTMCPU_AXPY_STRIP(SUFFIX, T, V, 4)                                                    \
                                                                                           \
    /* G (nb, rows, row stride ldg) += h (nb, K) @ w.T; w is (rows, K). */                 \
    LSTMCPU_DISPATCH                                                                       \
    static void recurrent_forward_##SUFFIX(int nb, int K, int rows, const T *restrict w_all, \
                                           const T *restrict h, T *restrict G, int ldg,    \
                                           int reverse)                                    \
    {                                                                                      \
        const ptrdiff_t n = K, blocks = rows / 4;                                          \
        for (ptrdiff_t q = 0; q < blocks; q++) {                                           \
            ptrdiff_t r0 = 4 * (reverse ? blocks - 1 - q : q);                             \
            const T *w = w_all + r0 * n;                                                   \
            switch (nb) {                                                                  \
            case 1: lstmcpu_dot4_##SUFFIX##_1(n, w, h, ldg, G + r0); break;                \
            case 2: lstmcpu_dot4_##SUFFIX##_2(n, w, h, ldg, G + r0); break;                \
            case 3: lstmcpu_dot4_##SUFFIX##_3(n, w, h, ldg, G + r0); break;                \
            default: lstmcpu_dot4_##SUFFIX##_4(n, w, h, ldg, G + r0); break;               \
            }                                                                              \
        }                                                                                  \
        /* the last rows % 4 rows, one at a time */                                        \
        for (ptrdiff_t r = 4 * blocks; r < rows; r++)                                      \
            for (int b = 0; b < nb; b++) {                                                 \
                T s = 0;                                                                   \
                for (ptrdiff_t k = 0; k < n; k++)                                          \
                    s += w_all[r * n + k] * h[b * n + k];                                  \
                G[b * (ptrdiff_t)ldg + r] += s;                                            \
            }                                                                              \
    }                                                                                      \
                                                                                           \
    /* Columns [c_first, c_last) of dh (nb, K) += dG (nb, rows, row stride ldg) @ w; w is  \
     * (rows, K). c_first is a multiple of LSTMCPU_STRIP(T) and c_last one too, or K: two  \
     * threads can take a range each, and every column sums its products in the same order \
     * whatever the ranges. `strips`, when not NULL, holds w.T packed in panels            \
     * (lstm_pack_panels_t of lstm_panel.h, panels of 512 bits x 2 = one strip wide): strip \
     * q is then one sequential (rows, C) block, which streams far better than C columns  \
     * of w read row by row (H = 256 float32, Intel Xeon: 12.6 -> 11.5 us per step,       \
     * benchmarks/kernel_microbench.c). */                                                 \
    LSTMCPU_DISPATCH                                                                       \
    static void recurrent_backward_columns_##SUFFIX(int nb, int K, int n_rows,             \
                                                    const T *restrict w,                   \
                                                    const T *restrict strips,              \
                                                    const T *restrict dG, int ldg,         \
                                                    T *restrict dh, int c_first,           \
                                                    int c_last, int reverse)               \
    {                                                                                      \
        enum { C = LSTMCPU_STRIP(T) };                                                     \
        const ptrdiff_t n = K, rows = n_rows, q0 = c_first / C, q1 = c_last / C;           \
        for (ptrdiff_t i = 0; i < q1 - q0; i++) {                                          \
            const ptrdiff_t q = reverse ? q1 - 1 - i : q0 + i, c0 = C * q;                 \
            const T *ws = strips != NULL ? strips + q * C * rows : w + c0;                 \
            const ptrdiff_t ld = strips != NULL ? C : n;                                   \
            switch (nb) {                                                                  \
            case 1: lstmcpu_strip_##SUFFIX##_1(n, rows, ws, ld, dG, ldg, dh + c0); break;  \
            case 2: lstmcpu_strip_##SUFFIX##_2(n, rows, ws, ld, dG, ldg, dh + c0); break;  \
            case 3: lstmcpu_strip_##SUFFIX##_3(n, rows, ws, ld, dG, ldg, dh + c0); break;  \
            default: lstmcpu_strip_##SUFFIX##_4(n, rows, ws, ld, dG, ldg, dh + c0); break; \
            }                                                                              \
        }                                                                                  \
        /* columns past the last whole strip, one at a time */                             \
        for (ptrdiff_t c = C * q1 > c_first ? C * q1 : c_first; c < c_last; c++)           \
            for (int b = 0; b < nb; b++) {                                                 \
                T s = 0;                                                                   \
                for (ptrdiff_t j = 0; j < rows; j++)                                       \
                    s += dG[b * (ptrdiff_t)ldg + j] * w[j * n + c];                        \
                dh[b * n + c] += s;                                                        \
            }                                                                              \
    }                                                                                      \
                                                                                           \
    /* dh (nb, K) += dG (nb, rows, row stride ldg) @ w; w is (rows, K). */                 \
    static void recurrent_backward_##SUFFIX(int nb, int K, int n_rows, const T *restrict w, \
                                            const T *restrict dG, int ldg, T *restrict dh, \
                                            int reverse)                                   \
    {                                                                                      \
        recurrent_backward_columns_##SUFFIX(nb, K, n_rows, w, NULL, dG, ldg, dh, 0, K,     \
                                            reverse);                                      \
    }

LSTMCPU_SMALL_BATCH_KERNELS(f32, float, lstmcpu_vf)
LSTMCPU_SMALL_BATCH_KERNELS(f64, double, lstmcpu_vd)

#endif
