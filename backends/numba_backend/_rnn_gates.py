"""The Elman RNN's activation over one batch row at one step, and its gradient, in 512-bit
vectors: :func:`gate_row`, :func:`gate_gradient_row`.

Written as LLVM IR for the reasons given in :mod:`._lstm_gates`, and in the same way: one
pass over the units, two registers at a time. Measured on the 2-core Xeon against the
Numba loops (the same results to the bit), the time loops alone (T=50, B=32, float32,
panel kernel, medians of 7 interleaved rounds): H=64 forward 0.188 -> 0.159 ms (tanh),
0.148 -> 0.137 (relu), backward 0.173 -> 0.136; at H=256 the products dominate (forward
6-8% faster, backward the same).
"""

import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from ._activations import VectorActivations, tanh
from ._vectors import for_each_pair_as, gate_rows, row_dtype


def gate_row(gates, bias, relu, h, y, k):
    """Activation of one active row at one step: ``gates`` (H,) holds ``x W_ih^T + h W_hh^T``
    and receives ``act(gates + bias)`` (the cache), also written to ``h`` and ``y``; ``act``
    is ``max(., 0)`` when ``relu`` (NaN kept), else ``tanh``. ``k`` is
    :func:`~._activations.constants` of the dtype. The arrays must not overlap.

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code runs
    :func:`_gate_row_ir`, the same operations in vectors.
    """
    pre = gates + bias
    if relu:
        gates[:] = np.where(pre < 0, 0, pre)
    else:
        gates[:] = [tanh(a, k) for a in pre]
    h[:] = gates
    y[:] = gates


# Inlined where it is called, by Numba, as the LSTM's gate pass is (see _lstm_gates).
@overload(gate_row, inline="always")
def _gate_row_compiled(gates, bias, relu, h, y, k):
    return lambda gates, bias, relu, h, y, k: _gate_row_ir(gates, bias, relu, h, y)


@intrinsic
def _gate_row_ir(typingctx, gates, bias, relu, h, y):
    """:func:`gate_row` as IR: one loop over the units in vectors for each activation, the
    last vector masked (nothing outside the arrays is read or written)."""

    def body_for(builder, pointers, relu):
        gates_p, bias_p, h_p, y_p = pointers

        def body(v, j, lanes):  # units j .. j + L - 1
            a = builder.fadd(v.load(v.element(gates_p, j), lanes), v.load(v.element(bias_p, j), lanes))
            if relu:  # max(a, 0), NaN kept
                a = builder.select(builder.fcmp_ordered("<", a, v.zero), v.zero, a)
            else:
                a = VectorActivations(v).tanh(a)
            for pointer in (gates_p, h_p, y_p):
                v.store(a, v.element(pointer, j), lanes)

        return body

    return _flagged_row_kernel((gates, bias, relu, h, y), body_for)


def gate_gradient_row(dy, act, relu, dh, dgates):
    """Backward of :func:`gate_row` for one active row at one step: ``dgates`` receives the
    gradient of the pre-activation, ``(dh + dy) act'``, with ``act`` the activations, and
    ``dh`` is zeroed (the recurrent product that follows gives the whole of it).

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code runs
    :func:`_gate_gradient_row_ir`, the same operations in vectors.
    """
    d = dh + dy
    if relu:
        dgates[:] = np.where(act > 0, d, 0)
    else:
        dgates[:] = d * (dh.dtype.type(1) - act * act)
    dh[:] = 0


# Inlined for the reason given at gate_row's overload.
@overload(gate_gradient_row, inline="always")
def _gate_gradient_row_compiled(dy, act, relu, dh, dgates):
    return lambda dy, act, relu, dh, dgates: _gate_gradient_row_ir(dy, act, relu, dh, dgates)


@intrinsic
def _gate_gradient_row_ir(typingctx, dy, act, relu, dh, dgates):
    """:func:`gate_gradient_row` as IR, as :func:`_gate_row_ir` is built."""

    def body_for(builder, pointers, relu):
        dy_p, act_p, dh_p, dgates_p = pointers

        def body(v, j, lanes):  # units j .. j + L - 1
            a = v.load(v.element(act_p, j), lanes)
            d = builder.fadd(v.load(v.element(dh_p, j), lanes), v.load(v.element(dy_p, j), lanes))
            if relu:  # d where a > 0, else 0
                d = builder.select(builder.fcmp_ordered(">", a, v.zero), d, v.zero)
            else:  # d (1 - a^2)
                d = builder.fmul(d, builder.fsub(v.splat(1.0), builder.fmul(a, a)))
            v.store(d, v.element(dgates_p, j), lanes)
            v.store(v.zero, v.element(dh_p, j), lanes)

        return body

    return _flagged_row_kernel((dy, act, relu, dh, dgates), body_for)


def _flagged_row_kernel(arguments, body_for):
    """The ``(signature, codegen)`` of a row kernel over ``arguments``: four 1-D arrays of
    one dtype with the Numba boolean ``relu`` third, ``(a, b, relu, c, d)``; the loop body
    is ``body_for(builder, (a, b, c, d) data pointers, relu)``, one loop for each value of
    ``relu`` (see :func:`~._vectors.for_each_pair_as`). None (no match) for other types."""
    relu = arguments[2]
    arrays = arguments[:2] + arguments[3:]
    dtype = row_dtype(arrays)
    if dtype is None or not isinstance(relu, types.Boolean):
        return None

    def codegen(context, builder, signature, args):
        pointers, H, _ = gate_rows(context, builder, arrays, args[:2] + args[3:], 2, 1)
        for_each_pair_as(context, builder, dtype, H, args[2], lambda relu: body_for(builder, pointers, relu))
        return context.get_dummy_value()

    return types.none(*arguments), codegen
