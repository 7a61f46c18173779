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


#: Positions in :func:`constants`.
ONE, TWO, SIGMOID_LIMIT, TANH_LIMIT, LOG2E, ROUNDER, LN2_HI, LN2_LO, POLYNOMIAL = range(9)

# (exp(r) - 1) / r on |r| <= ln2 / 2: 1 + c1 r + ... + c5 r^5 for float32, fitted for the
# least largest relative error by `python benchmarks/fit_exp_polynomial.py` (a linear
# program on 4000 Chebyshev points: 1.3e-8, a tenth of float32's ulp; evaluated in float32,
# exp(r) - 1 is within 1.07 ulp). Taylor's degree-5 polynomial is off by 3e-7 (2.9 ulp), so
# it would need a sixth multiply-add.
_FLOAT32_POLYNOMIAL = (1.0, 0.4999999814945302, 0.1666654342421128, 0.04166720075040592,
                       0.008366547122215285, 0.0013882514350751205)  # fmt: skip


@functools.lru_cache(maxsize=None)
def constants(dtype):
    """Constants of :func:`exp_parts`, :func:`sigmoid` and :func:`tanh` as a tuple of
    ``dtype`` scalars (positions :data:`ONE` ... :data:`POLYNOMIAL`), so that float32
    kernels stay in float32 (a float64 literal would promote every expression it
    touches)."""
    float32 = np.dtype(dtype) == np.float32
    values = [
        1.0,  # ONE
        2.0,  # TWO
        80.0,  # SIGMOID_LIMIT: exp(-80) = 1.8e-35, the smallest sigmoid, normal in both dtypes
        9.0 if float32 else 20.0,  # TANH_LIMIT: tanh rounds to 1 beyond it
        1.0 / math.log(2.0),  # LOG2E
        # ROUNDER: 1.5 * 2**mantissa bits. z / ln2 + ROUNDER rounds z / ln2 to an integer n
        # and leaves n in the low bits of the sum (see VectorActivations.exp_parts).
        1.5 * 2.0 ** (23 if float32 else 52),
        0.693359375,  # LN2_HI: ln 2 rounded to 9 bits, so n * ln2_hi is exact
        -2.12194440054690582768e-4,  # LN2_LO: ln 2 - ln2_hi, to 21 digits (math.log(2) - ln2_hi loses 13)
    ]  # fmt: skip
    # POLYNOMIAL...: coefficients of (exp(r) - 1) / r, highest degree first. Float64: Taylor
    # 1 / (m + 1)! to degree 12, truncation error 4e-18 on |r| <= ln2 / 2 (ulp 1.1e-16).
    polynomial = _FLOAT32_POLYNOMIAL if float32 else [1.0 / math.factorial(m + 1) for m in range(13)]
    values += reversed(polynomial)
    return tuple(np.array(values, dtype=dtype))


@njit(**JIT)
def exp_parts(z, k):
    """``(exp(z), exp(z) - 1)``, each to about one ulp, for ``|z| <= 80``, from arithmetic
    alone so that loops calling it vectorise (libm's scalar ``expf``/``tanhf`` cost 10-20x
    more here). ``k`` is :func:`constants` of the dtype.

    ``z = n ln2 + r`` with ``|r| <= ln2 / 2``; ``exp(z) = 2**n (1 + q)`` where
    ``q = exp(r) - 1 = r P(r)``, ``P`` a polynomial, and ``2**n`` is built directly in the
    float's exponent field (:func:`pow2`). Keeping ``q`` apart gives ``exp(z) - 1`` without
    cancellation for small ``z``.
    """
    # n = round(z / ln2), to even on a tie, as the vectors' ROUNDER sum does (rint here, as
    # the Python bodies pass float64 arguments with float32 constants, too wide for it).
    nf = np.rint(z * k[LOG2E])
    r = (z - nf * k[LN2_HI]) - nf * k[LN2_LO]
    p = k[POLYNOMIAL]
    for m in range(POLYNOMIAL + 1, len(k)):  # Horner; the tuple's length is fixed, LLVM unrolls it
        p = p * r + k[m]
    q = p * r
    s = pow2(nf, k[ONE])
    return s + s * q, (s - k[ONE]) + s * q


@njit(**JIT)
def clamp(v, limit):
    """``v`` within ``[-limit, limit]``; NaN stays NaN."""
    v = limit if limit < v else v
    return -limit if v < -limit else v


@njit(**JIT)
def sigmoid(v, k):
    """Logistic function ``1 / (1 + exp(-v))``, finite for every input (``v`` taken within
    +-80), to a few ulps relative also where it is tiny."""
    e, _ = exp_parts(-clamp(v, k[SIGMOID_LIMIT]), k)
    return k[ONE] / (k[ONE] + e)


@njit(**JIT)
def tanh(v, k):
    """``tanh(v) = (exp(2v) - 1) / (exp(2v) + 1)``, finite for every input (``v`` taken
    within the limit past which tanh rounds to +-1), to a few ulps relative also near 0."""
    a = clamp(v, k[TANH_LIMIT])
    _, m = exp_parts(a + a, k)  # not 2 * a: an integer times a float32 is a float64
    return m / (m + k[TWO])


class VectorActivations:
    """:func:`exp_parts`, :func:`sigmoid` and :func:`tanh` on LLVM vectors, for the kernels
    written as IR: the same operations in the same order, each multiply-add that LLVM fuses
    in the scalar functions a fused multiply-add here, so both give the same results (to an
    ulp where ``z / ln2`` lies within rounding of a half-integer: the scalar functions
    round the product, the vectors its exact value).

    Measured on the 2-core Xeon against the previous version (``exp(-|x|)`` then a select
    by sign, a Taylor polynomial of degree 7, ``floor`` and a conversion for ``n``), the
    LSTM gate pass alone in one process, float32, interleaved medians: 0.79-0.86 of the
    time at H = 32 to 256 (its loop of two registers 323 -> 269 instructions); float64
    the same (0.96-1.02). Largest relative errors over 4 million arguments from -90 to
    90: float32 sigmoid 1.3 ulp, tanh 1.9; float64 2.2 and 2.1.

    ``vectors`` is the :class:`~._vectors.VectorBuilder` of the kernel's dtype.
    """

    def __init__(self, vectors):
        self.v = v = vectors
        dtype = np.float32 if v.itemsize == 4 else np.float64
        self.k = [v.splat(float(value)) for value in constants(dtype)]
        int_type = ir.IntType(8 * v.itemsize)
        self._int_vector = ir.VectorType(int_type, v.lanes)
        mantissa_bits = 23 if v.itemsize == 4 else 52
        self._mantissa_bits = v.splat(ir.Constant(int_type, mantissa_bits))
        self._one_bits = v.splat(ir.Constant(int_type, (127 if v.itemsize == 4 else 1023) << mantissa_bits))

    def exp_parts(self, z, negated=False):
        """``(exp(z), exp(z) - 1)`` for ``|z| <= 80`` (see :func:`exp_parts`); of ``-z``
        when ``negated``, the sign folded into the multiply-adds (LLVM does not fold an
        ``fneg`` of a clamped value; it emits a compare and a masked move for the clamp)."""
        builder, v, k = self.v.builder, self.v, self.k
        if negated:  # t = -z log2e + ROUNDER, r = -(z + n ln2_hi) - n ln2_lo
            t = v.fma(z, builder.fneg(k[LOG2E]), k[ROUNDER])
            nf = builder.fsub(t, k[ROUNDER])
            r_hi = builder.fneg(v.fma(nf, k[LN2_HI], z))
        else:
            t = v.fma(z, k[LOG2E], k[ROUNDER])
            nf = builder.fsub(t, k[ROUNDER])
            r_hi = v.fma(builder.fneg(nf), k[LN2_HI], z)
        r = v.fma(builder.fneg(nf), k[LN2_LO], r_hi)
        p = k[POLYNOMIAL]
        for coefficient in k[POLYNOMIAL + 1 :]:
            p = v.fma(p, r, coefficient)
        q = builder.fmul(p, r)
        # 2**n: t = ROUNDER + n exactly, so n is the low bits of t's mantissa (two's
        # complement), and shifting them into the exponent field and adding the bits of 1.0
        # gives 2**n; the bits of ROUNDER shift out.
        n_bits = builder.shl(builder.bitcast(t, self._int_vector), self._mantissa_bits)
        s = builder.bitcast(builder.add(n_bits, self._one_bits), v.vector)
        return v.fma(s, q, s), v.fma(s, q, builder.fsub(s, k[ONE]))

    def clamp(self, x, limit):
        builder = self.v.builder
        x = builder.select(builder.fcmp_ordered("<", limit, x), limit, x)  # NaN kept
        negative_limit = builder.fneg(limit)
        return builder.select(builder.fcmp_ordered("<", x, negative_limit), negative_limit, x)

    def sigmoid(self, x):
        builder, k = self.v.builder, self.k
        e, _ = self.exp_parts(self.clamp(x, k[SIGMOID_LIMIT]), negated=True)
        return builder.fdiv(k[ONE], builder.fadd(k[ONE], e))

    def tanh(self, x):
        builder, k = self.v.builder, self.k
        a = self.clamp(x, k[TANH_LIMIT])
        _, m = self.exp_parts(builder.fadd(a, a))
        return builder.fdiv(m, builder.fadd(m, k[TWO]))


def pow2(nf, one):
    """``2**nf`` in the dtype of ``one`` (1), for an integer-valued float ``nf`` of that
    dtype, ``|nf| <= 126``.

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code uses
    :func:`_pow2_bits` instead, integer instructions that vectorise (measured: the LSTM
    gate pass 22% faster than with a product of powers picked by the bits of ``n``).
    """
    n = int(nf)
    return one * (one + one) ** n if n >= 0 else one / (one + one) ** -n


@overload(pow2)
def _pow2_compiled(nf, one):
    return lambda nf, one: _pow2_bits(nf, one)


@intrinsic
def _pow2_bits(typingctx, nf, one):
    """``2**nf`` written straight into the bits of a float: exponent field ``bias + n``,
    zero mantissa (a normal number for ``|n|`` up to 126 in float32, 1022 in float64)."""
    if one not in (types.float32, types.float64) or nf not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        width, mantissa, bias = (32, 23, 127) if signature.return_type == types.float32 else (64, 52, 1023)
        int_type = ir.IntType(width)
        n = builder.fptosi(args[0], int_type)
        exponent = builder.shl(builder.add(n, ir.Constant(int_type, bias)), ir.Constant(int_type, mantissa))
        return builder.bitcast(exponent, context.get_value_type(signature.return_type))

    return one(nf, one), codegen
