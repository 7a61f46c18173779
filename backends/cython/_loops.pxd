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
    cdef int G = n_gates, j
    cdef size_t row, n_rows = <size_t> T * B
    cdef const floating* d
    # NumPy: dw_ih = d_input.reshape(T * B, G).T @ x.reshape(T * B, I)
    gemm(True, False, G, I, T * B, 1, d_input, G, x, I, 0, dw_ih, I)
    # NumPy: dw_hh = d_hidden[0].T @ h0
    gemm(True, False, G, K, B, 1, d_hidden, G, h0, K, 0, dw_hh, K)
    if T > 1:
        # NumPy: dw_hh += d_hidden[1:].reshape(-1, G).T @ h_all[:-1].reshape(-1, K)
        gemm(True, False, G, K, (T - 1) * B, 1, d_hidden + <size_t> B * G, G, h_all, K,
             1, dw_hh, K)
    # NumPy: dx = (d_input.reshape(T * B, G) @ w_ih).reshape(T, B, I)
    gemm(False, False, T * B, I, G, 1, d_input, G, w_ih, I, 0, dx, I)
    # NumPy: db = d_input.sum(axis=(0, 1))
    memset(db, 0, G * sizeof(floating))
    for row in range(n_rows):
        d = d_input + row * G
        for j in range(G):
            db[j] += d[j]
