# The pieces every cell's kernels share, for float and double (inline: compiled into each
# kernel module that cimports them): the input projection, the per-step recurrent products
# and the gradients computed after the backward loop.
#
# Per step a cell adds a recurrent product h @ W.T to its pre-activations (forward) and
# backpropagates dG @ W to the state (backward). Batches of at most SMALL_BATCH sequences
# take the hand-written kernels of recurrent.h, which stream W once per step for the whole
# batch (a BLAS call costs more than its arithmetic there); larger batches take BLAS GEMM.

from cython cimport floating

from libc.string cimport memset

from _blas cimport gemm

cdef extern from "recurrent.h" nogil:
    int SMALL_BATCH "LSTMCPU_SMALL_BATCH"
    void recurrent_forward_f32(int nb, int K, int rows, const float* w, const float* h,
                               float* G, int ldg, int reverse)
    void recurrent_forward_f64(int nb, int K, int rows, const double* w, const double* h,
                               double* G, int ldg, int reverse)
    void recurrent_backward_f32(int nb, int K, int rows, const float* w, const float* dG,
                                int ldg, float* dh, int reverse)
    void recurrent_backward_f64(int nb, int K, int rows, const double* w, const double* dG,
                                int ldg, double* dh, int reverse)


cdef inline void project_input(int t, int T, int B, int I, int n_gates, int chunk,
                               const floating* x, const floating* w_ih,
                               floating* gates) noexcept nogil:
    """Fill ``gates`` (chunk, B, n_gates) with the input projection of steps t, t+1, ...

    ``x`` is (T, B, I) and ``w_ih`` (n_gates, I); at most ``chunk`` steps, fewer at the end.
    """
    cdef int m = min(chunk, T - t)
    # NumPy: gates[:m] = (x[t:t + m].reshape(m * B, I) @ w_ih.T).reshape(m, B, n_gates)
    gemm(False, True, m * B, n_gates, I, 1, x + <size_t> t * B * I, I, w_ih, I,
         0, gates, n_gates)


cdef inline void add_recurrent(int t, int B, int K, int rows, const floating* w,
                               const floating* h, floating* G, int ldg) noexcept nogil:
    """G (B, rows; row stride ldg) += h (B, K) @ w.T, with w of shape (rows, K).

    ``t`` is the step: the small-batch kernels alternate their walk over ``w`` with it.
    """
    if B <= SMALL_BATCH:
        if floating is float:
            recurrent_forward_f32(B, K, rows, w, h, G, ldg, t & 1)
        else:
            recurrent_forward_f64(B, K, rows, w, h, G, ldg, t & 1)
    else:
        # NumPy: G += h @ w.T
        gemm(False, True, B, rows, K, 1, h, K, w, K, 1, G, ldg)


cdef inline void backprop_recurrent(int t, int B, int K, int rows, const floating* w,
                                    const floating* dG, int ldg,
                                    floating* dh) noexcept nogil:
    """dh (B, K) += dG (B, rows; row stride ldg) @ w, with w of shape (rows, K)."""
    if B <= SMALL_BATCH:
        if floating is float:
            recurrent_backward_f32(B, K, rows, w, dG, ldg, dh, t & 1)
        else:
            recurrent_backward_f64(B, K, rows, w, dG, ldg, dh, t & 1)
    else:
        # NumPy: dh += dG @ w
        gemm(False, False, B, K, rows, 1, dG, ldg, w, K, 1, dh, K)


cdef inline void weight_gradients(int T, int B, int I, int K, int n_gates,
                                  const floating* d_input, const floating* d_hidden,
                                  const floating* x, const floating* w_ih,
                                  const floating* h0, const floating* h_all,
                                  floating* dx, floating* dw_ih, floating* dw_hh,
                                  floating* db) noexcept nogil:
    """The gradients of a whole sequence from its pre-activation gradients, one GEMM each.

    ``d_input`` (T, B, n_gates) are the gradients of the input-side pre-activations
    ``x @ w_ih.T + b``, ``d_hidden`` those of the recurrent ones ``h_prev @ w_hh.T`` (the
    same buffer for every cell but the GRU). ``h_all`` (T, B, K) holds the states: row b of
    ``h_all[t - 1]`` is ``h_{t-1}`` wherever ``d_hidden[t, b]`` is non-zero (a sequence
    active at t was active at t - 1). Writes dx (T, B, I), dw_ih (n_gates, I),
    dw_hh (n_gates, K) and db (n_gates,).
    """
    weight_gradients_part(0, 1, T, B, I, K, n_gates, d_input, d_hidden, x, w_ih, h0, h_all,
                          dx, dw_ih, dw_hh, db)


cdef inline void weight_gradients_part(int part, int parts, int T, int B, int I, int K,
                                       int n_gates, const floating* d_input,
                                       const floating* d_hidden, const floating* x,
                                       const floating* w_ih, const floating* h0,
                                       const floating* h_all, floating* dx,
                                       floating* dw_ih, floating* dw_hh,
                                       floating* db) noexcept nogil:
    """Part ``part`` of ``parts`` (1 or 2) of :func:`weight_gradients`: the rows
    [g0, g1) of dw_ih, dw_hh and db, and the rows [r0, r1) of dx, halves of each when
    ``parts`` is 2. The parts write disjoint rows and may run at once (each GEMM on one
    BLAS thread)."""
    cdef int G = n_gates, j
    cdef int g0 = 0 if part == 0 else G // 2, g1 = G if part == parts - 1 else G // 2
    cdef size_t row, n_rows = <size_t> T * B
    cdef size_t r0 = 0 if part == 0 else n_rows // 2
    cdef size_t r1 = n_rows if part == parts - 1 else n_rows // 2
    cdef const floating* d
    # NumPy: dw_ih[g0:g1] = d_input.reshape(T * B, G)[:, g0:g1].T @ x.reshape(T * B, I)
    gemm(True, False, g1 - g0, I, T * B, 1, d_input + g0, G, x, I, 0, dw_ih + <size_t> g0 * I, I)
    # NumPy: dw_hh[g0:g1] = d_hidden[0, :, g0:g1].T @ h0
    gemm(True, False, g1 - g0, K, B, 1, d_hidden + g0, G, h0, K, 0, dw_hh + <size_t> g0 * K, K)
    if T > 1:
        # NumPy: dw_hh[g0:g1] += d_hidden[1:].reshape(-1, G)[:, g0:g1].T
        #                        @ h_all[:-1].reshape(-1, K)
        gemm(True, False, g1 - g0, K, (T - 1) * B, 1, d_hidden + <size_t> B * G + g0, G,
             h_all, K, 1, dw_hh + <size_t> g0 * K, K)
    # NumPy: dx.reshape(T * B, I)[r0:r1] = d_input.reshape(T * B, G)[r0:r1] @ w_ih
    gemm(False, False, <int> (r1 - r0), I, G, 1, d_input + r0 * G, G, w_ih, I, 0,
         dx + r0 * I, I)
    # NumPy: db[g0:g1] = d_input[..., g0:g1].sum(axis=(0, 1))
    memset(db + g0, 0, (g1 - g0) * sizeof(floating))
    for row in range(n_rows):
        d = d_input + row * G
        for j in range(g0, g1):
            db[j] += d[j]


ctypedef struct gradient_args:
    # weight_gradients' arguments for a thread team (team.h): pointers to float or double.
    int f64, T, B, n_in, K, n_gates  # (not I: complex.h defines it)
    const void* d_input
    const void* d_hidden
    const void* x
    const void* w_ih
    const void* h0
    const void* h_all
    void* dx
    void* dw_ih
    void* dw_hh
    void* db


cdef inline void gradients_run(void* arg, int part, int parts) noexcept nogil:
    """team.h's step function for :func:`weight_gradients_part` on ``gradient_args``."""
    cdef gradient_args* a = <gradient_args*> arg
    if a.f64:
        weight_gradients_part(part, parts, a.T, a.B, a.n_in, a.K, a.n_gates,
                              <const double*> a.d_input, <const double*> a.d_hidden,
                              <const double*> a.x, <const double*> a.w_ih,
                              <const double*> a.h0, <const double*> a.h_all, <double*> a.dx,
                              <double*> a.dw_ih, <double*> a.dw_hh, <double*> a.db)
    else:
        weight_gradients_part(part, parts, a.T, a.B, a.n_in, a.K, a.n_gates,
                              <const float*> a.d_input, <const float*> a.d_hidden,
                              <const float*> a.x, <const float*> a.w_ih,
                              <const float*> a.h0, <const float*> a.h_all, <float*> a.dx,
                              <float*> a.dw_ih, <float*> a.dw_hh, <float*> a.db)
