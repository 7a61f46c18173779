"""Compiled activations shared by every cell: ``exp``, sigmoid and tanh from arithmetic alone,
so that the loops calling them vectorise, and the options every kernel compiles with."""

import functools
import math

import numpy as np
from numba import njit

# The numpy error model drops the ZeroDivisionError check of each division, a branch that
# would keep LLVM from vectorising the elementwise loops. The kernels release the GIL, so
# several Python threads can run them at once.
JIT = dict(cache=True, error_model="numpy", nogil=True)


@functools.lru_cache(maxsize=None)
def constants(dtype):
    """Constants of :func:`exp_neg` as a tuple of ``dtype`` scalars, so that float32 kernels
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


@njit(**JIT)
def exp_neg(y, k):
    """``(exp(-y), 1 - exp(-y))`` for ``y >= 0``, both to about one ulp, from arithmetic
    alone so that loops calling it vectorise (libm's scalar ``expf``/``tanhf`` cost 10-20x more
    here). Arguments above 80 are taken as 80. ``k`` is :func:`constants` of the dtype.

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


@njit(**JIT)
def sigmoid(v, k):
    """Logistic function, finite for every input: ``exp`` only sees ``-|v|``."""
    z, _ = exp_neg(abs(v), k)
    s = k[0] / (k[0] + z)
    return s if v >= 0 else z * s


@njit(**JIT)
def tanh(v, k):
    """``tanh(v) = sign(v) (1 - exp(-2|v|)) / (1 + exp(-2|v|))``, finite for every input."""
    z, one_minus_z = exp_neg(2 * abs(v), k)
    t = one_minus_z / (k[0] + z)
    return t if v >= 0 else -t


