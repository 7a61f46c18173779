/* The activation functions every cell kernel uses, and the build-portability macros.
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
#ifndef LSTMCPU_ACTIVATIONS_H
#define LSTMCPU_ACTIVATIONS_H

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
/* Unaligned vectors of float and double the kernels compute with: 256 bits, and 512 bits
 * (two 256-bit or four 128-bit halves below AVX-512). */
typedef float lstmcpu_vf __attribute__((vector_size(32), aligned(4)));
typedef double lstmcpu_vd __attribute__((vector_size(32), aligned(8)));
typedef float lstmcpu_vf16 __attribute__((vector_size(64), aligned(4)));
typedef double lstmcpu_vd8 __attribute__((vector_size(64), aligned(8)));

/* Whether the running CPU has AVX-512 (the x86-64-v4 clones run): kernels whose best
 * blocking differs choose by it at run time, since 512-bit code in the AVX2 clone spills
 * its accumulators (two registers each). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)
#define LSTMCPU_CPU_HAS_AVX512() __builtin_cpu_supports("avx512f")
#elif defined(__AVX512F__)
#define LSTMCPU_CPU_HAS_AVX512() 1
#else
#define LSTMCPU_CPU_HAS_AVX512() 0
#endif
/* Set to run the AVX2 blockings on an AVX-512 CPU (tests: the blockings a CPU without
 * AVX-512 takes); per extension module. */
static int lstmcpu_narrow_blocking __attribute__((unused)) = 0;
#define LSTMCPU_HAS_AVX512() (!lstmcpu_narrow_blocking && LSTMCPU_CPU_HAS_AVX512())

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

#endif
