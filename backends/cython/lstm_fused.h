/* One LSTM step for a single sequence (batch 1): the recurrent product and the gate pass
 * fused in one kernel.
 *
 * At batch 1 a step is a (4H, H) matrix-vector product, bound by streaming w_hh through
 * the caches: 1 MiB for H = 256 in float32, as large as Zen 4's whole L2, so it comes from
 * L3 at about 110 GB/s, 9.4 us per step (on the Intel Xeon, from its 2 MiB L2 at about
 * 125 GB/s). The kernel takes the units in blocks of L (the lanes of a 256-bit vector: 8
 * floats, 4 doubles). For each gate it computes the L dot products w_hh[g*H + u] . h_prev
 * of the block's units, one vector accumulator per row (lane l sums the products k = l,
 * l + L, ..., in order), then folds the L accumulators into one vector of L row sums with
 * log2(L) shuffle-and-add stages, with no scalar horizontal sums. The caller packs w_hh
 * once per call (lstm_fused_pack) so that the step reads it as one sequential stream (with
 * AVX-512 in vectors of 2L values). The block's gate pass
 * follows at once, on values still in registers. `reverse` walks the blocks backwards
 * (the caller alternates it between steps, so each step starts on the rows the previous
 * one read last). Two threads split a step's units (lstm_step.h): each runs this kernel
 * on its own blocks, so every unit is computed exactly as with one thread.
 */
#ifndef LSTMCPU_LSTM_FUSED_H
#define LSTMCPU_LSTM_FUSED_H

#include <stddef.h>
#include <string.h>

#include "activations.h"
#include "lstm_cell.h"
#include "recurrent.h"

typedef int lstmcpu_vi8 __attribute__((vector_size(32)));
typedef long long lstmcpu_vl4 __attribute__((vector_size(32)));

/* Fewest steps for which a call packs w_hh for the single-sequence step: packing
 * (70 to 100 us for H = 256 float32 on the Intel Xeon) costs what the packed reads save
 * in about 10 steps (6 us each). */
#define LSTMCPU_FUSED_PACK_MIN_STEPS 16

/* r[i] = x[i][0] + ... + x[i][L-1]: each stage adds pairs of lanes and interleaves two
 * vectors' results, halving the number of vectors (mask lanes >= L select from the second
 * operand). */
LSTMCPU_INLINE void lstmcpu_row_sums_f32(const lstmcpu_vf x[8], lstmcpu_vf *r)
{
    const lstmcpu_vi8 lo1 = {0, 8, 2, 10, 4, 12, 6, 14}, hi1 = {1, 9, 3, 11, 5, 13, 7, 15};
    const lstmcpu_vi8 lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const lstmcpu_vi8 lo3 = {0, 1, 2, 3, 8, 9, 10, 11}, hi3 = {4, 5, 6, 7, 12, 13, 14, 15};
    lstmcpu_vf a[4], b[2];
    for (int i = 0; i < 4; i++)
        a[i] = __builtin_shuffle(x[2 * i], x[2 * i + 1], lo1) +
               __builtin_shuffle(x[2 * i], x[2 * i + 1], hi1);
    for (int i = 0; i < 2; i++)
        b[i] = __builtin_shuffle(a[2 * i], a[2 * i + 1], lo2) +
               __builtin_shuffle(a[2 * i], a[2 * i + 1], hi2);
    *r = __builtin_shuffle(b[0], b[1], lo3) + __builtin_shuffle(b[0], b[1], hi3);
}

LSTMCPU_INLINE void lstmcpu_row_sums_f64(const lstmcpu_vd x[4], lstmcpu_vd *r)
{
    const lstmcpu_vl4 lo1 = {0, 4, 2, 6}, hi1 = {1, 5, 3, 7};
    const lstmcpu_vl4 lo2 = {0, 1, 4, 5}, hi2 = {2, 3, 6, 7};
    lstmcpu_vd a[2];
    for (int i = 0; i < 2; i++)
        a[i] = __builtin_shuffle(x[2 * i], x[2 * i + 1], lo1) +
               __builtin_shuffle(x[2 * i], x[2 * i + 1], hi1);
    *r = __builtin_shuffle(a[0], a[1], lo2) + __builtin_shuffle(a[0], a[1], hi2);
}

#define LSTMCPU_FUSED_STEP(SUFFIX, T, V, VW)                                                 \
    /* out[j] = w[j] . h (rows w[j] of length K), j < L. With p (not NULL) holding the     \
     * first K - K % L columns of the L rows packed by lstm_fused_pack(..., wide), the     \
     * loop reads one sequential stream: with `wide` (AVX-512) in vectors VW of 2L values  \
     * while 2L columns remain (lane m of row j sums the products k = m, m + 2L, ...; the  \
     * two halves then add up), then in vectors of L (lane l: k = l, l + L, ...). Without  \
     * p it reads the L rows of w in place, in vectors of L. The row sums fold the lanes.  \
     * (Vectors pass by pointer: the baseline clone has no 256-bit registers to pass them  \
     * in.) */                                                                             \
    LSTMCPU_INLINE void lstmcpu_dots_##SUFFIX(ptrdiff_t K, const T *restrict p,            \
                                             const T *restrict w, const T *restrict h,     \
                                             int wide, V *out)                             \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        V acc[L];                                                                          \
        for (int j = 0; j < L; j++)                                                        \
            acc[j] = (V){0};                                                               \
        ptrdiff_t k = 0;                                                                   \
        if (p != NULL && wide && K >= 2 * L) {                                             \
            VW sums[L];                                                                    \
            for (int j = 0; j < L; j++)                                                    \
                sums[j] = (VW){0};                                                         \
            for (; k + 2 * L <= K; k += 2 * L, p += 2 * L * L) {                           \
                const VW hv = *(const VW *)(h + k);                                        \
                for (int j = 0; j < L; j++)                                                \
                    sums[j] += *(const VW *)(p + j * 2 * L) * hv;                          \
            }                                                                              \
            for (int j = 0; j < L; j++) {                                                  \
                V lo, hi;                                                                  \
                memcpy(&lo, &sums[j], sizeof lo);                                          \
                memcpy(&hi, (const char *)&sums[j] + sizeof lo, sizeof hi);                \
                acc[j] = lo + hi;                                                          \
            }                                                                              \
        }                                                                                  \
        /* groups of L columns: packed, L x L blocks in a row; in place, rows K apart */     \
        const T *q = p != NULL ? p : w + k;                                                \
        const ptrdiff_t row = p != NULL ? L : K, group = p != NULL ? L * L : L;            \
        for (; k + L <= K; k += L, q += group) {                                           \
            const V hv = *(const V *)(h + k);                                              \
            for (int j = 0; j < L; j++)                                                    \
                acc[j] += *(const V *)(q + j * row) * hv;                                  \
        }                                                                                  \
        lstmcpu_row_sums_##SUFFIX(acc, out);                                               \
        for (; k < K; k++)                                                                 \
            for (int j = 0; j < L; j++)                                                    \
                (*out)[j] += w[j * K + k] * h[k];                                          \
    }                                                                                      \
                                                                                           \
    /* Elements of w_hh (4H, H) packed for lstm_fused_units. */                            \
    static size_t lstm_fused_size_##SUFFIX(int H)                                          \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        return (size_t)4 * (H - H % L) * (H - H % L);                                      \
    }                                                                                      \
                                                                                           \
    /* P = the full blocks of w (4H, H) in the order lstmcpu_dots reads them: for each     \
     * block of L units and each gate, the block's L rows in groups of 2L columns (L rows  \
     * of 2L values) when `wide`, then in groups of L columns. Each row of w is read in    \
     * order. (Read in place, the L rows of a block are L streams 4H bytes apart, which    \
     * the prefetchers follow less well: on the Intel Xeon, from its L2, the H = 256       \
     * float32 step takes 13.7 us in place, 11.0 packed and read in 512-bit vectors;       \
     * `benchmarks/kernel_microbench.c`. The AVX2 clone, reading 512-bit vectors, spilled  \
     * its accumulators: 125 us.) */                                                       \
    static void lstm_fused_pack_##SUFFIX(int n_units, const T *restrict w, int wide,       \
                                         T *restrict P)                                    \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        const ptrdiff_t H = n_units, KL = H - H % L;                                       \
        for (ptrdiff_t r = 0; r < 4 * KL; r++) { /* the rows of full blocks */             \
            const ptrdiff_t g = r / KL, u = r % KL, j = u % L;                             \
            const T *row = w + (g * H + u) * H;                                            \
            T *dst = P + ((u / L) * 4 + g) * KL * L; /* the block and gate's part */       \
            ptrdiff_t k = 0;                                                               \
            for (; wide && k + 2 * L <= KL; k += 2 * L, dst += 2 * L * L)                  \
                memcpy(dst + j * 2 * L, row + k, 2 * L * sizeof(T));                       \
            for (; k < KL; k += L, dst += L * L)                                           \
                memcpy(dst + j * L, row + k, L * sizeof(T));                               \
        }                                                                                  \
    }                                                                                      \
    /* One step for the units [first, last) (first a multiple of L; last one too, or H):   \
     * gates (4H) holds the input projection of the step and receives the activations;     \
     * w (4H, H) is w_hh and P its full blocks packed by lstm_fused_pack(H, w, wide, P),  \
     * or NULL to read w in place; h_prev (H) the previous state; writes c_out, tanh_c    \
     * and h_out (H). */                                                                   \
    LSTMCPU_DISPATCH                                                                       \
    static void lstm_fused_units_##SUFFIX(int H, int first, int last, const T *restrict P, \
                                          int wide, const T *restrict w,                   \
                                          const T *restrict h_prev, T *restrict gates,     \
                                          const T *restrict bias, const T *restrict c_prev, \
                                          T *restrict c_out, T *restrict tanh_c,           \
                                          T *restrict h_out, int reverse)                  \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        const ptrdiff_t K = H, b0 = first / L, blocks = last / L - b0;                     \
        T pre[4][L];                                                                       \
        for (ptrdiff_t s = 0; s < blocks; s++) {                                           \
            const ptrdiff_t u0 = L * (b0 + (reverse ? blocks - 1 - s : s));                \
            for (ptrdiff_t g = 0; g < 4; g++) {                                            \
                V v;                                                                       \
                lstmcpu_dots_##SUFFIX(K, P ? P + ((u0 / L) * 4 + g) * (K - K % L) * L : P, \
                                      w + (g * K + u0) * K, h_prev, wide, &v);             \
                v += *(const V *)(gates + g * K + u0);                                     \
                memcpy(pre[g], &v, sizeof v);                                              \
            }                                                                              \
            lstm_cell_units_##SUFFIX(L, pre[0], pre[1], pre[2], pre[3], bias + u0,         \
                                     bias + K + u0, bias + 2 * K + u0, bias + 3 * K + u0,  \
                                     c_prev + u0, c_out + u0, tanh_c + u0, h_out + u0);    \
            for (ptrdiff_t g = 0; g < 4; g++)                                              \
                memcpy(gates + g * K + u0, pre[g], sizeof pre[g]);                         \
        }                                                                                  \
        /* the last units (H % L of them when last = H), one row at a time */              \
        const ptrdiff_t u0 = (b0 + blocks) * L, n = last - u0;                             \
        if (n == 0)                                                                        \
            return;                                                                        \
        for (ptrdiff_t g = 0; g < 4; g++)                                                  \
            for (ptrdiff_t j = 0; j < n; j++) {                                            \
                const T *row = w + (g * K + u0 + j) * K;                                   \
                T sum = gates[g * K + u0 + j];                                             \
                for (ptrdiff_t k = 0; k < K; k++)                                          \
                    sum += row[k] * h_prev[k];                                             \
                pre[g][j] = sum;                                                           \
            }                                                                              \
        lstm_cell_units_##SUFFIX(n, pre[0], pre[1], pre[2], pre[3], bias + u0,             \
                                 bias + K + u0, bias + 2 * K + u0, bias + 3 * K + u0,      \
                                 c_prev + u0, c_out + u0, tanh_c + u0, h_out + u0);        \
        for (ptrdiff_t g = 0; g < 4; g++)                                                  \
            memcpy(gates + g * K + u0, pre[g], n * sizeof(T));                             \
    }

LSTMCPU_FUSED_STEP(f32, float, lstmcpu_vf, lstmcpu_vf16)
LSTMCPU_FUSED_STEP(f64, double, lstmcpu_vd, lstmcpu_vd8)

#endif
