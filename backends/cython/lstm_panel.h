/* The recurrent product of one step for a batch of sequences, G += h @ W.T, over a copy of
 * W (rows, K) packed once per call: a register-blocked kernel in place of a BLAS GEMM per
 * step (which repacks W at every call).
 *
 * W is packed into panels of 2L consecutive rows (L the lanes of a 512-bit vector: 16
 * floats, 8 doubles), each stored k-major so that a panel row is two vectors:
 *
 *   P[(q*K + k)*2L + j] = W[q*2L + j, k]      (zero past the last row of W).
 *
 * For each panel (2L*K values, 16 KiB for K = 64 floats: it stays in L1 while the batch
 * passes) the kernel walks the batch in blocks of up to LSTMCPU_PANEL_BLOCK sequences; a
 * block of NB keeps NB x 2 vector accumulators in registers while k runs over the panel,
 * adding W[:, k] * h[b, k] in the order k = 0, 1, ... (to zero, or to the values already in
 * G). Every output sums its products in that order whatever the blocking, so results do not
 * depend on how the batch is split between threads.
 *
 * Blocks of 8 with AVX-512 (16 accumulators of the 32 vector registers), of 4 below it (the
 * 8 accumulators of two halves each fill AVX2's 16 registers). A core with two 512-bit FMA
 * units and a 4-cycle FMA latency needs 8 independent sums in flight to stay busy: 4 x 2
 * accumulators were just that, and any stall showed. Measured with a C
 * microbenchmark of this kernel on a 2-core Intel Xeon (AVX-512, AMX; interleaved runs,
 * median GFLOP/s, float32), blocks of 4 -> 8: medium recurrent product (B=64, K=256,
 * 1024 rows) 68 -> 108, small (B=32, K=64, 256 rows) 100 -> 154, medium input projection
 * (6400 x 128 @ 128 x 1024) 84 -> 129, small (1600 x 32 @ 32 x 256) 54 -> 79. (Zen 4 runs a
 * 512-bit FMA on two 256-bit units, one per cycle: 4 x 2 already kept it busy.)
 */
#ifndef LSTMCPU_LSTM_PANEL_H
#define LSTMCPU_LSTM_PANEL_H

#include <stddef.h>
#include <string.h>

#include "activations.h"

/* Most rows of a block (see above), and the block used on the running CPU. */
#define LSTMCPU_PANEL_BLOCK 8
/* Bytes of packed W that a product keeps in L2 while the rows pass (see
 * lstm_panel_product). */
#define LSTMCPU_PANEL_SPAN_BYTES (256 * 1024)
#define LSTMCPU_PANEL_ROWS_PER_BLOCK() (LSTMCPU_HAS_AVX512() ? 8 : 4)

/* Integer vectors of the same width, for shuffle masks. */
typedef int lstmcpu_vi16 __attribute__((vector_size(64)));
typedef long long lstmcpu_vl8 __attribute__((vector_size(64)));

/* dst[k * ldd + j] = src[j * lds + k] for an L x L tile (L lanes per vector): log2(L)
 * stages, each swapping one bit of the row index with the same bit of the lane index
 * (mask lanes >= L select from the second operand). */
#define LSTMCPU_LO(l, bit, L) (((l) & (bit)) ? (l) - (bit) + (L) : (l))
#define LSTMCPU_HI(l, bit, L) (((l) & (bit)) ? (l) + (L) : (l) + (bit))
#define LSTMCPU_MASK8(F, bit, L)                                                           \
    F(0, bit, L), F(1, bit, L), F(2, bit, L), F(3, bit, L), F(4, bit, L), F(5, bit, L),    \
        F(6, bit, L), F(7, bit, L)
#define LSTMCPU_MASK16(F, bit, L)                                                          \
    LSTMCPU_MASK8(F, bit, L), F(8, bit, L), F(9, bit, L), F(10, bit, L), F(11, bit, L),    \
        F(12, bit, L), F(13, bit, L), F(14, bit, L), F(15, bit, L)
#define LSTMCPU_TRANSPOSE_STAGE(V, M, MASK, bit, L)                                        \
    {                                                                                      \
        const M lo = {MASK(LSTMCPU_LO, bit, L)}, hi = {MASK(LSTMCPU_HI, bit, L)};         \
        for (int r = 0; r < L; r++)                                                        \
            if (!(r & bit)) {                                                              \
                V a = x[r], b = x[r + bit];                                                \
                x[r] = __builtin_shuffle(a, b, lo);                                        \
                x[r + bit] = __builtin_shuffle(a, b, hi);                                  \
            }                                                                              \
    }

LSTMCPU_INLINE void lstmcpu_transpose_f32(const float *restrict src, ptrdiff_t lds,
                                          float *restrict dst, ptrdiff_t ldd)
{
    lstmcpu_vf16 x[16];
    for (int r = 0; r < 16; r++)
        x[r] = *(const lstmcpu_vf16 *)(src + r * lds);
    LSTMCPU_TRANSPOSE_STAGE(lstmcpu_vf16, lstmcpu_vi16, LSTMCPU_MASK16, 8, 16)
    LSTMCPU_TRANSPOSE_STAGE(lstmcpu_vf16, lstmcpu_vi16, LSTMCPU_MASK16, 4, 16)
    LSTMCPU_TRANSPOSE_STAGE(lstmcpu_vf16, lstmcpu_vi16, LSTMCPU_MASK16, 2, 16)
    LSTMCPU_TRANSPOSE_STAGE(lstmcpu_vf16, lstmcpu_vi16, LSTMCPU_MASK16, 1, 16)
    for (int r = 0; r < 16; r++)
        *(lstmcpu_vf16 *)(dst + r * ldd) = x[r];
}

LSTMCPU_INLINE void lstmcpu_transpose_f64(const double *restrict src, ptrdiff_t lds,
                                          double *restrict dst, ptrdiff_t ldd)
{
    lstmcpu_vd8 x[8];
    for (int r = 0; r < 8; r++)
        x[r] = *(const lstmcpu_vd8 *)(src + r * lds);
    LSTMCPU_TRANSPOSE_STAGE(lstmcpu_vd8, lstmcpu_vl8, LSTMCPU_MASK8, 4, 8)
    LSTMCPU_TRANSPOSE_STAGE(lstmcpu_vd8, lstmcpu_vl8, LSTMCPU_MASK8, 2, 8)
    LSTMCPU_TRANSPOSE_STAGE(lstmcpu_vd8, lstmcpu_vl8, LSTMCPU_MASK8, 1, 8)
    for (int r = 0; r < 8; r++)
        *(lstmcpu_vd8 *)(dst + r * ldd) = x[r];
}

#define LSTMCPU_PANEL_ROWS(SUFFIX, T, V, NB)                                                 \
    /* g[b][0..2L) (+)= sum_k P[k][0..2L) * h[b, k] for NB rows of h (row stride K) and   \
     * of G (row stride ldg), the first n <= 2L of the 2L columns; `add`: add to G. A full \
     * panel loads and stores G directly; only the last, partial one goes through `buf`   \
     * (copying every panel through it cost 10-35%: medium input projection 87 -> 99      \
     * GFLOP/s, small 58 -> 97 without it). */                                            \
    LSTMCPU_INLINE void lstm_panel_rows_##SUFFIX##_##NB(ptrdiff_t K, ptrdiff_t n,          \
                                                       const T *restrict p,                \
                                                       const T *restrict h,                \
                                                       T *restrict g, ptrdiff_t ldg,       \
                                                       int add)                            \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        T buf[NB][2 * L];                                                                  \
        V a[NB][2];                                                                        \
        for (int b = 0; b < NB; b++) {                                                     \
            if (n == 2 * L) {                                                              \
                a[b][0] = add ? *(const V *)(g + b * ldg) : (V){0};                        \
                a[b][1] = add ? *(const V *)(g + b * ldg + L) : (V){0};                    \
                continue;                                                                  \
            }                                                                              \
            memset(buf[b], 0, sizeof buf[b]);                                              \
            if (add)                                                                       \
                memcpy(buf[b], g + b * ldg, n * sizeof(T));                                \
            memcpy(a[b], buf[b], sizeof a[b]);                                             \
        }                                                                                  \
        for (ptrdiff_t k = 0; k < K; k++) {                                                \
            const V w0 = *(const V *)(p + 2 * L * k), w1 = *(const V *)(p + 2 * L * k + L); \
            for (int b = 0; b < NB; b++) {                                                 \
                const T hb = h[b * K + k];                                                 \
                a[b][0] += w0 * hb;                                                        \
                a[b][1] += w1 * hb;                                                        \
            }                                                                              \
        }                                                                                  \
        for (int b = 0; b < NB; b++) {                                                     \
            if (n == 2 * L) {                                                              \
                *(V *)(g + b * ldg) = a[b][0];                                             \
                *(V *)(g + b * ldg + L) = a[b][1];                                         \
                continue;                                                                  \
            }                                                                              \
            memcpy(buf[b], a[b], sizeof a[b]);                                             \
            memcpy(g + b * ldg, buf[b], n * sizeof(T));                                    \
        }                                                                                  \
    }

#define LSTMCPU_PANEL_KERNELS(SUFFIX, T, V)                                                  \
    /* Elements of the packed copy of a (rows, K) W. */                                    \
    static size_t lstm_panel_size_##SUFFIX(int rows, int K)                                \
    {                                                                                      \
        const size_t W2 = 2 * sizeof(V) / sizeof(T);                                       \
        return (rows + W2 - 1) / W2 * W2 * (size_t)K;                                      \
    }                                                                                      \
                                                                                           \
    /* P = W (rows, K) in panels: L x L tiles transposed in registers, scalar copies at     \
     * the edges. */                                                                       \
    LSTMCPU_DISPATCH                                                                       \
    static void lstm_pack_panels_##SUFFIX(int n_rows, int n_cols, const T *restrict w,     \
                                          T *restrict P)                                   \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        const ptrdiff_t rows = n_rows, K = n_cols;                                         \
        for (ptrdiff_t r0 = 0; r0 < rows; r0 += L) { /* half a panel: L rows */            \
            T *dst = P + (r0 / (2 * L)) * 2 * L * K + r0 % (2 * L);                        \
            ptrdiff_t k0 = 0;                                                              \
            if (r0 + L <= rows)                                                            \
                for (; k0 + L <= K; k0 += L)                                               \
                    lstmcpu_transpose_##SUFFIX(w + r0 * K + k0, K, dst + k0 * 2 * L, 2 * L); \
            for (ptrdiff_t k = k0; k < K; k++)                                             \
                for (ptrdiff_t j = 0; j < L; j++)                                          \
                    dst[k * 2 * L + j] = r0 + j < rows ? w[(r0 + j) * K + k] : 0;          \
        }                                                                                  \
        /* a last half panel past the rows of W: zeros */                                  \
        const ptrdiff_t halves = (rows + L - 1) / L;                                       \
        if (halves % 2)                                                                    \
            for (ptrdiff_t k = 0; k < K; k++)                                              \
                memset(P + (halves / 2) * 2 * L * K + k * 2 * L + L, 0, L * sizeof(T));    \
    }                                                                                      \
                                                                                           \
    /* P = W in panels where W (rows, K) is the transpose of the row-major wt (K, rows):  \
     * panel rows are pieces of rows of wt, copied as they are. */                          \
    static void lstm_pack_panels_t_##SUFFIX(int n_rows, int n_cols, const T *restrict wt,  \
                                            T *restrict P)                                 \
    {                                                                                      \
        enum { W2 = 2 * sizeof(V) / sizeof(T) };                                           \
        const ptrdiff_t rows = n_rows, K = n_cols;                                         \
        for (ptrdiff_t c0 = 0; c0 < rows; c0 += W2) {                                      \
            const ptrdiff_t n = rows - c0 < W2 ? rows - c0 : W2;                           \
            for (ptrdiff_t k = 0; k < K; k++, P += W2) {                                   \
                memcpy(P, wt + k * rows + c0, n * sizeof(T));                              \
                memset(P + n, 0, (W2 - n) * sizeof(T));                                    \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    LSTMCPU_PANEL_ROWS(SUFFIX, T, V, 1)                                                    \
    LSTMCPU_PANEL_ROWS(SUFFIX, T, V, 2)                                                    \
    LSTMCPU_PANEL_ROWS(SUFFIX, T, V, 3)                                                    \
    LSTMCPU_PANEL_ROWS(SUFFIX, T, V, 4)                                                    \
    LSTMCPU_PANEL_ROWS(SUFFIX, T, V, 5)                                                    \
    LSTMCPU_PANEL_ROWS(SUFFIX, T, V, 6)                                                    \
    LSTMCPU_PANEL_ROWS(SUFFIX, T, V, 7)                                                    \
    LSTMCPU_PANEL_ROWS(SUFFIX, T, V, 8)                                                    \
                                                                                           \
    /* G[q0:q1, c0:c1] (+)= h[q0:q1] @ W[c0:c1].T for c0 and c1 on panel boundaries (or c1  \
     * the end of W): the rows in blocks of nb, panel after panel. */                      \
    LSTMCPU_INLINE void lstm_panel_chunk_##SUFFIX(ptrdiff_t rows, ptrdiff_t K, ptrdiff_t q0, \
                                                 ptrdiff_t q1, ptrdiff_t c0, ptrdiff_t c1, \
                                                 ptrdiff_t nb, const T *restrict P,        \
                                                 const T *restrict h, T *restrict G,       \
                                                 ptrdiff_t ld, int add)                    \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        for (ptrdiff_t c = c0; c < c1; c += 2 * L) {                                       \
            const ptrdiff_t n = rows - c < 2 * L ? rows - c : 2 * L;                       \
            const T *p = P + c * K;                                                        \
            for (ptrdiff_t r = q0; r < q1; r += nb) {                                      \
                const T *hr = h + r * K;                                                   \
                T *g = G + r * ld + c;                                                     \
                switch (q1 - r < nb ? q1 - r : nb) {                                       \
                case 1: lstm_panel_rows_##SUFFIX##_1(K, n, p, hr, g, ld, add); break;      \
                case 2: lstm_panel_rows_##SUFFIX##_2(K, n, p, hr, g, ld, add); break;      \
                case 3: lstm_panel_rows_##SUFFIX##_3(K, n, p, hr, g, ld, add); break;      \
                case 4: lstm_panel_rows_##SUFFIX##_4(K, n, p, hr, g, ld, add); break;      \
                case 5: lstm_panel_rows_##SUFFIX##_5(K, n, p, hr, g, ld, add); break;      \
                case 6: lstm_panel_rows_##SUFFIX##_6(K, n, p, hr, g, ld, add); break;      \
                case 7: lstm_panel_rows_##SUFFIX##_7(K, n, p, hr, g, ld, add); break;      \
                default: lstm_panel_rows_##SUFFIX##_8(K, n, p, hr, g, ld, add); break;     \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    /* G[r0:r1] (row stride ldg) = h[r0:r1] (row stride K) @ W.T, or += with `add`; W      \
     * (rows, K) packed in P. The panels go in spans of about LSTMCPU_PANEL_SPAN_BYTES,    \
     * which stay in L2 while every row crosses them; within a span the rows go in chunks  \
     * of 8, each crossing every panel of the span, so a chunk's rows of G are written     \
     * left to right (the prefetchers follow). (Chunks of 64 rows crossing all of W ran    \
     * the medium preset's input projection, 6400 x 128 @ 128 x 1024, at 64 GFLOP/s        \
     * against 87: its G rows came from memory in scattered 128-byte pieces. Chunks of 8   \
     * crossing all of W streamed W from L3 once per chunk when it outgrew L2: the large   \
     * preset's 4 MiB w_hh ran at 99 GFLOP/s, 156 in spans of 256 KiB; the large input     \
     * projection 95 -> 146, the medium one 121 -> 145, the small products unchanged, in a \
     * C microbenchmark on the Intel Xeon with 2 MiB of L2 per core.) */                   \
    LSTMCPU_DISPATCH                                                                       \
    static void lstm_panel_product_##SUFFIX(int n_rows, int n_cols, int r0, int r1,        \
                                            const T *restrict P, const T *restrict h,      \
                                            T *restrict G, int ldg, int add)               \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T), CHUNK = LSTMCPU_PANEL_BLOCK };                   \
        const ptrdiff_t rows = n_rows, K = n_cols, nb = LSTMCPU_PANEL_ROWS_PER_BLOCK();    \
        const ptrdiff_t panels = LSTMCPU_PANEL_SPAN_BYTES / (ptrdiff_t)(2 * sizeof(V) * K); \
        const ptrdiff_t span = 2 * L * (panels > 1 ? panels : 1);                          \
        for (ptrdiff_t s0 = 0; s0 < rows; s0 += span) {                                    \
            const ptrdiff_t s1 = rows - s0 < span ? rows : s0 + span;                      \
            for (ptrdiff_t q0 = r0; q0 < r1; q0 += CHUNK)                                  \
                lstm_panel_chunk_##SUFFIX(rows, K, q0, r1 - q0 < CHUNK ? r1 : q0 + CHUNK,  \
                                          s0, s1, nb, P, h, G, ldg, add);                  \
        }                                                                                  \
    }

LSTMCPU_PANEL_KERNELS(f32, float, lstmcpu_vf16)
LSTMCPU_PANEL_KERNELS(f64, double, lstmcpu_vd8)

#endif
