/* The compiled parts of the LSTM time loops: the input projection of a chunk of steps and
 * one forward step (recurrent product and gate pass), on one or two threads (team.h); one
 * backward step for a batch (gate pass and dh += dG @ w_hh).
 *
 * No BLAS call runs inside the loops: a batch of one takes the fused kernel of
 * lstm_fused.h on w_hh (packed for it once per call when the sequence is long enough);
 * larger batches and the input projection take the panel kernel of lstm_panel.h on copies
 * of w_hh (w_hh.T backward) and w_ih packed once per call. Two threads split a step's
 * units (batch 1) or its sequences (rows, in whole blocks of the panel kernel), and the
 * rows of a projection; every output is computed as on one thread, so results do not
 * depend on the number of threads. Backward, a single
 * sequence takes the kernels of recurrent.h, its units split the same way.
 */
#ifndef LSTMCPU_LSTM_STEP_H
#define LSTMCPU_LSTM_STEP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lstm_cell.h"
#include "lstm_fused.h"
#include "lstm_panel.h"
#include "recurrent.h"
#include "team.h"

/* What a step or a projection needs (float or double arrays, row-major). */
typedef struct {
    int f64, B, H, n_in; /* (not I: complex.h defines it) */
    const void *w_hh;         /* batch 1: w_hh (4H, H); else its panels */
    const void *w_hh_fused;   /* batch 1: w_hh packed by lstm_fused_pack(..., wide, ...) */
    int wide;                 /* LSTMCPU_HAS_AVX512() when the call began */
    const void *w_ih_panels;  /* w_ih (4H, I) in panels */
    const void *bias;         /* (4H,) */
    const int64_t *lengths;   /* (B,), or NULL when every sequence runs to the end */
    /* the projection: gates[:rows] = x[:rows] @ w_ih.T, rows = steps * B */
    const void *x;
    int rows;
    /* the step t: gates (B, 4H) += h_prev (B, H) @ w_hh.T, then the gate pass */
    int t;
    const void *h_prev, *c_prev;
    void *gates, *c_out, *tanh_c, *h_out;
} lstm_forward_args;

/* What a backward step needs. `dgates` is the step's rows of the cached gates: it holds
 * their activations and receives their pre-activation gradients (in place: the forward
 * cache is spent by the backward pass). A batch of at least 2: rows [part] of the gate
 * pass, then dh += dgates @ w_hh (w_hh.T packed in panels). A single sequence:
 * dh += dgates_next @ w_hh for the units [part] of dh (dgates_next = the gradients of step
 * t + 1, or NULL at the last step), then the gate pass of the same units at step t (unless
 * `cell` is 0: the product of step 0's gradients that ends the loop). Each thread's gate
 * pass reads only the dh its own product wrote, so one hand-off per step suffices. */
typedef struct {
    int f64, B, H, t, cell;
    const void *w_hh_t_panels; /* w_hh.T (H, 4H) in panels (a single sequence: or NULL) */
    const void *w_hh;          /* single sequence: w_hh (4H, H) as it is */
    const int64_t *lengths;
    const void *c_prev, *tanh_c, *dy; /* the step's rows: (B, H) each */
    const void *dgates_next;          /* single sequence: (4H,) or NULL */
    void *dh, *dc, *dgates;           /* (B, H), (B, H), (B, 4H) */
} lstm_backward_args;

/* A single sequence's backward reads w_hh.T's panels as column strips of w_hh. */
_Static_assert(LSTMCPU_STRIP(float) == 2 * sizeof(lstmcpu_vf16) / sizeof(float) &&
                   LSTMCPU_STRIP(double) == 2 * sizeof(lstmcpu_vd8) / sizeof(double),
               "a panel of lstm_panel.h must be one strip of recurrent.h wide");

/* The part of n items (in blocks of `align`) that part `part` of `parts` takes. */
static void lstm_split(int n, int align, int part, int parts, int *first, int *last)
{
    const int half = align * ((n / align + 1) / 2);
    *first = parts == 1 || part == 0 ? 0 : half;
    *last = parts == 1 || part == 1 ? n : half;
}

#define LSTMCPU_STEP_PARTS(SUFFIX, T)                                                        \
    static void lstm_project_##SUFFIX(const lstm_forward_args *a, int part, int parts)     \
    {                                                                                      \
        int r0, r1;                                                                        \
        lstm_split(a->rows, LSTMCPU_PANEL_BLOCK, part, parts, &r0, &r1);                   \
        lstm_panel_product_##SUFFIX(4 * a->H, a->n_in, r0, r1, a->w_ih_panels, a->x,        \
                                    a->gates, 4 * a->H, 0);                                \
    }                                                                                      \
                                                                                           \
    static void lstm_step_##SUFFIX(const lstm_forward_args *a, int part, int parts)        \
    {                                                                                      \
        const int H = a->H;                                                                \
        const T *bias = a->bias, *h_prev = a->h_prev, *c_prev = a->c_prev;                 \
        T *gates = a->gates, *c_out = a->c_out, *tanh_c = a->tanh_c, *h_out = a->h_out;   \
        int first, last;                                                                   \
        if (a->B == 1) {                                                                   \
            lstm_split(H, sizeof(lstmcpu_vf) / sizeof(T), part, parts, &first, &last);    \
            lstm_fused_units_##SUFFIX(H, first, last, a->w_hh_fused, a->wide, a->w_hh,     \
                                      h_prev, gates, bias, c_prev, c_out, tanh_c, h_out,   \
                                      a->t & 1);                                           \
            return;                                                                        \
        }                                                                                  \
        lstm_split(a->B, LSTMCPU_PANEL_BLOCK, part, parts, &first, &last);                 \
        lstm_panel_product_##SUFFIX(4 * H, H, first, last, a->w_hh, h_prev, gates, 4 * H, \
                                    1);                                                    \
        for (ptrdiff_t r = first; r < last; r++) {                                         \
            if (a->lengths != NULL && a->t >= a->lengths[r])                               \
                continue; /* past this sequence's end: the caller keeps its state */       \
            lstm_cell_forward_##SUFFIX(H, gates + r * 4 * H, bias, c_prev + r * H,         \
                                       c_out + r * H, tanh_c + r * H, h_out + r * H);      \
        }                                                                                  \
    }

#define LSTMCPU_BACKWARD_PARTS(SUFFIX, T)                                                    \
    static void lstm_backward_step_##SUFFIX(const lstm_backward_args *a, int part, int parts) \
    {                                                                                      \
        const ptrdiff_t H = a->H, G = 4 * H;                                               \
        const T *c_prev = a->c_prev, *tanh_c = a->tanh_c, *dy = a->dy;                     \
        T *dh = a->dh, *dc = a->dc, *dgates = a->dgates;                                   \
        int first, last;                                                                   \
        lstm_split(a->B, LSTMCPU_PANEL_BLOCK, part, parts, &first, &last);                 \
        for (ptrdiff_t r = first; r < last; r++) {                                         \
            if (a->lengths != NULL && a->t >= a->lengths[r]) {                             \
                /* padding: no gradient reaches the gates; dh and dc pass through */       \
                memset(dgates + r * G, 0, G * sizeof(T));                                  \
                continue;                                                                  \
            }                                                                              \
            lstm_cell_backward_##SUFFIX(H, 0, H, dgates + r * G, c_prev + r * H,           \
                                        tanh_c + r * H, dy + r * H, dh + r * H, dc + r * H); \
        }                                                                                  \
        /* the cell pass zeroed dh on the rows it used; padded rows keep theirs */         \
        lstm_panel_product_##SUFFIX(H, G, first, last, a->w_hh_t_panels, dgates, dh, H, 1); \
    }

#define LSTMCPU_BACKWARD_SINGLE_PARTS(SUFFIX, T)                                             \
    static void lstm_backward_single_##SUFFIX(const lstm_backward_args *a, int part,       \
                                              int parts)                                   \
    {                                                                                      \
        const int H = a->H;                                                                \
        T *dh = a->dh, *dgates = a->dgates;                                                \
        int u0, u1;                                                                        \
        lstm_split(H, LSTMCPU_STRIP(T), part, parts, &u0, &u1);                            \
        if (a->dgates_next != NULL)                                                        \
            recurrent_backward_columns_##SUFFIX(1, H, 4 * H, a->w_hh, a->w_hh_t_panels,    \
                                                a->dgates_next, 4 * H, dh, u0, u1,         \
                                                (a->t + 1) & 1);                           \
        if (!a->cell)                                                                      \
            return;                                                                        \
        if (a->lengths != NULL && a->t >= a->lengths[0]) {                                 \
            /* padding: no gradient reaches the gates; dh and dc pass through */           \
            for (int g = 0; g < 4; g++)                                                    \
                memset(dgates + g * H + u0, 0, (u1 - u0) * sizeof(T));                     \
            return;                                                                        \
        }                                                                                  \
        lstm_cell_backward_##SUFFIX(H, u0, u1, dgates, a->c_prev, a->tanh_c, a->dy, dh,    \
                                    a->dc);                                                \
    }

LSTMCPU_STEP_PARTS(f32, float)
LSTMCPU_STEP_PARTS(f64, double)

LSTMCPU_BACKWARD_PARTS(f32, float)
LSTMCPU_BACKWARD_PARTS(f64, double)

LSTMCPU_BACKWARD_SINGLE_PARTS(f32, float)
LSTMCPU_BACKWARD_SINGLE_PARTS(f64, double)

/* The step functions (team.h's signature): the projection and the steps, either dtype. */
static void lstm_project_run(void *arg, int part, int parts)
{
    const lstm_forward_args *a = arg;
    if (a->f64)
        lstm_project_f64(a, part, parts);
    else
        lstm_project_f32(a, part, parts);
}

static void lstm_step_run(void *arg, int part, int parts)
{
    const lstm_forward_args *a = arg;
    if (a->f64)
        lstm_step_f64(a, part, parts);
    else
        lstm_step_f32(a, part, parts);
}

static void lstm_backward_step_run(void *arg, int part, int parts)
{
    const lstm_backward_args *a = arg;
    if (a->B == 1) {
        if (a->f64)
            lstm_backward_single_f64(a, part, parts);
        else
            lstm_backward_single_f32(a, part, parts);
    } else if (a->f64) {
        lstm_backward_step_f64(a, part, parts);
    } else {
        lstm_backward_step_f32(a, part, parts);
    }
}

/* Run the projection (or, with project = 0, the step) described by the team's arguments. */
static void lstm_forward_team_run(lstmcpu_team *team, int project)
{
    team->run = project ? lstm_project_run : lstm_step_run;
    lstmcpu_team_step(team);
}

#endif
