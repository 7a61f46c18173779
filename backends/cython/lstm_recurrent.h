/* The recurrent products of one LSTM step for small batches (1 <= nb <= 4 sequences):
 *
 *   forward:   G[t] += h @ w_hh.T     G (nb, 4H), h (nb, H), w_hh (4H, H)
 *   backward:  dh   += dG @ w_hh      dh (nb, H), dG (nb, 4H)
 *
 * At small batch a BLAS call costs more than its arithmetic (argument checks, repacking
 * w_hh at every step), and the step is bound by streaming w_hh (1 MiB for H = 256 in
 * float32) through the caches. These kernels read w_hh in place, once per step, for all nb
 * sequences at once, with register accumulators. `reverse` flips the order in which w_hh
 * is walked; the caller alternates it between steps, so each step starts on the part of
 * w_hh that the previous step touched last and that is still in the core's L2 cache.
 *
 * Vectors are 8 floats / 4 doubles (256 bits): AVX2 width, and the width at which Zen 4
 * executes AVX-512 anyway. Dispatch: see lstm_cell.h (LSTMCPU_DISPATCH).
 */
#ifndef LSTMCPU_LSTM_RECURRENT_H
#define LSTMCPU_LSTM_RECURRENT_H

#include <stddef.h>
#include <string.h>

#include "lstm_cell.h"

/* Largest batch the kernels take; larger batches go to BLAS GEMM. */
#define LSTMCPU_SMALL_BATCH 4

/* Unaligned 256-bit vectors of float and double. */
typedef float lstmcpu_vf __attribute__((vector_size(32), aligned(4)));
typedef double lstmcpu_vd __attribute__((vector_size(32), aligned(8)));

/* Forward, one block of 4 rows of w_hh against NB sequences: out[b][r] += w[r] . h[b].
 * U independent accumulators per dot product (k unrolled U times) hide the FMA latency
 * when NB is small. */
#define LSTMCPU_DOT_BLOCK(SUFFIX, T, V, NB, U)                                               \
    LSTMCPU_INLINE void lstmcpu_dot4_##SUFFIX##_##NB(ptrdiff_t H, const T *restrict w,     \
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
        for (; k + U * L <= H; k += U * L)                                                 \
            for (int u = 0; u < U; u++) {                                                  \
                V wv[4];                                                                   \
                for (int r = 0; r < 4; r++)                                                \
                    wv[r] = *(const V *)(w + r * H + k + u * L);                           \
                for (int b = 0; b < NB; b++) {                                             \
                    V hv = *(const V *)(h + b * H + k + u * L);                            \
                    for (int r = 0; r < 4; r++)                                            \
                        acc[b][r][u] += wv[r] * hv;                                        \
                }                                                                          \
            }                                                                              \
        for (; k < H; k++)                                                                 \
            for (int b = 0; b < NB; b++)                                                   \
                for (int r = 0; r < 4; r++)                                                \
                    tail[b][r] += w[r * H + k] * h[b * H + k];                             \
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

/* Backward, one strip of C columns of w_hh (C a multiple of the vector length) against NB
 * sequences: dh[b][c] += sum_j dG[b][j] w[j][c]. */
#define LSTMCPU_AXPY_STRIP(SUFFIX, T, V, NB)                                                 \
    LSTMCPU_INLINE void lstmcpu_strip_##SUFFIX##_##NB(ptrdiff_t H, ptrdiff_t rows,         \
                                                     const T *restrict w,                  \
                                                     const T *restrict dg, ptrdiff_t ldg,  \
                                                     T *restrict dh)                       \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        V acc[NB][4];                                                                      \
        for (int b = 0; b < NB; b++)                                                       \
            for (int v = 0; v < 4; v++)                                                    \
                acc[b][v] = *(const V *)(dh + b * H + v * L);                              \
        for (ptrdiff_t j = 0; j < rows; j++) {                                             \
            V wv[4];                                                                       \
            for (int v = 0; v < 4; v++)                                                    \
                wv[v] = *(const V *)(w + j * H + v * L);                                   \
            for (int b = 0; b < NB; b++) {                                                 \
                T s = dg[b * ldg + j];                                                     \
                for (int v = 0; v < 4; v++)                                                \
                    acc[b][v] += s * wv[v];                                                \
            }                                                                              \
        }                                                                                  \
        for (int b = 0; b < NB; b++)                                                       \
            for (int v = 0; v < 4; v++)                                                    \
                *(V *)(dh + b * H + v * L) = acc[b][v];                                    \
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
    /* G (nb, 4H, row stride ldg) += h (nb, H) @ w_hh.T; w_hh is (4H, H). */               \
    LSTMCPU_DISPATCH                                                                       \
    static void lstm_recurrent_forward_##SUFFIX(int nb, int H, const T *restrict w_hh,     \
                                                const T *restrict h, T *restrict G,        \
                                                int ldg, int reverse)                      \
    {                                                                                      \
        const ptrdiff_t n = H, blocks = H; /* 4H rows in blocks of 4 */                    \
        for (ptrdiff_t q = 0; q < blocks; q++) {                                           \
            ptrdiff_t r0 = 4 * (reverse ? blocks - 1 - q : q);                             \
            const T *w = w_hh + r0 * n;                                                    \
            switch (nb) {                                                                  \
            case 1: lstmcpu_dot4_##SUFFIX##_1(n, w, h, ldg, G + r0); break;                \
            case 2: lstmcpu_dot4_##SUFFIX##_2(n, w, h, ldg, G + r0); break;                \
            case 3: lstmcpu_dot4_##SUFFIX##_3(n, w, h, ldg, G + r0); break;                \
            default: lstmcpu_dot4_##SUFFIX##_4(n, w, h, ldg, G + r0); break;               \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    /* dh (nb, H) += dG (nb, 4H, row stride ldg) @ w_hh; w_hh is (4H, H). */               \
    LSTMCPU_DISPATCH                                                                       \
    static void lstm_recurrent_backward_##SUFFIX(int nb, int H, const T *restrict w_hh,    \
                                                 const T *restrict dG, int ldg,            \
                                                 T *restrict dh, int reverse)              \
    {                                                                                      \
        enum { C = 4 * sizeof(V) / sizeof(T) }; /* strip width: 4 vectors */               \
        const ptrdiff_t n = H, rows = 4 * n, strips = n / C;                               \
        for (ptrdiff_t q = 0; q < strips; q++) {                                           \
            ptrdiff_t c0 = C * (reverse ? strips - 1 - q : q);                             \
            switch (nb) {                                                                  \
            case 1: lstmcpu_strip_##SUFFIX##_1(n, rows, w_hh + c0, dG, ldg, dh + c0); break; \
            case 2: lstmcpu_strip_##SUFFIX##_2(n, rows, w_hh + c0, dG, ldg, dh + c0); break; \
            case 3: lstmcpu_strip_##SUFFIX##_3(n, rows, w_hh + c0, dG, ldg, dh + c0); break; \
            default: lstmcpu_strip_##SUFFIX##_4(n, rows, w_hh + c0, dG, ldg, dh + c0); break; \
            }                                                                              \
        }                                                                                  \
        /* the last H % C columns, one at a time */                                        \
        for (ptrdiff_t c = strips * C; c < n; c++)                                         \
            for (int b = 0; b < nb; b++) {                                                 \
                T s = 0;                                                                   \
                for (ptrdiff_t j = 0; j < rows; j++)                                       \
                    s += dG[b * (ptrdiff_t)ldg + j] * w_hh[j * n + c];                     \
                dh[b * n + c] += s;                                                        \
            }                                                                              \
    }

LSTMCPU_SMALL_BATCH_KERNELS(f32, float, lstmcpu_vf)
LSTMCPU_SMALL_BATCH_KERNELS(f64, double, lstmcpu_vd)

#endif
