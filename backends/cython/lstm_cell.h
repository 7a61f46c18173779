/* The fused elementwise passes of one LSTM step for one sequence (one row of the batch).
 *
 * Forward: gate activations, c = f*c_prev + i*g, tanh(c), h = o*tanh(c) in one pass.
 * Backward: the gate pre-activation gradients (over the activations) and the carried cell
 * gradient in one pass.
 * The activations and the dispatch macros are those of activations.h.
 */
#ifndef LSTMCPU_LSTM_CELL_H
#define LSTMCPU_LSTM_CELL_H

#include <stddef.h>

#include "activations.h"

/* The forward update of n units whose four gates sit at gi, gf, gg, go (pre-activations
 * without the bias in, activations out) with biases bi, bf, bg, bo; writes c, tanh(c) and
 * h. Inlined into every kernel that ends in the gate pass (this file, lstm_fused.h). */
#define LSTMCPU_CELL_UNITS(SUFFIX, T, SIGMOID, TANH)                                       \
    LSTMCPU_INLINE void lstm_cell_units_##SUFFIX(                                           \
        ptrdiff_t n, T *restrict gi, T *restrict gf, T *restrict gg, T *restrict go,        \
        const T *restrict bi, const T *restrict bf, const T *restrict bg,                   \
        const T *restrict bo, const T *restrict c_prev, T *restrict c_out,                  \
        T *restrict tanh_c, T *restrict h_out)                                              \
    {                                                                                       \
        for (ptrdiff_t j = 0; j < n; j++) {                                                 \
            T i = SIGMOID(gi[j] + bi[j]);                                                   \
            T f = SIGMOID(gf[j] + bf[j]);                                                   \
            T g = TANH(gg[j] + bg[j]);                                                      \
            T o = SIGMOID(go[j] + bo[j]);                                                   \
            T c = f * c_prev[j] + i * g;                                                    \
            T tc = TANH(c);                                                                 \
            gi[j] = i;                                                                      \
            gf[j] = f;                                                                      \
            gg[j] = g;                                                                      \
            go[j] = o;                                                                      \
            c_out[j] = c;                                                                   \
            tanh_c[j] = tc;                                                                 \
            h_out[j] = o * tc;                                                              \
        }                                                                                   \
    }

/* Forward pass of one row. `gates` holds the pre-activations without the bias (4H values
 * in the order i, f, g, o) and receives the activations; writes c, tanh(c) and h.
 * (Indices are ptrdiff_t and each gate has its own pointer: with Python's -fwrapv, int
 * offsets such as 2*H + j may wrap, which would keep GCC from vectorising the loop.) */
#define LSTMCPU_CELL_FORWARD(SUFFIX, T)                                                     \
    LSTMCPU_DISPATCH                                                                        \
    static void lstm_cell_forward_##SUFFIX(int H, T *restrict gates, const T *restrict bias, \
                                           const T *restrict c_prev, T *restrict c_out,     \
                                           T *restrict tanh_c, T *restrict h_out)           \
    {                                                                                       \
        const ptrdiff_t n = H;                                                              \
        lstm_cell_units_##SUFFIX(n, gates, gates + n, gates + 2 * n, gates + 3 * n, bias,   \
                                 bias + n, bias + 2 * n, bias + 3 * n, c_prev, c_out,       \
                                 tanh_c, h_out);                                            \
    }

/* Backward pass of units [u0, u1) of one row (numbered as in the NumPy oracle), in place:
 * `gates` holds the gate activations and receives the pre-activation gradients (each unit's
 * four values are read before any is written).
 * (1) h = o*tanh(c): dh_t = dh + dy, dc_t = dc + dh_t*o*(1 - tanh(c)^2);
 * (2) c = f*c_prev + i*g, then each gate's activation derivative;
 * (3) dc becomes dc_t*f for step t-1, and dh is zeroed: the caller's recurrent product
 *     accumulates dh_{t-1} = dgates @ w_hh into it.
 * Two threads may take a range of units each. */
#define LSTMCPU_CELL_BACKWARD(SUFFIX, T)                                                    \
    LSTMCPU_DISPATCH                                                                        \
    static void lstm_cell_backward_##SUFFIX(int H, int u0, int u1, T *restrict gates,       \
                                            const T *restrict c_prev,                       \
                                            const T *restrict tanh_c, const T *restrict dy, \
                                            T *restrict dh, T *restrict dc)                 \
    {                                                                                       \
        const ptrdiff_t n = H;                                                              \
        T *restrict gi = gates, *restrict gf = gates + n;                                   \
        T *restrict gg = gates + 2 * n, *restrict go = gates + 3 * n;                       \
        for (ptrdiff_t j = u0; j < u1; j++) {                                               \
            T i = gi[j], f = gf[j], g = gg[j], o = go[j], tc = tanh_c[j];                   \
            T dh_t = dh[j] + dy[j];                                                         \
            T dc_t = dc[j] + dh_t * o * (1 - tc * tc);                                      \
            gi[j] = dc_t * g * (i * (1 - i));                                               \
            gf[j] = dc_t * c_prev[j] * (f * (1 - f));                                       \
            gg[j] = dc_t * i * (1 - g * g);                                                 \
            go[j] = dh_t * tc * (o * (1 - o));                                              \
            dc[j] = dc_t * f;                                                               \
            dh[j] = 0;                                                                      \
        }                                                                                   \
    }

LSTMCPU_CELL_UNITS(f32, float, lstmcpu_sigmoid_f32, lstmcpu_tanh_f32)
LSTMCPU_CELL_UNITS(f64, double, lstmcpu_sigmoid_f64, tanh)
LSTMCPU_CELL_FORWARD(f32, float)
LSTMCPU_CELL_FORWARD(f64, double)
LSTMCPU_CELL_BACKWARD(f32, float)
LSTMCPU_CELL_BACKWARD(f64, double)

#endif
