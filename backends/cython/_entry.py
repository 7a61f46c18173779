"""What the Python entries of the Cython kernels share: argument checks and buffer sizes.

Every shape, dtype and contiguity is checked here before any compiled loop runs, so no
call can read or write out of bounds.
"""

import contextlib

import numpy as np

from lstmcpu._blas_threads import ONE_BLAS_THREAD, thread_budget

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# BLAS takes 32-bit sizes: every matrix dimension handed to it must fit.
INT_MAX = 2**31 - 1
# Rows (steps x sequences) of the input projection per GEMM in inference: enough for BLAS
# to run at full speed, few enough that the gate buffer stays small.
INPUT_CHUNK_ROWS = 1024
# The inference time loop runs on two threads (lstm_step.h) when a step is long enough to
# pay for its two hand-offs between cores (about a microsecond), from this many
# multiply-adds per step of the recurrent product (a single sequence with H = 128, w_hh of
# 256 KiB in float32), and when the batch splits: one sequence (its units are split) or at
# least 8 (whole blocks of the panel kernel, 8 sequences on AVX-512 CPUs, are split).
TWO_THREADS_MIN_MACS = 4 * 128 * 128

def step_threads(B, H, need_cache):
    """Threads for the time loops of an LSTM kernel call: 2 when the user's thread limit
    (``threadpool_limits``, ``OPENBLAS_NUM_THREADS``; see
    :func:`lstmcpu._blas_threads.thread_budget`) allows 2 and the steps pay for them (see
    TWO_THREADS_MIN_MACS), else 1. Training (``need_cache``) splits its backward loop and
    gradient GEMMs too; those GEMMs then run on one BLAS thread each
    (:func:`one_blas_thread`), so no OpenBLAS worker spins on the cores the loops use.
    """
    if 4 * B * H * H < TWO_THREADS_MIN_MACS or 1 < B < 8:
        return 1
    return min(2, thread_budget())


def one_blas_thread(threads):
    """BLAS held at one thread while a kernel runs ``threads`` > 1 threads of its own that
    call it; a no-op context otherwise."""
    return ONE_BLAS_THREAD if threads > 1 else contextlib.nullcontext()


def input_chunk(T, B, need_cache):
    """Steps of the input projection buffer: all of them when training keeps them, else a
    chunk that the time loop refills, so inference memory does not grow with T."""
    return T if need_cache else min(T, max(1, INPUT_CHUNK_ROWS // B))


def check_input(x):
    """Check ``x`` is a float32/float64 (T, B, I) array and return its dtype."""
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError(f"x must be a 3-D ndarray (T, B, I), got {getattr(x, 'shape', type(x))}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    return x.dtype


def hidden_size(w_hh, n_gates):
    """``H`` read from ``w_hh``, which must be a 2-D array of shape (n_gates * H, H)."""
    if not isinstance(w_hh, np.ndarray) or w_hh.ndim != 2 or w_hh.shape[0] != n_gates * w_hh.shape[1]:
        rows = "H" if n_gates == 1 else f"{n_gates}H"
        raise ValueError(
            f"w_hh must be a 2-D ndarray of shape ({rows}, H), got {getattr(w_hh, 'shape', type(w_hh))}"
        )
    return w_hh.shape[1]


def check(a, name, shape, dtype):
    """``a`` must be a C-contiguous ndarray of exactly ``shape`` and ``dtype``."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (the dtype of x), got {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")


def check_sizes(T, B, I, H, n_gates):
    """Every size at least 1, and every BLAS dimension within 32 bits."""
    if min(T, B, I, H) < 1:
        raise ValueError(
            f"every size must be at least 1, got T={T}, B={B}, input size I={I}, hidden size H={H}"
        )
    if max(T * B, n_gates * H, I) > INT_MAX:
        raise ValueError(
            f"sizes too large for 32-bit BLAS: T*B={T * B}, {n_gates}H={n_gates * H}, I={I} "
            f"(limit {INT_MAX})"
        )


def check_lengths(lengths, T, B):
    """Return ``lengths`` as a contiguous int64 array, or None when every sequence is full."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be an integer array, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {arr.shape}")
    if arr.min() < 1 or arr.max() > T:
        raise ValueError(f"lengths must lie in [1, {T}], got min {arr.min()} and max {arr.max()}")
    if np.all(arr == T):
        return None
    return np.ascontiguousarray(arr, dtype=np.int64)
