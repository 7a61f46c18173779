/* Times the Cython backend's C kernels alone, float32, one thread: the figures quoted in
 * the comments of the headers in backends/cython and in docs/benchmarks.md come from it.
 *
 *   gcc -O3 -fno-trapping-math -Ibackends/cython benchmarks/kernel_microbench.c \
 *       -o /tmp/kernel_microbench -lm
 *   /tmp/kernel_microbench panel ROWS K B     # G (B, ROWS) += h (B, K) @ W.T, W (ROWS, K)
 *   /tmp/kernel_microbench fused H            # one single-sequence forward step, w_hh packed
 *   /tmp/kernel_microbench fused-inplace H    # the same, w_hh read in place
 *   /tmp/kernel_microbench strips H           # one single-sequence backward product,
 *   /tmp/kernel_microbench strips-inplace H   #   w_hh.T packed / w_hh read in place
 *   /tmp/kernel_microbench peak               # 16 independent chains of 512-bit FMAs
 *
 * Each prints the median and the best of 41 timed rounds (the machine is shared: compare
 * kernels by running them in turn, several times). The panel kernel reports GFLOP/s, the
 * single-sequence kernels microseconds per step and the GB/s of w_hh they stream. `peak`
 * needs an AVX-512 CPU; it bounds what any kernel can reach on one core.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lstm_step.h"

enum { ROUNDS = 41 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* 64-byte aligned, as lstmcpu's buffers are (lstmcpu/_buffers.py). */
static float *aligned(size_t n)
{
    return aligned_alloc(64, (n * sizeof(float) + 127) / 64 * 64);
}

static float *filled(size_t n, float scale)
{
    float *a = aligned(n);
    for (size_t i = 0; i < n; i++)
        a[i] = scale * (float)((i * 7919) % 1000 - 500);
    return a;
}

/* Median and best seconds per repetition of `body` over ROUNDS rounds of `reps`. */
#define TIME_ROUNDS(reps, median, best, body)                                               \
    do {                                                                                    \
        double t_[ROUNDS];                                                                  \
        for (int r_ = 0; r_ < ROUNDS; r_++) {                                               \
            const double t0_ = now();                                                       \
            for (int i_ = 0; i_ < (reps); i_++) {                                           \
                body;                                                                       \
            }                                                                               \
            t_[r_] = (now() - t0_) / (reps);                                                \
        }                                                                                   \
        qsort(t_, ROUNDS, sizeof t_[0], by_value);                                          \
        (median) = t_[ROUNDS / 2];                                                          \
        (best) = t_[0];                                                                     \
    } while (0)

static void panel(int rows, int K, int B)
{
    float *w = filled((size_t)rows * K, 1e-4f), *h = filled((size_t)B * K, 1e-3f);
    float *G = filled((size_t)B * rows, 0.f), *P = aligned(lstm_panel_size_f32(rows, K));
    lstm_pack_panels_f32(rows, K, w, P);
    const double flops = 2.0 * B * rows * K;
    const int reps = flops > 1e8 ? 1 : (int)(1e8 / flops) + 1;
    double median, best;
    TIME_ROUNDS(reps, median, best, lstm_panel_product_f32(rows, K, 0, B, P, h, G, rows, 1));
    printf("panel rows=%d K=%d B=%d: median %.1f GFLOP/s, best %.1f\n", rows, K, B,
           flops / median / 1e9, flops / best / 1e9);
}

static void fused(int H, int packed)
{
    float *w = filled((size_t)4 * H * H, 1e-4f), *bias = filled(4 * (size_t)H, 0.f);
    float *gates = filled(4 * (size_t)H, 0.f), *c = filled(2 * (size_t)H, 0.f);
    float *h = filled(2 * (size_t)H, 0.f), *tanh_c = filled(H, 0.f);
    float *P = aligned(lstm_fused_size_f32(H));
    const int wide = LSTMCPU_HAS_AVX512();
    lstm_fused_pack_f32(H, w, wide, P);
    int t = 0;
    double median, best;
    TIME_ROUNDS(100, median, best, {
        const int s = t++ & 1;
        lstm_fused_units_f32(H, 0, H, packed ? P : NULL, wide, w, h + s * H, gates, bias,
                             c + s * H, c + (1 - s) * H, tanh_c, h + (1 - s) * H, s);
    });
    printf("fused%s H=%d: median %.2f us/step (%.1f GB/s of w_hh), best %.2f\n",
           packed ? "" : "-inplace", H, median * 1e6, 16.0 * H * H / median / 1e9, best * 1e6);
}

static void strips(int H, int packed)
{
    float *w = filled((size_t)4 * H * H, 1e-4f), *dg = filled(4 * (size_t)H, 1e-3f);
    float *dh = filled(H, 0.f), *P = aligned(lstm_panel_size_f32(H, 4 * H));
    lstm_pack_panels_t_f32(H, 4 * H, w, P);
    int t = 0;
    double median, best;
    TIME_ROUNDS(100, median, best,
                recurrent_backward_columns_f32(1, H, 4 * H, w, packed ? P : NULL, dg, 4 * H, dh,
                                               0, H, t++ & 1));
    printf("strips%s H=%d: median %.2f us/step (%.1f GB/s of w_hh), best %.2f\n",
           packed ? "" : "-inplace", H, median * 1e6, 16.0 * H * H / median / 1e9, best * 1e6);
}

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx512f"))) static void peak(void)
{
    typedef float v16 __attribute__((vector_size(64)));
    v16 a[16];
    const v16 m = (v16){0} + 0.999999f, c = (v16){0} + 1e-7f;
    for (int i = 0; i < 16; i++)
        a[i] = (v16){0} + (float)i;
    const long n = 20000000;
    double median, best;
    TIME_ROUNDS(1, median, best, {
        for (long k = 0; k < n; k++)
            for (int i = 0; i < 16; i++)
                a[i] = a[i] * m + c;
    });
    float sum = 0;
    for (int i = 0; i < 16; i++)
        sum += a[i][0];
    printf("peak: median %.1f GFLOP/s, best %.1f (checksum %g)\n", n * 16 * 32.0 / median / 1e9,
           n * 16 * 32.0 / best / 1e9, sum);
}
#else
static void peak(void) { printf("peak: x86-64 with GCC only\n"); }
#endif

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "panel") && argc == 5)
        panel(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    else if (!strcmp(what, "fused") && argc == 3)
        fused(atoi(argv[2]), 1);
    else if (!strcmp(what, "fused-inplace") && argc == 3)
        fused(atoi(argv[2]), 0);
    else if (!strcmp(what, "strips") && argc == 3)
        strips(atoi(argv[2]), 1);
    else if (!strcmp(what, "strips-inplace") && argc == 3)
        strips(atoi(argv[2]), 0);
    else if (!strcmp(what, "peak"))
        peak();
    else {
        fprintf(stderr, "usage: %s panel ROWS K B | fused[-inplace] H | strips[-inplace] H | peak\n",
                argv[0]);
        return 2;
    }
    return 0;
}
