"""The Numba backend: the oracle's algorithm with the whole time loop in compiled code.

Same contract and algorithm as :mod:`lstmcpu.backends.numpy_backend` (the oracle):

Forward
    1. one GEMM for the input projection of all steps, ``G = x @ w_ih.T`` (NumPy);
    2. a compiled time loop: per step the recurrent product ``h @ w_hh.T``, then one fused
       pass that adds ``G[t]`` and the bias, applies the gates and updates ``c`` and ``h``;
    3. the cache keeps the post-activation gates (in ``G``), ``c``, ``tanh(c)`` and ``y``.

Backward
    1. a compiled time loop of elementwise work and one product ``dG[t] @ w_hh`` per step;
    2. after the loop, the weight gradients as single big GEMMs over all steps (NumPy).

Threads. Rows of the batch are independent, so the batch is cut into one chunk per Numba
thread (``numba.set_num_threads``, or ``n_threads``) and each chunk runs the whole time loop
on its own, with its own buffers: no synchronisation per step, never parallel over time. One
chunk runs without any parallel region.

The recurrent product of a chunk takes one of two routes, chosen per call by
:func:`use_blas`:

* **BLAS** (``np.dot`` into a preallocated buffer, which Numba hands to SciPy's BLAS) for
  chunks of more than :data:`SMALL_BATCH` rows. With one Numba thread the BLAS threads obey
  ``threadpoolctl``; with several, BLAS runs on one thread during the call (the chunks are
  the parallelism), so the backend uses ``n_threads`` threads in all.
* **hand loop** for smaller chunks, where a BLAS call costs more than its work. Each row
  is computed by the same instructions whatever the chunking, so the results do not depend
  on the thread count (on the BLAS route they may differ by rounding).

The kernels are plain Python functions compiled with ``njit(cache=True)``: they also run,
slowly, under ``NUMBA_DISABLE_JIT=1`` for debugging and coverage.

Compile time. The first call in a fresh environment compiles what it uses, per dtype: on the
2-core development machine (loaded by other work) 5-12 s for one dtype and route, about 48 s
for both dtypes, both routes and the parallel launchers. With the on-disk cache warm, import
plus a first call take about 1.5 s. Numba keeps the cache next to this file (``__pycache__``)
when the package folder is writable, else in the user's cache folder
(``$XDG_CACHE_HOME/numba``, by default ``~/.cache/numba``); ``NUMBA_CACHE_DIR`` overrides both.
"""

import contextlib
import functools
import math
import threading

import numba
import numpy as np
# Numba's np.dot calls the BLAS that scipy.linalg.cython_blas loads. Numba would load it at
# the first product; loading it with the backend lets threadpoolctl limits entered later
# see it (a library loaded inside ``threadpool_limits`` escapes the limit).
import scipy.linalg.cython_blas  # noqa: F401
from numba import njit, prange
from threadpoolctl import ThreadpoolController

from lstmcpu.backend import Backend

__all__ = ["NumbaBackend", "make_backend", "use_blas"]


class NumbaBackend(Backend):
    """LSTM kernels compiled with Numba (float32 and float64).

    Parameters
    ----------
    n_threads : int or None, default=None
        Threads, one batch chunk each (never more chunks than rows). ``None`` follows
        ``numba.get_num_threads()`` at each call, so ``numba.set_num_threads`` applies. With
        more than one thread BLAS runs on one thread during the call; with one, BLAS uses
        the threads ``threadpoolctl`` allows.

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu.backends.numba_backend import NumbaBackend
    >>> rng = np.random.default_rng(0)
    >>> T, B, I, H = 5, 2, 3, 4
    >>> x = rng.standard_normal((T, B, I))
    >>> w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    >>> b, h0, c0 = np.zeros(4 * H), np.zeros((B, H)), np.zeros((B, H))
    >>> y, h_n, c_n, cache = NumbaBackend().forward(x, w_ih, w_hh, b, h0, c0)
    >>> y.shape, bool(np.allclose(y[-1], h_n))
    ((5, 2, 4), True)
    """

    name = "numba"

    def __init__(self, n_threads=None):
        if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
            raise ValueError(f"n_threads must be None or an integer >= 1, got {n_threads!r}")
        self.n_threads = n_threads

    def _threads(self):
        return numba.get_num_threads() if self.n_threads is None else self.n_threads

    def forward(self, x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True):
        x, w_ih, w_hh, b, h0, c0 = _check_forward_args(x, w_ih, w_hh, b, h0, c0)
        n_threads = self._threads()
        with _blas_limit(n_threads):
            return self._forward(x, w_ih, w_hh, b, h0, c0, lengths, need_cache, min(n_threads, x.shape[1]))

    def _forward(self, x, w_ih, w_hh, b, h0, c0, lengths, need_cache, n_chunks):
        T, B, I = x.shape
        H = w_hh.shape[1]
        lens = _check_kernel_lengths(lengths, T, B)
        # G = x @ w_ih.T: the input projection of every step, one GEMM.
        G = np.matmul(x.reshape(T * B, I), w_ih.T).reshape(T, B, 4 * H)
        y = np.empty((T, B, H), dtype=x.dtype)
        h, c = h0.copy(), c0.copy()
        cached = (T, B, H) if need_cache else (0, 0, 0)
        c_all = np.empty(cached, dtype=x.dtype)
        tanh_c_all = np.empty(cached, dtype=x.dtype)
        k = _constants(x.dtype)
        blas = use_blas(B, n_chunks, backward=False)
        w_hh_t = w_hh if blas else np.ascontiguousarray(w_hh.T)  # the hand loop reads rows of w_hh.T
        args = (blas, G, w_hh, w_hh_t, b, h, c, lens, y, c_all, tanh_c_all, need_cache, k)
        if n_chunks == 1:  # no parallel region at all
            _forward_rows(0, B, *args)
        else:
            _forward_chunks(n_chunks, *args)
        if not need_cache:
            return y, h, c, None
        cache = {
            "x": x, "w_ih": w_ih, "w_hh": w_hh, "h0": h0, "c0": c0, "lengths": lens,
            "gates": G, "c": c_all, "tanh_c": tanh_c_all, "y": y,
        }  # fmt: skip
        return y, h, c, cache

    def backward(self, dy, dh_n, dc_n, cache):
        n_threads = self._threads()
        with _blas_limit(n_threads):
            return self._backward(dy, dh_n, dc_n, cache, min(n_threads, cache["x"].shape[1]))

    def _backward(self, dy, dh_n, dc_n, cache, n_chunks):
        x, w_ih, w_hh = cache["x"], cache["w_ih"], cache["w_hh"]
        T, B, I = x.shape
        H = w_hh.shape[1]
        dy = _check_grad(dy, (T, B, H), x.dtype, "dy")
        dh = _check_grad(dh_n, (B, H), x.dtype, "dh_n").copy()
        dc = _check_grad(dc_n, (B, H), x.dtype, "dc_n").copy()
        h0, c0, y, lens = cache["h0"], cache["c0"], cache["y"], cache["lengths"]
        dG = np.empty((T, B, 4 * H), dtype=x.dtype)
        blas = use_blas(B, n_chunks, backward=True)
        args = (blas, dy, cache["gates"], cache["c"], cache["tanh_c"], c0, w_hh, lens, dh, dc, dG)
        if n_chunks == 1:
            _backward_rows(0, B, *args)
        else:
            _backward_chunks(n_chunks, *args)
        # Weight gradients: single GEMMs over all steps, never accumulated per step.
        dG2 = dG.reshape(T * B, 4 * H)
        # dw_ih = dG2.T @ x2
        dw_ih = np.matmul(dG2.T, x.reshape(T * B, I))
        # dw_hh = dG[0].T @ h0 + dG[1:].T @ y[:-1]   (h_{t-1} is h0, then y[t-1])
        dw_hh = np.matmul(dG[0].T, h0)
        if T > 1:
            dw_hh += np.matmul(dG[1:].reshape((T - 1) * B, 4 * H).T, y[:-1].reshape((T - 1) * B, H))
        db = dG2.sum(axis=0)
        # dx = dG2 @ w_ih
        dx = np.matmul(dG2, w_ih).reshape(T, B, I)
        return dx, dw_ih, dw_hh, db, dh, dc


def make_backend():
    """Factory the registry calls."""
    return NumbaBackend()


@contextlib.contextmanager
def _blas_limit(n_threads):
    """When the backend may use several threads, BLAS runs on one thread for the whole call:
    the batch chunks are the parallelism (a batch of one has none: its per-step products
    are too small for BLAS threads to pay), and BLAS threads left spinning after a threaded
    product would take the cores from the chunks (measured: 1.3 ms became 16-28 ms on 2
    cores). The limit is global state, so such calls take turns (one lock) and each
    restores exactly what it found; nothing changes when BLAS already has one thread."""
    blas = _blas_controller()
    if n_threads == 1 or all(lib.num_threads == 1 for lib in blas.lib_controllers):
        yield
        return
    with _PARALLEL_CALL, blas.limit(limits=1):
        yield


_PARALLEL_CALL = threading.Lock()


@functools.lru_cache(maxsize=None)
def _blas_controller():
    """threadpoolctl's handle on the BLAS libraries, built once (building it scans the loaded
    libraries, a few milliseconds; limiting through it costs about 12 microseconds)."""
    return ThreadpoolController().select(user_api="blas")


# ---------------------------------------------------------------- choosing the product route

# Crossover, measured with interleaved medians on the 2-core AMD Zen 4
# (AVX-512, OpenBLAS 0.3 SkylakeX kernels via SciPy), float32, 1 thread, T=20, whole kernel;
# ratio = hand time / BLAS time, forward (need_cache=False) | forward+backward:
#   H=64:  B=8 0.73|0.93  B=16 0.82|1.05  B=32 0.95|1.04  B=64 1.06|1.02  B=128 1.06|1.03
#   H=256: B=2 0.40|0.58  B=8 0.79|0.77  B=16 1.07|1.00  B=32 1.14|1.03  B=64 1.47|1.21
#   H=512: B=2 0.74|0.51  B=8 1.00|0.72  B=16 1.32|0.93  B=32 1.27|1.06  B=48 1.50|1.39
# (B=2 at H=256: BLAS 104 us/step against 42 by hand: OpenBLAS packs w_hh for every small
# GEMM.) The machine was shared and loaded, so single entries are noisy by +-20%; the
# crossover sits near 16 rows at every H.
#: Largest batch chunk whose recurrent products go through the hand loop rather than BLAS.
SMALL_BATCH = 16


def use_blas(B, n_chunks=1, *, backward):
    """True when the recurrent products of a batch of ``B`` rows, cut into ``n_chunks``
    chunks, should go to BLAS rather than the hand loop.

    Chunks of more than :data:`SMALL_BATCH` rows take BLAS, smaller ones the hand loop,
    except a batch of one in the forward pass: BLAS's matrix-vector product is as fast as the
    hand loop there and needs no transposed copy of ``w_hh``.
    """
    if -(-B // n_chunks) > SMALL_BATCH:
        return True
    return B == 1 and not backward


# ---------------------------------------------------------------- argument checks


def _check_forward_args(x, w_ih, w_hh, b, h0, c0):
    """Shapes and dtypes the compiled loops rely on: a mismatch is a clear error, never an
    out-of-bounds access."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I), got {x.shape}")
    dtype = x.dtype
    if dtype not in NumbaBackend.dtypes:
        raise TypeError(f"x must be float32 or float64, got {dtype}")
    T, B, I = x.shape
    if T < 1 or B < 1:
        raise ValueError(f"x needs at least one step and one sequence, got shape {x.shape}")
    w_hh = np.asarray(w_hh)
    if w_hh.ndim != 2 or w_hh.shape[0] != 4 * w_hh.shape[1] or w_hh.shape[1] < 1:
        raise ValueError(f"w_hh must have shape (4H, H), got {w_hh.shape}")
    H = w_hh.shape[1]
    expected = {"w_ih": (4 * H, I), "w_hh": (4 * H, H), "b": (4 * H,), "h0": (B, H), "c0": (B, H)}
    arrays = []
    for name, a in zip(expected, (w_ih, w_hh, b, h0, c0)):
        a = np.asarray(a)
        if a.shape != expected[name]:
            raise ValueError(f"{name} must have shape {expected[name]}, got {a.shape}")
        if a.dtype != dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but x has {dtype}; they must match")
        arrays.append(np.ascontiguousarray(a))
    return (np.ascontiguousarray(x), *arrays)


def _check_kernel_lengths(lengths, T, B):
    """Lengths as the int64 array the loops read; full length ``T`` when ``None``."""
    if lengths is None:
        return np.full(B, T, dtype=np.int64)
    lens = np.asarray(lengths)
    if lens.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {lens.dtype}")
    if lens.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {lens.shape}")
    if lens.min() < 1 or lens.max() > T:
        raise ValueError(f"lengths must lie in [1, {T}], got min {lens.min()} and max {lens.max()}")
    return np.ascontiguousarray(lens, dtype=np.int64)


def _check_grad(a, shape, dtype, name):
    a = np.asarray(a)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but the forward pass ran in {dtype}")
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------- compiled kernels


# The numpy error model drops the ZeroDivisionError check of each division, a branch that
# would keep LLVM from vectorising the elementwise loops. The serial kernels release the GIL,
# so several Python threads can run them at once; the parallel launchers keep it, so that
# their launches never overlap (Numba's fallback "workqueue" threading layer forbids that).
_JIT = dict(cache=True, error_model="numpy", nogil=True)
_PARALLEL_JIT = dict(cache=True, error_model="numpy", parallel=True)


@functools.lru_cache(maxsize=None)
def _constants(dtype):
    """Constants of :func:`_exp_neg` as a tuple of ``dtype`` scalars, so that float32 kernels
    stay in float32 (a float64 literal would promote every expression it touches)."""
    values = [
        1.0,  # 0: one
        80.0,  # 1: largest argument; exp(-80) = 1.8e-35, tanh(40) = 1 in both dtypes
        1.0 / math.log(2.0),  # 2: log2(e)
        0.693359375,  # 3: ln 2 rounded to 9 bits, so n * ln2_hi is exact
        -2.12194440054690582768e-4,  # 4: ln 2 - ln2_hi, to 21 digits (math.log(2) - ln2_hi loses 13)
        0.5, 0.25, 2.0**-4, 2.0**-8, 2.0**-16, 2.0**-32, 2.0**-64,  # 5-11: 2**-(2**m)
    ]  # fmt: skip
    # 12-: Taylor coefficients (-1)**m / m! of exp(-r) - 1, highest degree first. For
    # |r| <= ln2/2 the truncation error is 5e-9 at degree 7 (float32 ulp 6e-8) and 4e-18 at
    # degree 13 (float64 ulp 1.1e-16).
    degree = 7 if np.dtype(dtype) == np.float32 else 13
    values += [(-1.0) ** m / math.factorial(m) for m in range(degree, 0, -1)]
    return tuple(np.array(values, dtype=dtype))


@njit(**_JIT)
def _exp_neg(y, k):
    """``(exp(-y), 1 - exp(-y))`` for ``y >= 0``, both to about one ulp, from arithmetic
    alone so that loops calling it vectorise (libm's scalar ``expf``/``tanhf`` cost 10-20x more
    here). Arguments above 80 are taken as 80. ``k`` is :func:`_constants` of the dtype.

    ``y = n ln2 + r`` with ``|r| <= ln2 / 2``; ``exp(-y) = 2**-n (1 + p)`` where
    ``p = exp(-r) - 1`` is a Taylor polynomial, and ``2**-n`` is a product of exact powers
    of two picked by the bits of ``n``. Keeping ``p`` apart gives ``1 - exp(-y)`` without
    cancellation for small ``y``.
    """
    one = k[0]
    y = min(y, k[1])
    n = np.int32(y * k[2] + k[5])  # round(y / ln2), as y >= 0
    nf = n * one
    r = (y - nf * k[3]) - nf * k[4]
    p = k[12]
    for m in range(13, len(k)):  # Horner; the tuple's length is fixed, LLVM unrolls it
        p = p * r + k[m]
    p = p * r
    s = (
        (k[5] if n & 1 else one) * (k[6] if n & 2 else one) * (k[7] if n & 4 else one)
        * (k[8] if n & 8 else one) * (k[9] if n & 16 else one) * (k[10] if n & 32 else one)
        * (k[11] if n & 64 else one)
    )  # fmt: skip
    return s + s * p, (one - s) - s * p


@njit(**_JIT)
def _sigmoid(v, k):
    """Logistic function, finite for every input: ``exp`` only sees ``-|v|``."""
    z, _ = _exp_neg(abs(v), k)
    s = k[0] / (k[0] + z)
    return s if v >= 0 else z * s


@njit(**_JIT)
def _tanh(v, k):
    """``tanh(v) = sign(v) (1 - exp(-2|v|)) / (1 + exp(-2|v|))``, finite for every input."""
    z, one_minus_z = _exp_neg(2 * abs(v), k)
    t = one_minus_z / (k[0] + z)
    return t if v >= 0 else -t


@njit(**_JIT)
def _gate_row(gates, h, c, y, c_out, tanh_c_out, store, k):
    """Fused pass over one batch row at one step.

    ``gates`` (4H,) holds the pre-activations ``x W_ih^T + b + h W_hh^T`` and receives the
    activations i, f, g, o (the cache). Updates ``h`` and ``c`` in place, writes ``h`` to
    ``y`` and ``tanh(c)`` to ``tanh_c_out``; when ``store``, also ``c`` to ``c_out``. Each
    loop touches few arrays so that LLVM vectorises it; the arrays must not overlap (or the
    vectorised loops fall back to scalar code).
    """
    H = h.shape[0]
    # Loops start at 0 and add offsets: a loop from 2H would not vectorise, as Numba could
    # not tell that its index is never negative.
    for j in range(2 * H):
        gates[j] = _sigmoid(gates[j], k)  # i, f
    for j in range(H):
        gates[2 * H + j] = _tanh(gates[2 * H + j], k)  # g
    for j in range(H):
        gates[3 * H + j] = _sigmoid(gates[3 * H + j], k)  # o
    for j in range(H):
        c[j] = gates[H + j] * c[j] + gates[j] * gates[2 * H + j]  # c = f c + i g
    for j in range(H):
        tanh_c_out[j] = _tanh(c[j], k)
    for j in range(H):
        h[j] = gates[3 * H + j] * tanh_c_out[j]  # h = o tanh(c)
        y[j] = h[j]
    if store:
        c_out[:] = c


@njit(**_JIT)
def _padding_row(c, y, c_out, tanh_c_out, store):
    """A step past the sequence's length: state kept, output zero."""
    y[:] = 0
    if store:
        c_out[:] = c
        tanh_c_out[:] = 0


@njit(**_JIT)
def _forward_step_rows(t, lo, hi, G, h, c, lens, y, c_all, tanh_c_all, store, scratch, k):
    """The fused gate pass of rows ``lo:hi`` at step ``t`` (``G[t]`` holds the complete
    pre-activations). Without ``store``, ``tanh(c)`` goes to the caller's ``scratch`` row."""
    for b in range(lo, hi):
        if store:
            c_out, tanh_c_out = c_all[t, b], tanh_c_all[t, b]
        else:
            c_out, tanh_c_out = scratch, scratch  # c_out is not written
        if t < lens[b]:
            _gate_row(G[t, b], h[b], c[b], y[t, b], c_out, tanh_c_out, store, k)
        else:
            _padding_row(c[b], y[t, b], c_out, tanh_c_out, store)


@njit(**_JIT)
def _vecmat_add(a, m, out):
    """``out += a @ m`` for one row ``a`` (K,) and a C-contiguous ``m`` (K, N), as axpys over
    the rows of ``m``, four at a time so that each pass over ``out`` does four
    multiply-adds per element."""
    K, N = m.shape
    k = 0
    while k + 4 <= K:
        a0, a1, a2, a3 = a[k], a[k + 1], a[k + 2], a[k + 3]
        for n in range(N):
            out[n] += a0 * m[k, n] + a1 * m[k + 1, n] + a2 * m[k + 2, n] + a3 * m[k + 3, n]
        k += 4
    while k < K:
        for n in range(N):
            out[n] += a[k] * m[k, n]
        k += 1


@njit(**_JIT)
def _rows_matmul_add(A, m, out, lo, hi):
    """``out[lo:hi] += A[lo:hi] @ m`` by hand: rows in pairs, so that each load of ``m``
    (from L2 once it outgrows L1) serves two rows; an odd last row on its own."""
    K, N = m.shape
    b = lo
    while b + 2 <= hi:
        k = 0
        while k + 4 <= K:
            a0, a1, a2, a3 = A[b, k], A[b, k + 1], A[b, k + 2], A[b, k + 3]
            e0, e1, e2, e3 = A[b + 1, k], A[b + 1, k + 1], A[b + 1, k + 2], A[b + 1, k + 3]
            for n in range(N):
                w0, w1, w2, w3 = m[k, n], m[k + 1, n], m[k + 2, n], m[k + 3, n]
                out[b, n] += a0 * w0 + a1 * w1 + a2 * w2 + a3 * w3
                out[b + 1, n] += e0 * w0 + e1 * w1 + e2 * w2 + e3 * w3
            k += 4
        while k < K:
            for n in range(N):
                out[b, n] += A[b, k] * m[k, n]
                out[b + 1, n] += A[b + 1, k] * m[k, n]
            k += 1
        b += 2
    if b < hi:
        _vecmat_add(A[b], m, out[b])


@njit(**_JIT)
def _forward_rows(lo, hi, blas, G, w_hh, w_hh_t, bias, h, c, lens, y, c_all, tanh_c_all, store, k):
    """The whole forward time loop for the batch rows ``lo:hi``.

    The recurrent product goes through BLAS when ``blas``, else through the hand loop, which
    reads ``w_hh_t``, a C-contiguous ``w_hh.T``.
    """
    T, B, G4 = G.shape
    # This thread's own buffers: tanh(c) when not cached, and the BLAS product.
    scratch = np.empty(h.shape[1], dtype=G.dtype)
    R = np.empty((hi - lo if blas else 0, G4), dtype=G.dtype)
    for t in range(T):
        if blas:
            # R = h[lo:hi] @ w_hh.T
            np.dot(h[lo:hi], w_hh.T, R)
            for r in range(hi - lo):
                for j in range(G4):
                    G[t, lo + r, j] += R[r, j] + bias[j]
        else:
            for b in range(lo, hi):
                for j in range(G4):
                    G[t, b, j] += bias[j]
            # G[t, lo:hi] += h[lo:hi] @ w_hh.T (rows past their length too: unused)
            _rows_matmul_add(h, w_hh_t, G[t], lo, hi)
        _forward_step_rows(t, lo, hi, G, h, c, lens, y, c_all, tanh_c_all, store, scratch, k)


@njit(**_PARALLEL_JIT)
def _forward_chunks(n_chunks, blas, G, w_hh, w_hh_t, bias, h, c, lens, y, c_all, tanh_c_all, store, k):
    """:func:`_forward_rows` over ``n_chunks`` batch chunks in parallel (rows are independent)."""
    B = G.shape[1]
    for chunk in prange(n_chunks):
        lo, hi = chunk * B // n_chunks, (chunk + 1) * B // n_chunks
        _forward_rows(lo, hi, blas, G, w_hh, w_hh_t, bias, h, c, lens, y, c_all, tanh_c_all, store, k)


@njit(**_JIT)
def _backward_row(dy, gates, c_prev, tanh_c, dh, dc, dgates):
    """Elementwise backward of one active row at one step: fills ``dgates`` and turns
    ``dc`` into the cell gradient carried to the step before."""
    H = dh.shape[0]
    one = dh.dtype.type(1)
    for j in range(H):
        # (1) h = o * tanh(c): the hidden gradient reaches o and, through tanh, c.
        dh[j] += dy[j]
        dc[j] += dh[j] * gates[3 * H + j] * (one - tanh_c[j] * tanh_c[j])
    for j in range(H):
        i, f, g, o = gates[j], gates[H + j], gates[2 * H + j], gates[3 * H + j]
        # (2) c = f * c_prev + i * g, then through each gate's activation.
        dgates[j] = dc[j] * g * (i * (one - i))
        dgates[H + j] = dc[j] * c_prev[j] * (f * (one - f))
        dgates[2 * H + j] = dc[j] * i * (one - g * g)
        dgates[3 * H + j] = dh[j] * tanh_c[j] * (o * (one - o))
    for j in range(H):
        # (3) the cell gradient carried to step t - 1.
        dc[j] *= gates[H + j]


@njit(**_JIT)
def _backward_rows(lo, hi, blas, dy, gates, c_all, tanh_c_all, c0, w_hh, lens, dh, dc, dG):
    """The whole backward time loop for the batch rows ``lo:hi``; the products ``dG[t] @ w_hh``
    through BLAS when ``blas``, else by hand."""
    T, B, G4 = dG.shape
    dh_prev = np.empty((hi - lo if blas else 0, dh.shape[1]), dtype=dh.dtype)  # this thread's own
    for t in range(T - 1, -1, -1):
        for b in range(lo, hi):
            if t < lens[b]:
                c_prev = c_all[t - 1, b] if t > 0 else c0[b]
                _backward_row(dy[t, b], gates[t, b], c_prev, tanh_c_all[t, b], dh[b], dc[b], dG[t, b])
                dh[b, :] = 0
            else:
                dG[t, b, :] = 0
        # dh[lo:hi] = dG[t, lo:hi] @ w_hh for active rows; a finished row's dG is zero,
        # so adding the product keeps its dh.
        if blas:
            np.dot(dG[t, lo:hi], w_hh, dh_prev)
            dh[lo:hi] += dh_prev
        else:
            _rows_matmul_add(dG[t], w_hh, dh, lo, hi)


@njit(**_PARALLEL_JIT)
def _backward_chunks(n_chunks, blas, dy, gates, c_all, tanh_c_all, c0, w_hh, lens, dh, dc, dG):
    """:func:`_backward_rows` over ``n_chunks`` batch chunks in parallel."""
    B = dG.shape[1]
    for chunk in prange(n_chunks):
        lo, hi = chunk * B // n_chunks, (chunk + 1) * B // n_chunks
        _backward_rows(lo, hi, blas, dy, gates, c_all, tanh_c_all, c0, w_hh, lens, dh, dc, dG)
