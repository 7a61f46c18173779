/* One LSTM step for a single sequence (batch 1): the recurrent product and the gate pass
 * fused in one kernel.
 *
 * At batch 1 a step is a (4H, H) matrix-vector product, bound by streaming w_hh through
 * the caches: 1 MiB for H = 256 in float32, as large as Zen 4's whole L2, so it comes from
 * L3 at about 110 GB/s, 9.4 us per step. The kernel takes the units in blocks of L (the
 * lanes of a 256-bit vector: 8 floats, 4 doubles). For each gate it computes the L dot
 * products w_hh[g*H + u] . h_prev of the block's units, one vector accumulator per row
 * (lane l sums the products k = l, l + L, ..., in order), then folds the L accumulators
 * into one vector of L row sums with log2(L) shuffle-and-add stages: w_hh is read in place,
 * row after row, with no packing and no scalar horizontal sums. The block's gate pass
 * follows at once, on values still in registers. `reverse` walks the blocks backwards
 * (the caller alternates it between steps, so each step starts on the rows the previous
 * one read last).
 *
 * Two threads (lstmcpu_team below) split a step's units: each runs the same kernel on its
 * own blocks, so every unit is computed exactly as with one thread.
 */
#ifndef LSTMCPU_LSTM_FUSED_H
#define LSTMCPU_LSTM_FUSED_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "activations.h"
#include "lstm_cell.h"
#include "recurrent.h"

typedef int lstmcpu_vi8 __attribute__((vector_size(32)));
typedef long long lstmcpu_vl4 __attribute__((vector_size(32)));

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

#define LSTMCPU_FUSED_STEP(SUFFIX, T, V)                                                     \
    /* out[j] = w[j] . h (rows w[j] of length K), j < L. (Vectors pass by pointer: the   \
     * baseline clone has no 256-bit registers to pass them in.) */                       \
    LSTMCPU_INLINE void lstmcpu_dots_##SUFFIX(ptrdiff_t K, const T *restrict w,            \
                                             const T *restrict h, V *out)                  \
    {                                                                                      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        V acc[L];                                                                          \
        for (int j = 0; j < L; j++)                                                        \
            acc[j] = (V){0};                                                               \
        ptrdiff_t k = 0;                                                                   \
        for (; k + L <= K; k += L) {                                                       \
            const V hv = *(const V *)(h + k);                                              \
            for (int j = 0; j < L; j++)                                                    \
                acc[j] += *(const V *)(w + j * K + k) * hv;                                \
        }                                                                                  \
        lstmcpu_row_sums_##SUFFIX(acc, out);                                               \
        for (; k < K; k++)                                                                 \
            for (int j = 0; j < L; j++)                                                    \
                (*out)[j] += w[j * K + k] * h[k];                                          \
    }                                                                                      \
                                                                                           \
    /* One step for the units [first, last) (first a multiple of L; last one too, or H):   \
     * gates (4H) holds the input projection of the step and receives the activations;     \
     * w (4H, H) is w_hh, h_prev (H) the previous state; writes c_out, tanh_c and h_out (H). \
     */                                                                                    \
    LSTMCPU_DISPATCH                                                                       \
    static void lstm_fused_units_##SUFFIX(int H, int first, int last, const T *restrict w, \
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
                lstmcpu_dots_##SUFFIX(K, w + (g * K + u0) * K, h_prev, &v);                \
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

LSTMCPU_FUSED_STEP(f32, float, lstmcpu_vf)
LSTMCPU_FUSED_STEP(f64, double, lstmcpu_vd)

/* The second thread of a two-thread step loop. The calling thread fills in a step's
 * arguments and publishes the step's number in `start`; the worker runs the units
 * [split, H) while the caller runs [0, split), and publishes the number in `done`. */
typedef struct {
    pthread_t thread;
    atomic_int start, done;     /* steps published and finished; start < 0 stops the worker */
    atomic_int start_sleepers;  /* threads asleep (or about to sleep) on start, on done */
    atomic_int done_sleepers;
    int f64, H, split, reverse;
    const void *w, *h_prev, *bias, *c_prev;
    void *gates, *c_out, *tanh_c, *h_out;
} lstmcpu_team;

/* Wait until *x == want (or *x < 0). Spin first: a step takes microseconds. Then sleep
 * (a futex on Linux, else yield the core), so that a thread whose partner was descheduled
 * on a busy machine does not hold a core. */
static void lstmcpu_wait_for(atomic_int *x, atomic_int *sleepers, int want)
{
    for (int spins = 0;; spins++) {
        int v = atomic_load_explicit(x, memory_order_acquire);
        if (v == want || v < 0)
            return;
        if (spins < 2000) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            continue;
        }
#if defined(__linux__)
        atomic_fetch_add(sleepers, 1); /* seq_cst: ordered before the re-read below */
        v = atomic_load(x);
        if (v != want && v >= 0)
            syscall(SYS_futex, (int *)x, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
        atomic_fetch_sub(sleepers, 1);
#else
        (void)sleepers;
        sched_yield();
#endif
    }
}

/* Store v into *x and wake the threads sleeping on it. */
static void lstmcpu_publish(atomic_int *x, atomic_int *sleepers, int v)
{
    atomic_store(x, v); /* seq_cst: ordered before the read of sleepers */
#if defined(__linux__)
    if (atomic_load(sleepers) > 0)
        syscall(SYS_futex, (int *)x, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
#else
    (void)sleepers;
#endif
}

static void lstmcpu_team_run(lstmcpu_team *t)
{
    if (t->f64)
        lstm_fused_units_f64(t->H, t->split, t->H, t->w, t->h_prev, t->gates, t->bias,
                             t->c_prev, t->c_out, t->tanh_c, t->h_out, t->reverse);
    else
        lstm_fused_units_f32(t->H, t->split, t->H, t->w, t->h_prev, t->gates, t->bias,
                             t->c_prev, t->c_out, t->tanh_c, t->h_out, t->reverse);
}

static void *lstmcpu_team_worker(void *arg)
{
    lstmcpu_team *t = arg;
    for (int step = 1;; step++) {
        lstmcpu_wait_for(&t->start, &t->start_sleepers, step);
        if (atomic_load_explicit(&t->start, memory_order_acquire) < 0)
            return NULL;
        lstmcpu_team_run(t);
        lstmcpu_publish(&t->done, &t->done_sleepers, step);
    }
}

/* Start the worker for steps of H units of the given dtype; 0 on success (else run the
 * steps on one thread: lstmcpu_team_stop and the steps accept a team that did not start). */
static int lstmcpu_team_start(lstmcpu_team *t, int H, int f64)
{
    const int L = f64 ? (int)(sizeof(lstmcpu_vd) / sizeof(double))
                      : (int)(sizeof(lstmcpu_vf) / sizeof(float));
    t->H = H;
    t->f64 = f64;
    t->split = L * ((H / L + 1) / 2);
    atomic_init(&t->start, 0);
    atomic_init(&t->done, 0);
    atomic_init(&t->start_sleepers, 0);
    atomic_init(&t->done_sleepers, 0);
    if (t->split == 0 || t->split >= H ||
        pthread_create(&t->thread, NULL, lstmcpu_team_worker, t) != 0) {
        t->split = H; /* no worker: the caller runs every unit */
        return -1;
    }
    return 0;
}

static void lstmcpu_team_stop(lstmcpu_team *t)
{
    if (t->split == t->H)
        return;
    lstmcpu_publish(&t->start, &t->start_sleepers, -1);
    pthread_join(t->thread, NULL);
}

#define LSTMCPU_TEAM_STEP(SUFFIX, T)                                                        \
    /* One step of all H units; with a team (else NULL) on two threads. */                 \
    static void lstm_fused_step_##SUFFIX(lstmcpu_team *team, int H, const T *w,             \
                                         const T *h_prev, T *gates, const T *bias,          \
                                         const T *c_prev, T *c_out, T *tanh_c, T *h_out,    \
                                         int reverse)                                       \
    {                                                                                       \
        if (team == NULL || team->split == H) {                                             \
            lstm_fused_units_##SUFFIX(H, 0, H, w, h_prev, gates, bias, c_prev, c_out,       \
                                      tanh_c, h_out, reverse);                              \
            return;                                                                         \
        }                                                                                   \
        team->w = w, team->h_prev = h_prev, team->gates = gates, team->bias = bias;         \
        team->c_prev = c_prev, team->c_out = c_out, team->tanh_c = tanh_c;                  \
        team->h_out = h_out, team->reverse = reverse;                                       \
        const int step = atomic_load_explicit(&team->start, memory_order_relaxed) + 1;      \
        lstmcpu_publish(&team->start, &team->start_sleepers, step);                         \
        lstm_fused_units_##SUFFIX(H, 0, team->split, w, h_prev, gates, bias, c_prev, c_out, \
                                  tanh_c, h_out, reverse);                                  \
        lstmcpu_wait_for(&team->done, &team->done_sleepers, step);                          \
    }

LSTMCPU_TEAM_STEP(f32, float)
LSTMCPU_TEAM_STEP(f64, double)

#endif
