"""Argument checks of the Numba backend's entries: every shape and dtype the compiled loops
rely on, so that a mismatch is a clear error and never an out-of-bounds access."""

import numpy as np
from numba import njit

from ._activations import JIT

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_input(x):
    """``x`` as a C-contiguous float32/float64 array of shape (T, B, I) with T, B >= 1."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I), got {x.shape}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x needs at least one step and one sequence, got shape {x.shape}")
    return np.ascontiguousarray(x)


def hidden_size(w_hh, n_gates, width=None):
    """``H`` read from ``w_hh``, which must have shape ``(n_gates * H, width)``; ``width`` is
    ``H`` when None (no projection), else the projection size ``P``."""
    w_hh = np.asarray(w_hh)
    if w_hh.ndim == 2 and w_hh.shape[0] >= n_gates and w_hh.shape[0] % n_gates == 0:
        H = w_hh.shape[0] // n_gates
        if w_hh.shape[1] == (H if width is None else width):
            return H
    rows = f"{n_gates}H" if n_gates > 1 else "H"
    raise ValueError(f"w_hh must have shape ({rows}, {'H' if width is None else 'P'}), got {w_hh.shape}")


def check_arrays(dtype, expected):
    """``expected`` maps each argument's name to ``(array, shape)``; returns the arrays
    C-contiguous, after checking each has that shape and ``dtype``."""
    arrays = []
    for name, (a, shape) in expected.items():
        a = np.asarray(a)
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
        if a.dtype != dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but x has {dtype}; they must match")
        arrays.append(np.ascontiguousarray(a))
    return arrays


def projection_size(w_hr):
    """``P`` of a projection matrix ``w_hr`` (P, H)."""
    w_hr = np.asarray(w_hr)
    if w_hr.ndim != 2 or w_hr.shape[0] < 1:
        raise ValueError(f"w_hr must have shape (P, H) with P >= 1, got {w_hr.shape}")
    return w_hr.shape[0]


def check_lengths(lengths, T, B):
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


@njit(**JIT)
def all_finite(values):
    """Whether every value of the 1-D float array ``values`` is finite, in one compiled pass
    that vectorises (no early exit). Measured (float32, 1 thread, timeit best of 7): the
    small preset's ``x`` (51k values) 4-5 us against 12 for NumPy's ``isfinite(x).all()``,
    the medium preset's (819k) 130-160 us against 256."""
    bad = False
    for i in range(values.shape[0]):
        bad |= not np.isfinite(values[i])
    return not bad


@njit(**JIT)
def length_totals(lens):
    """``(total steps, longest length)`` of the lengths ``check_lengths`` returned, compiled:
    NumPy's ``sum`` and ``max`` took 9.2 us within a 1-thread small forward (stamps around
    each), 4.3 timed alone, against 0.5 for this."""
    total, longest = 0, 0
    for length in lens:
        total += length
        longest = max(longest, length)
    return total, longest


def check_grad(a, shape, dtype, name):
    """An upstream gradient: exactly ``shape`` and the forward pass's ``dtype``."""
    a = np.asarray(a)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but the forward pass ran in {dtype}")
    return np.ascontiguousarray(a)
