"""Compiled activations shared by every cell: ``exp``, sigmoid and tanh from arithmetic alone,
so that the loops calling them vectorise, the same operations emitted on LLVM vectors for the
IR kernels (:class:`VectorActivations`), and the options every kernel compiles with."""

import functools
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# The numpy error model drops the ZeroDivisionError check of each division, a branch that
# would keep LLVM from vectorising the elementwise loops. The one fast-math liberty,
# "contract", lets LLVM fuse a multiply and an add into one FMA (one rounding instead of two,
# as GCC does in the Cython kernels); NaN, infinities and the order of operations stay
# strict. Measured: the small-batch LSTM forward 5-10% faster (T=42, B=32, H=32, float32).
# The kernels release the GIL, so several Python threads can run them at once.
JIT = dict(cache=True, error_model="numpy", nogil=True, fastmath={"contract"})


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
        0.5,  # 5: one half, to round
    ]  # fmt: skip
    # 6-: Taylor coefficients (-1)**m / m! of exp(-r) - 1, highest degree first. For
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
    ``p = exp(-r) - 1`` is a Taylor polynomial, and ``2**-n`` is built directly in the
    float's exponent field (:func:`pow2_neg`). Keeping ``p`` apart gives ``1 - exp(-y)``
    without cancellation for small ``y``.
    """
    one = k[0]
    y = min(y, k[1])
    # round(y / ln2) as y >= 0, kept in the dtype: an int32 times a float32 would be a float64
    # in Numba, and so would the whole polynomial (measured: the float32 gate pass 2x slower).
    nf = np.floor(y * k[2] + k[5])
    n = np.int32(nf)
    r = (y - nf * k[3]) - nf * k[4]
    p = k[6]
    for m in range(7, len(k)):  # Horner; the tuple's length is fixed, LLVM unrolls it
        p = p * r + k[m]
    p = p * r
    s = pow2_neg(n, one)
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
    a = abs(v)
    z, one_minus_z = exp_neg(a + a, k)  # not 2 * a: an integer times a float32 is a float64
    t = one_minus_z / (k[0] + z)
    return t if v >= 0 else -t


class VectorActivations:
    """:func:`exp_neg`, :func:`sigmoid` and :func:`tanh` on LLVM vectors, for the kernels
    written as IR: the same operations in the same order, each multiply-add that LLVM fuses
    in the scalar functions a fused multiply-add here, so both give the same results.

    ``vectors`` is the :class:`~._vectors.VectorBuilder` of the kernel's dtype.
    """

    def __init__(self, vectors):
        self.v = v = vectors
        dtype = np.float32 if v.itemsize == 4 else np.float64
        self.k = [v.splat(float(value)) for value in constants(dtype)]
        int_type = ir.IntType(8 * v.itemsize)
        self._int_vector = ir.VectorType(int_type, v.lanes)
        self._bias = v.splat(ir.Constant(int_type, 127 if v.itemsize == 4 else 1023))
        self._mantissa = v.splat(ir.Constant(int_type, 23 if v.itemsize == 4 else 52))

    def exp_neg(self, y):
        """``(exp(-y), 1 - exp(-y))`` for ``y >= 0`` (see :func:`exp_neg`)."""
        builder, v, k = self.v.builder, self.v, self.k
        y = builder.select(builder.fcmp_ordered("<", k[1], y), k[1], y)  # min(y, 80), NaN kept
        nf = v.floor(v.fma(y, k[2], k[5]))
        negative = builder.fneg(nf)
        r = v.fma(negative, k[4], v.fma(negative, k[3], y))
        p = k[6]
        for coefficient in k[7:]:
            p = v.fma(p, r, coefficient)
        p = builder.fmul(p, r)
        # 2**-n: exponent field bias - n, zero mantissa (see _pow2_neg_bits)
        n = builder.fptosi(nf, self._int_vector)
        s = builder.bitcast(builder.shl(builder.sub(self._bias, n), self._mantissa), v.vector)
        return v.fma(s, p, s), v.fma(builder.fneg(s), p, builder.fsub(k[0], s))

    def sigmoid(self, x):
        builder = self.v.builder
        z, _ = self.exp_neg(self.v.fabs(x))
        s = builder.fdiv(self.k[0], builder.fadd(self.k[0], z))
        return builder.select(builder.fcmp_ordered(">=", x, self.v.zero), s, builder.fmul(z, s))

    def tanh(self, x):
        builder = self.v.builder
        a = self.v.fabs(x)
        z, one_minus_z = self.exp_neg(builder.fadd(a, a))
        t = builder.fdiv(one_minus_z, builder.fadd(self.k[0], z))
        return builder.select(builder.fcmp_ordered(">=", x, self.v.zero), t, builder.fneg(t))


def pow2_neg(n, one):
    """``2**-n`` in the dtype of ``one`` (1), for integers ``0 <= n <= 126``.

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code uses
    :func:`_pow2_neg_bits` instead, three integer instructions that vectorise (measured: the
    LSTM gate pass 22% faster than with a product of powers picked by the bits of ``n``).
    """
    return one / (one + one) ** n


@overload(pow2_neg)
def _pow2_neg_compiled(n, one):
    return lambda n, one: _pow2_neg_bits(n, one)


@intrinsic
def _pow2_neg_bits(typingctx, n, one):
    """``2**-n`` written straight into the bits of a float: exponent field ``bias - n``, zero
    mantissa (a normal number for ``n`` up to 126 in float32, 1022 in float64). ``n`` is an
    int32."""
    if n != types.int32 or one not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        n = args[0]
        width, mantissa, bias = (32, 23, 127) if signature.return_type == types.float32 else (64, 52, 1023)
        int_type = ir.IntType(width)
        if width == 64:
            n = builder.sext(n, int_type)
        exponent = builder.shl(builder.sub(ir.Constant(int_type, bias), n), ir.Constant(int_type, mantissa))
        return builder.bitcast(exponent, context.get_value_type(signature.return_type))

    return one(n, one), codegen
