/* The fused elementwise passes of one GRU step for one sequence (one row of the batch),
 * PyTorch's formulation with gates r, z, n:
 *
 *   r = sigmoid(G_r + b_r + A_r),  z = sigmoid(G_z + b_z + A_z)
 *   n = tanh(G_n + b_n + r * (A_n + b_hn)),  h = n + z * (h_prev - n)
 *
 * where G = x @ w_ih.T is the input projection and A = h_prev @ w_hh.T the recurrent
 * product (kept apart from G because b_hn sits inside the reset product).
 * The activations and the dispatch macros are those of activations.h.
 */
#ifndef LSTMCPU_GRU_CELL_H
#define LSTMCPU_GRU_CELL_H

#include <stddef.h>

#include "activations.h"

/* Forward pass of one row. `gates` holds G (3H values r, z, n, without the bias) and
 * receives the activations r, z, n; `hidden` holds A (3H). Writes hn = A_n + b_hn (the
 * backward pass needs it) and h. */
#define LSTMCPU_GRU_FORWARD(SUFFIX, T, SIGMOID, TANH)                                        \
    LSTMCPU_DISPATCH                                                                        \
    static void gru_cell_forward_##SUFFIX(int H, T *restrict gates, const T *restrict bias, \
                                          const T *restrict hidden, const T *restrict b_hn, \
                                          const T *restrict h_prev, T *restrict hn_out,     \
                                          T *restrict h_out)                                \
    {                                                                                       \
        const ptrdiff_t n = H;                                                              \
        T *restrict gr = gates, *restrict gz = gates + n, *restrict gn = gates + 2 * n;     \
        const T *restrict br = bias, *restrict bz = bias + n, *restrict bn = bias + 2 * n;  \
        const T *restrict ar = hidden, *restrict az = hidden + n;                           \
        const T *restrict an = hidden + 2 * n;                                              \
        for (ptrdiff_t j = 0; j < n; j++) {                                                 \
            T r = SIGMOID(gr[j] + br[j] + ar[j]);                                           \
            T z = SIGMOID(gz[j] + bz[j] + az[j]);                                           \
            T hn = an[j] + b_hn[j];                                                         \
            T nn = TANH(gn[j] + bn[j] + r * hn);                                            \
            gr[j] = r;                                                                      \
            gz[j] = z;                                                                      \
            gn[j] = nn;                                                                     \
            hn_out[j] = hn;                                                                 \
            h_out[j] = nn + z * (h_prev[j] - nn);                                           \
        }                                                                                   \
    }

/* Backward pass of one row (numbered as in the NumPy oracle):
 * (1) h = n + z*(h_prev - n): dh_t = dh + dy, dn_pre = dh_t*(1 - z)*(1 - n^2),
 *     dz_pre = dh_t*(h_prev - n)*z*(1 - z);
 * (2) n = tanh(G_n + r*hn): dr_pre = dn_pre*hn*r*(1 - r), and the recurrent n part
 *     receives dn_pre*r;
 * (3) dh becomes dh_t*z, the direct path to step t-1: the caller's recurrent product
 *     accumulates d_hidden @ w_hh into it.
 * Writes the gradients of the recurrent pre-activations A (d_hidden: dr, dz, dn_pre*r) and
 * of the input-side ones G (d_input: dr, dz, dn_pre). */
#define LSTMCPU_GRU_BACKWARD(SUFFIX, T)                                                     \
    LSTMCPU_DISPATCH                                                                        \
    static void gru_cell_backward_##SUFFIX(int H, const T *restrict gates,                  \
                                           const T *restrict hn, const T *restrict h_prev,  \
                                           const T *restrict dy, T *restrict dh,            \
                                           T *restrict d_hidden, T *restrict d_input)       \
    {                                                                                       \
        const ptrdiff_t n = H;                                                              \
        const T *restrict gr = gates, *restrict gz = gates + n;                             \
        const T *restrict gn = gates + 2 * n;                                               \
        T *restrict hr = d_hidden, *restrict hz = d_hidden + n;                             \
        T *restrict hnn = d_hidden + 2 * n;                                                 \
        T *restrict ir = d_input, *restrict iz = d_input + n, *restrict in = d_input + 2 * n; \
        for (ptrdiff_t j = 0; j < n; j++) {                                                 \
            T r = gr[j], z = gz[j], nn = gn[j];                                             \
            T dh_t = dh[j] + dy[j];                                                         \
            T dn_pre = dh_t * (1 - z) * (1 - nn * nn);                                      \
            T dz_pre = dh_t * (h_prev[j] - nn) * (z * (1 - z));                             \
            T dr_pre = dn_pre * hn[j] * (r * (1 - r));                                      \
            hr[j] = dr_pre;                                                                 \
            hz[j] = dz_pre;                                                                 \
            hnn[j] = dn_pre * r;                                                            \
            ir[j] = dr_pre;                                                                 \
            iz[j] = dz_pre;                                                                 \
            in[j] = dn_pre;                                                                 \
            dh[j] = dh_t * z;                                                               \
        }                                                                                   \
    }

LSTMCPU_GRU_FORWARD(f32, float, lstmcpu_sigmoid_f32, lstmcpu_tanh_f32)
LSTMCPU_GRU_FORWARD(f64, double, lstmcpu_sigmoid_f64, tanh)
LSTMCPU_GRU_BACKWARD(f32, float)
LSTMCPU_GRU_BACKWARD(f64, double)

#endif
