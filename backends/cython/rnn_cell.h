/* The fused elementwise passes of one Elman RNN step for one sequence (one row):
 * h = act(a) with a = x @ w_ih.T + b + h_prev @ w_hh.T, act tanh or relu.
 * The activations and the dispatch macros are those of activations.h.
 */
#ifndef LSTMCPU_RNN_CELL_H
#define LSTMCPU_RNN_CELL_H

#include <stddef.h>

#include "activations.h"

LSTMCPU_INLINE float lstmcpu_relu_f32(float a) { return a > 0 ? a : 0; }
LSTMCPU_INLINE double lstmcpu_relu_f64(double a) { return a > 0 ? a : 0; }

/* Forward pass of one row: `act` holds the pre-activation without the bias (H values)
 * and receives h, which is also written to h_out. */
#define LSTMCPU_RNN_FORWARD(NAME, T, ACT)                                                    \
    LSTMCPU_DISPATCH                                                                        \
    static void NAME(int H, T *restrict act, const T *restrict bias, T *restrict h_out)     \
    {                                                                                       \
        const ptrdiff_t n = H;                                                              \
        for (ptrdiff_t j = 0; j < n; j++) {                                                 \
            T h = ACT(act[j] + bias[j]);                                                    \
            act[j] = h;                                                                     \
            h_out[j] = h;                                                                   \
        }                                                                                   \
    }

/* Backward pass of one row: da = (dh + dy) * act'(a), written from the activation h
 * (tanh: 1 - h^2; relu: h > 0). dh is zeroed: the caller's recurrent product accumulates
 * dh_{t-1} = da @ w_hh into it. */
#define LSTMCPU_RNN_BACKWARD(NAME, T, DERIVATIVE)                                            \
    LSTMCPU_DISPATCH                                                                        \
    static void NAME(int H, const T *restrict act, const T *restrict dy, T *restrict dh,    \
                     T *restrict dact)                                                      \
    {                                                                                       \
        const ptrdiff_t n = H;                                                              \
        for (ptrdiff_t j = 0; j < n; j++) {                                                 \
            T h = act[j];                                                                   \
            dact[j] = (dh[j] + dy[j]) * (DERIVATIVE);                                       \
            dh[j] = 0;                                                                      \
        }                                                                                   \
    }

LSTMCPU_RNN_FORWARD(rnn_tanh_forward_f32, float, lstmcpu_tanh_f32)
LSTMCPU_RNN_FORWARD(rnn_tanh_forward_f64, double, tanh)
LSTMCPU_RNN_FORWARD(rnn_relu_forward_f32, float, lstmcpu_relu_f32)
LSTMCPU_RNN_FORWARD(rnn_relu_forward_f64, double, lstmcpu_relu_f64)
LSTMCPU_RNN_BACKWARD(rnn_tanh_backward_f32, float, 1 - h * h)
LSTMCPU_RNN_BACKWARD(rnn_tanh_backward_f64, double, 1 - h * h)
LSTMCPU_RNN_BACKWARD(rnn_relu_backward_f32, float, (h > 0 ? (float)1 : (float)0))
LSTMCPU_RNN_BACKWARD(rnn_relu_backward_f64, double, (h > 0 ? 1.0 : 0.0))

#endif
