/* The fused elementwise passes of one LSTM step for one sequence (one row of the batch).
 *
 * Forward: gate activations, c = f*c_prev + i*g, tanh(c), h = o*tanh(c) in one pass.
 * Backward: the gate pre-activation gradients and the carried cell gradient in one pass.
 *
 * Exact math: sigmoid and tanh are accurate to float rounding and stay finite for any
 * finite input. float64 uses libm. float32 evaluates exp in double precision with a
 * polynomial that the compiler can vectorise (libm's expf/tanhf are scalar calls), then
 * rounds once to float: the result is the correctly rounded value except in rare ties.
 *
 * Portability: with GCC on x86-64 ELF the hot functions are compiled three times
 * (x86-64-v4 = AVX-512, x86-64-v3 = AVX2+FMA, baseline) and the loader picks the best
 * one for the running CPU; elsewhere they are compiled once for the build target.
 */
#ifndef LSTMCPU_LSTM_CELL_H
#define LSTMCPU_LSTM_CELL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)
#define LSTMCPU_DISPATCH \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LSTMCPU_DISPATCH
#endif
/* GCC inlines a function into a clone built for another -march only when forced to. */
#if defined(__GNUC__)
#define LSTMCPU_INLINE static inline __attribute__((always_inline))
#else
#define LSTMCPU_INLINE static inline
#endif

/* e^x = 2^n (1 + p) with x = n ln2 + r, |r| <= ln2/2; returns p = e^r - 1 and sets
 * *scale = 2^n. Valid for |x| < 700. p is the degree-9 Taylor polynomial of expm1 at r,
 * relative error below 3e-11: far under float's rounding (6e-8). Computing p rather than
 * e^r keeps e^x - 1 accurate when x is near zero (tanh of small arguments). */
LSTMCPU_INLINE double lstmcpu_exp_parts(double x, double *scale)
{
    const double shift = 0x1.8p52; /* adding it rounds to an integer kept in the low bits */
    const double log2e = 0x1.71547652b82fep0;
    const double ln2 = 0x1.62e42fefa39efp-1;
    double kd = x * log2e + shift;
    uint64_t bits, sbits;
    memcpy(&bits, &kd, sizeof bits);
    kd -= shift;
    double r = x - kd * ln2;
    /* the low bits of `bits` hold n in two's complement: move them to the exponent field */
    sbits = (bits << 52) + 0x3ff0000000000000ULL;
    memcpy(scale, &sbits, sizeof sbits);
    return r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120
           + r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880)))))))));
}

/* 1 / (1 + e^-x): from t = e^-|x| in (0, 1], so nothing overflows. */
LSTMCPU_INLINE float lstmcpu_sigmoid_f32(float x)
{
    double a = fabs((double)x), scale;
    a = a > 120.0 ? 120.0 : a; /* sigmoid(-120) is below float's smallest subnormal */
    double p = lstmcpu_exp_parts(-a, &scale);
    double t = scale + scale * p;
    double d = 1.0 / (1.0 + t);
    return (float)(x >= 0 ? d : t * d);
}

/* tanh|x| = (e^2|x| - 1) / (e^2|x| + 1), with e^2|x| - 1 formed without cancellation. */
LSTMCPU_INLINE float lstmcpu_tanh_f32(float x)
{
    double a = fabs((double)x), scale;
    a = a > 20.0 ? 20.0 : a; /* tanh(20) is 1 to double precision */
    double p = lstmcpu_exp_parts(2.0 * a, &scale);
    double em1 = scale * p + (scale - 1.0);
    double th = em1 / (em1 + 2.0);
    return (float)(x < 0 ? -th : th);
}

LSTMCPU_INLINE double lstmcpu_sigmoid_f64(double x)
{
    double t = exp(-fabs(x)); /* in [0, 1]: underflows to 0, never overflows */
    double d = 1.0 / (1.0 + t);
    return x >= 0 ? d : t * d;
}

/* Forward pass of one row. `gates` holds the pre-activations without the bias (4H values
 * in the order i, f, g, o) and receives the activations; writes c, tanh(c) and h.
 * (Indices are ptrdiff_t and each gate has its own pointer: with Python's -fwrapv, int
 * offsets such as 2*H + j may wrap, which would keep GCC from vectorising the loop.) */
#define LSTMCPU_CELL_FORWARD(SUFFIX, T, SIGMOID, TANH)                                     \
    LSTMCPU_DISPATCH                                                                        \
    static void lstm_cell_forward_##SUFFIX(int H, T *restrict gates, const T *restrict bias, \
                                           const T *restrict c_prev, T *restrict c_out,     \
                                           T *restrict tanh_c, T *restrict h_out)           \
    {                                                                                       \
        const ptrdiff_t n = H;                                                              \
        T *restrict gi = gates, *restrict gf = gates + n;                                   \
        T *restrict gg = gates + 2 * n, *restrict go = gates + 3 * n;                       \
        const T *restrict bi = bias, *restrict bf = bias + n;                               \
        const T *restrict bg = bias + 2 * n, *restrict bo = bias + 3 * n;                   \
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

/* Backward pass of one row (numbered as in the NumPy oracle):
 * (1) h = o*tanh(c): dh_t = dh + dy, dc_t = dc + dh_t*o*(1 - tanh(c)^2);
 * (2) c = f*c_prev + i*g, then each gate's activation derivative;
 * (3) dc becomes dc_t*f for step t-1, and dh is zeroed: the caller's recurrent GEMM
 *     accumulates dh_{t-1} = dgates @ w_hh into it. */
#define LSTMCPU_CELL_BACKWARD(SUFFIX, T)                                                    \
    LSTMCPU_DISPATCH                                                                        \
    static void lstm_cell_backward_##SUFFIX(int H, const T *restrict gates,                 \
                                            const T *restrict c_prev,                       \
                                            const T *restrict tanh_c, const T *restrict dy, \
                                            T *restrict dh, T *restrict dc,                 \
                                            T *restrict dgates)                             \
    {                                                                                       \
        const ptrdiff_t n = H;                                                              \
        const T *restrict gi = gates, *restrict gf = gates + n;                             \
        const T *restrict gg = gates + 2 * n, *restrict go = gates + 3 * n;                 \
        T *restrict di = dgates, *restrict df = dgates + n;                                 \
        T *restrict dg = dgates + 2 * n, *restrict dout = dgates + 3 * n;                   \
        for (ptrdiff_t j = 0; j < n; j++) {                                                 \
            T i = gi[j], f = gf[j], g = gg[j], o = go[j], tc = tanh_c[j];                   \
            T dh_t = dh[j] + dy[j];                                                         \
            T dc_t = dc[j] + dh_t * o * (1 - tc * tc);                                      \
            di[j] = dc_t * g * (i * (1 - i));                                               \
            df[j] = dc_t * c_prev[j] * (f * (1 - f));                                       \
            dg[j] = dc_t * i * (1 - g * g);                                                 \
            dout[j] = dh_t * tc * (o * (1 - o));                                            \
            dc[j] = dc_t * f;                                                               \
            dh[j] = 0;                                                                      \
        }                                                                                   \
    }

LSTMCPU_CELL_FORWARD(f32, float, lstmcpu_sigmoid_f32, lstmcpu_tanh_f32)
LSTMCPU_CELL_FORWARD(f64, double, lstmcpu_sigmoid_f64, tanh)
LSTMCPU_CELL_BACKWARD(f32, float)
LSTMCPU_CELL_BACKWARD(f64, double)

#endif
