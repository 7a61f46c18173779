/* The fused elementwise passes of one step of the LSTM variants for one sequence (one row
 * of the batch): peephole connections, coupled input-forget gate, and the output before a
 * projection. The plain LSTM's passes (lstm_cell.h) stay free of these branches.
 * The activations and the dispatch macros are those of activations.h.
 */
#ifndef LSTMCPU_LSTM_VARIANT_CELL_H
#define LSTMCPU_LSTM_VARIANT_CELL_H

#include <stddef.h>

#include "activations.h"

/* The variants' forward pass of one row: peephole weights p (3H values, rows i, f, o; all
 * zeros for no peepholes), coupled gates (i = 1 - f; `gates` then holds f, g, o), and the
 * output m = o*tanh(c) written to m_out (the caller projects it, or it is h):
 *   i = sigmoid(G_i + b_i + p_i*c_prev), f = sigmoid(G_f + b_f + p_f*c_prev), g = tanh(...)
 *   c = f*c_prev + i*g, o = sigmoid(G_o + b_o + p_o*c), m = o*tanh(c). */
#define LSTMCPU_VARIANT_FORWARD(NAME, T, SIGMOID, TANH, coupled)                             \
    LSTMCPU_DISPATCH                                                                        \
    static void NAME(int H, T *restrict gates,                                              \
                                              const T *restrict bias,                       \
                                              const T *restrict peephole,                   \
                                              const T *restrict c_prev, T *restrict c_out,  \
                                              T *restrict tanh_c, T *restrict m_out)        \
    {                                                                                       \
        const ptrdiff_t n = H, k = coupled ? 0 : n; /* offset of f: i comes first */        \
        T *restrict gi = gates, *restrict gf = gates + k;                                   \
        T *restrict gg = gates + k + n, *restrict go = gates + k + 2 * n;                   \
        const T *restrict bi = bias, *restrict bf = bias + k;                               \
        const T *restrict bg = bias + k + n, *restrict bo = bias + k + 2 * n;               \
        const T *restrict pi = peephole, *restrict pf = peephole + n;                       \
        const T *restrict po = peephole + 2 * n;                                            \
        for (ptrdiff_t j = 0; j < n; j++) {                                                 \
            T f = SIGMOID(gf[j] + bf[j] + pf[j] * c_prev[j]);                               \
            T i = coupled ? 1 - f : SIGMOID(gi[j] + bi[j] + pi[j] * c_prev[j]);             \
            T g = TANH(gg[j] + bg[j]);                                                      \
            T c = f * c_prev[j] + i * g;                                                    \
            T o = SIGMOID(go[j] + bo[j] + po[j] * c);                                       \
            T tc = TANH(c);                                                                 \
            if (!coupled)                                                                   \
                gi[j] = i;                                                                  \
            gf[j] = f;                                                                      \
            gg[j] = g;                                                                      \
            go[j] = o;                                                                      \
            c_out[j] = c;                                                                   \
            tanh_c[j] = tc;                                                                 \
            m_out[j] = o * tc;                                                              \
        }                                                                                   \
    }

/* The variants' backward pass of one row, from dm, the gradient of m = o*tanh(c) at this
 * step (dh + dy, through the projection if there is one):
 * (1) do = dm*tanh(c)*o*(1 - o); dc_t = dc + dm*o*(1 - tanh(c)^2) + do*p_o;
 * (2) c = f*c_prev + i*g: df = dc_t*c_prev (coupled: dc_t*(c_prev - g)) * f*(1 - f),
 *     di = dc_t*g*i*(1 - i), dg = dc_t*i*(1 - g^2);
 * (3) dc becomes dc_t*f + df*p_f + di*p_i for step t-1. */
#define LSTMCPU_VARIANT_BACKWARD(NAME, T, coupled)                                          \
    LSTMCPU_DISPATCH                                                                        \
    static void NAME(int H, const T *restrict gates,                                        \
                                               const T *restrict peephole,                  \
                                               const T *restrict c_prev,                    \
                                               const T *restrict tanh_c,                    \
                                               const T *restrict dm, T *restrict dc,        \
                                               T *restrict dgates)                          \
    {                                                                                       \
        const ptrdiff_t n = H, k = coupled ? 0 : n;                                         \
        const T *restrict gi = gates, *restrict gf = gates + k;                             \
        const T *restrict gg = gates + k + n, *restrict go = gates + k + 2 * n;             \
        T *restrict di = dgates, *restrict df = dgates + k;                                 \
        T *restrict dg = dgates + k + n, *restrict dout = dgates + k + 2 * n;               \
        const T *restrict pi = peephole, *restrict pf = peephole + n;                       \
        const T *restrict po = peephole + 2 * n;                                            \
        for (ptrdiff_t j = 0; j < n; j++) {                                                 \
            T f = gf[j], g = gg[j], o = go[j], tc = tanh_c[j];                              \
            T i = coupled ? 1 - f : gi[j];                                                  \
            T d_o = dm[j] * tc * (o * (1 - o));                                             \
            T dc_t = dc[j] + dm[j] * o * (1 - tc * tc) + d_o * po[j];                       \
            T d_f = dc_t * (coupled ? c_prev[j] - g : c_prev[j]) * (f * (1 - f));           \
            T d_i = coupled ? 0 : dc_t * g * (i * (1 - i));                                 \
            if (!coupled)                                                                   \
                di[j] = d_i;                                                                \
            df[j] = d_f;                                                                    \
            dg[j] = dc_t * i * (1 - g * g);                                                 \
            dout[j] = d_o;                                                                  \
            dc[j] = dc_t * f + d_f * pf[j] + d_i * pi[j];                                   \
        }                                                                                   \
    }

/* `coupled` is a constant in each compiled pass, so the loops carry no branch and vectorise. */
LSTMCPU_VARIANT_FORWARD(lstm_peephole_forward_f32, float, lstmcpu_sigmoid_f32, lstmcpu_tanh_f32, 0)
LSTMCPU_VARIANT_FORWARD(lstm_peephole_forward_f64, double, lstmcpu_sigmoid_f64, tanh, 0)
LSTMCPU_VARIANT_FORWARD(lstm_coupled_forward_f32, float, lstmcpu_sigmoid_f32, lstmcpu_tanh_f32, 1)
LSTMCPU_VARIANT_FORWARD(lstm_coupled_forward_f64, double, lstmcpu_sigmoid_f64, tanh, 1)
LSTMCPU_VARIANT_BACKWARD(lstm_peephole_backward_f32, float, 0)
LSTMCPU_VARIANT_BACKWARD(lstm_peephole_backward_f64, double, 0)
LSTMCPU_VARIANT_BACKWARD(lstm_coupled_backward_f32, float, 1)
LSTMCPU_VARIANT_BACKWARD(lstm_coupled_backward_f64, double, 1)

#endif
