/* A second thread for a loop of short steps (a time loop): per step, the calling thread
 * publishes the step's number, both threads run their part of the step, and the caller
 * waits for the worker's part before the next step. Parts are what `run(arg, part, parts)`
 * makes of them; with no worker the caller runs the whole step as `run(arg, 0, 1)`.
 *
 * A step takes microseconds, so each side spins briefly for the other; then it sleeps (a
 * futex on Linux, else it yields the core), so that a thread whose partner was descheduled
 * on a busy machine does not hold a core. A step is late when the caller, its own part
 * done, waits for the worker longer than its part took, plus LSTMCPU_TEAM_SLACK: the worker
 * did not merely run a little slower, it lost its core. After a few late steps (more busy
 * threads than cores: each step then costs a trip through the scheduler) the team stops
 * and the remaining steps run on the caller alone. (Counting every wait that went to sleep
 * instead stopped the team of long steps, whose halves differ by more than a spin: the
 * large preset's 2-thread forward ran at 1-thread speed, 694 ms, against 509 ms.)
 */
#ifndef LSTMCPU_TEAM_H
#define LSTMCPU_TEAM_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

typedef void (*lstmcpu_step_fn)(void *arg, int part, int parts);

typedef struct {
    pthread_t thread;
    int started;               /* whether the worker runs */
    int late;                  /* late steps (see above) */
    lstmcpu_step_fn run;
    void *arg;                 /* the step's arguments: written by the caller between steps */
    atomic_int start, done;    /* steps published and finished; start < 0 stops the worker */
    atomic_int start_sleepers; /* threads asleep (or about to sleep) on start, on done */
    atomic_int done_sleepers;
} lstmcpu_team;

/* Pauses (some tens of cycles each) before a wait goes to sleep. */
#define LSTMCPU_SPINS 2000
/* Late steps after which the team stops, and the wait beyond the caller's own part (in
 * seconds) that makes a step late. */
#define LSTMCPU_TEAM_MAX_LATE 4
#define LSTMCPU_TEAM_SLACK 50e-6

static double lstmcpu_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + 1e-9 * now.tv_nsec;
}

/* Wait until *x == want (or *x < 0). */
static void lstmcpu_wait_for(atomic_int *x, atomic_int *sleepers, int want)
{
    for (int spins = 0;; spins++) {
        int v = atomic_load_explicit(x, memory_order_acquire);
        if (v == want || v < 0)
            return;
        if (spins < LSTMCPU_SPINS) {
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

/* Store v into *x and wake a thread sleeping on it. */
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

static void *lstmcpu_team_worker(void *p)
{
    lstmcpu_team *t = p;
    for (int step = 1;; step++) {
        lstmcpu_wait_for(&t->start, &t->start_sleepers, step);
        if (atomic_load_explicit(&t->start, memory_order_acquire) < 0)
            return NULL;
        t->run(t->arg, 1, 2);
        lstmcpu_publish(&t->done, &t->done_sleepers, step);
    }
}

/* Set up the team for steps of `run` on `arg`, with a worker thread if `threads` > 1 and
 * one can be started (else every step runs on the caller). */
static void lstmcpu_team_start(lstmcpu_team *t, lstmcpu_step_fn run, void *arg, int threads)
{
    t->run = run;
    t->arg = arg;
    atomic_init(&t->start, 0);
    atomic_init(&t->done, 0);
    atomic_init(&t->start_sleepers, 0);
    atomic_init(&t->done_sleepers, 0);
    t->late = 0;
    t->started = threads > 1 && pthread_create(&t->thread, NULL, lstmcpu_team_worker, t) == 0;
}

static void lstmcpu_team_stop(lstmcpu_team *t)
{
    if (!t->started)
        return;
    lstmcpu_publish(&t->start, &t->start_sleepers, -1);
    pthread_join(t->thread, NULL);
    t->started = 0;
}

/* One step on the team: the caller runs part 0 and waits for the worker's part 1. */
static void lstmcpu_team_step(lstmcpu_team *t)
{
    if (!t->started) {
        t->run(t->arg, 0, 1);
        return;
    }
    const int step = atomic_load_explicit(&t->start, memory_order_relaxed) + 1;
    const double start = lstmcpu_seconds();
    lstmcpu_publish(&t->start, &t->start_sleepers, step);
    t->run(t->arg, 0, 2);
    const double own_done = lstmcpu_seconds();
    lstmcpu_wait_for(&t->done, &t->done_sleepers, step);
    const double waited = lstmcpu_seconds() - own_done;
    if (waited > own_done - start + LSTMCPU_TEAM_SLACK && ++t->late >= LSTMCPU_TEAM_MAX_LATE)
        lstmcpu_team_stop(t);
}

#endif
