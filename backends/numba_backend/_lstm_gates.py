"""The LSTM's gate pass over one batch row at one step, and its gradient, in 512-bit
vectors: :func:`gate_row`, :func:`gate_gradient_row`.

Written as LLVM IR (:func:`_gate_row_ir`) because Numba cannot get there from loops: LLVM
vectorises them in 256-bit vectors on AVX-512 CPUs (its preferred width, which Numba does
not let a function change), and one loop per gate block, as vectorisation wants, pays each
loop's setup per row and step. The IR does one pass over the units, 32 float32 or 16
float64 at a time (two registers side by side, :func:`~._vectors.for_each_pair`), with the
four gates, the state update and ``tanh(c)`` in registers.
Measured on the 2-core Xeon (Emerald Rapids), the pass alone over 32 rows and 5 steps,
interleaved medians, ns per unit and step, seven Numba loops -> this IR (one register at a
time): float32 H=64 9.2 -> 3.9, H=256 6.4 -> 3.8; float64 H=64 17.6 -> 9.7; and the small
preset's Numba forward (T=50, B=32, I=32, H=64, float32, 1 thread) 2.10 -> 1.75 ms. Two
registers at a time against one, in one process, medians of 9 interleaved rounds: the
pass 0.84-0.91 of the time for H = 32 to 256 (H=16 the same), its gradient 0.70-0.92 for
H = 64 to 256 but 1.07 at H=32 and 1.7 at H=16 (a few ns a row); float64, the pass
0.81-0.85 for H = 32 to 256, the gradient 0.63-1.43 (noisy). The exponentials of one
register are a chain of dependent operations; a second chain beside it fills the
execution units the first leaves waiting.
"""

import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from ._activations import VectorActivations, sigmoid, tanh
from ._vectors import for_each_pair, gate_rows, row_dtype, truth


def gate_row(gates, bias, h, c, y, c_out, tanh_c_out, store, k):
    """Gate pass of one batch row at one step.

    ``gates`` (4H,) holds ``x W_ih^T + h W_hh^T``; with ``bias`` added it receives the
    activations i, f, g, o (the cache). Updates ``h`` and ``c`` in place and writes ``h`` to
    ``y``; when ``store``, also ``c`` to ``c_out`` and ``tanh(c)`` to ``tanh_c_out``.
    ``k`` is :func:`~._activations.constants` of the dtype. Arrays of one row must not
    overlap, except ``c_out`` and ``tanh_c_out`` (not written without ``store``).

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code runs
    :func:`_gate_row_ir`, the same operations in vectors.
    """
    H = h.shape[0]
    i = np.array([sigmoid(a, k) for a in gates[:H] + bias[:H]])
    f = np.array([sigmoid(a, k) for a in gates[H : 2 * H] + bias[H : 2 * H]])
    g = np.array([tanh(a, k) for a in gates[2 * H : 3 * H] + bias[2 * H : 3 * H]])
    o = np.array([sigmoid(a, k) for a in gates[3 * H :] + bias[3 * H :]])
    gates[:] = np.concatenate([i, f, g, o])
    c[:] = f * c + i * g
    tanh_c = np.array([tanh(a, k) for a in c])
    h[:] = o * tanh_c
    y[:] = h
    if store:
        c_out[:] = c
        tanh_c_out[:] = tanh_c


# Inlined where it is called, by Numba: LLVM no longer inlined the larger body of two loops,
# and the call then cost 200 ns a row (arguments through memory, array references counted).
@overload(gate_row, inline="always")
def _gate_row_compiled(gates, bias, h, c, y, c_out, tanh_c_out, store, k):
    return lambda gates, bias, h, c, y, c_out, tanh_c_out, store, k: _gate_row_ir(
        gates, bias, h, c, y, c_out, tanh_c_out, store
    )


@intrinsic
def _gate_row_ir(typingctx, gates, bias, h, c, y, c_out, tanh_c_out, store):
    """:func:`gate_row` as IR: a loop over the units in vectors, the last one masked (so
    nothing outside the arrays is read or written), every array 1-D and C-contiguous."""
    arrays = (gates, bias, h, c, y, c_out, tanh_c_out)
    dtype = row_dtype(arrays)
    if dtype is None:
        return None

    def codegen(context, builder, signature, args):
        pointers, H, offsets = gate_rows(context, builder, arrays, args, 2, 4)  # blocks i, f, g, o
        gates_p, bias_p, h_p, c_p, y_p, c_out_p, tanh_c_out_p = pointers
        store = truth(builder, args[7])

        def units(v, j, lanes):  # units j .. j + L - 1
            act = VectorActivations(v)
            pre = [builder.fadd(v.load(v.element(gates_p, offset, j), lanes),
                                v.load(v.element(bias_p, offset, j), lanes)) for offset in offsets]  # fmt: skip
            i, f, g, o = act.sigmoid(pre[0]), act.sigmoid(pre[1]), act.tanh(pre[2]), act.sigmoid(pre[3])
            for offset, value in zip(offsets, (i, f, g, o)):
                v.store(value, v.element(gates_p, offset, j), lanes)
            c_new = v.fma(f, v.load(v.element(c_p, j), lanes), builder.fmul(i, g))  # c = f c + i g
            tanh_c = act.tanh(c_new)
            h_new = builder.fmul(o, tanh_c)
            v.store(c_new, v.element(c_p, j), lanes)
            v.store(h_new, v.element(h_p, j), lanes)
            v.store(h_new, v.element(y_p, j), lanes)
            stored = builder.and_(lanes, v.splat(store))
            v.store(c_new, v.element(c_out_p, j), stored)
            v.store(tanh_c, v.element(tanh_c_out_p, j), stored)

        for_each_pair(context, builder, dtype, H, units)
        return context.get_dummy_value()

    return types.none(gates, bias, h, c, y, c_out, tanh_c_out, store), codegen


def gate_gradient_row(dy, gates, c_prev, tanh_c, dh, dc, dgates):
    """Backward of :func:`gate_row` for one active row at one step.

    Adds ``dy`` to the hidden gradient ``dh``, fills ``dgates`` (4H,) with the gradients of
    the four pre-activations, turns ``dc`` into the cell gradient carried to the step
    before, and zeroes ``dh`` (the recurrent product that follows gives the whole of it).
    ``gates`` holds the activations i, f, g, o; ``c_prev`` the cell state before the step.

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code runs
    :func:`_gate_gradient_row_ir`, the same operations in vectors.
    """
    H = dh.shape[0]
    i, f, g, o = gates[:H], gates[H : 2 * H], gates[2 * H : 3 * H], gates[3 * H :]
    one = dh.dtype.type(1)
    dh += dy
    # h = o tanh(c): the hidden gradient reaches o and, through tanh, c
    dc += dh * o * (one - tanh_c * tanh_c)
    # c = f c_prev + i g, then through each gate's activation
    dgates[:H] = dc * g * (i * (one - i))
    dgates[H : 2 * H] = dc * c_prev * (f * (one - f))
    dgates[2 * H : 3 * H] = dc * i * (one - g * g)
    dgates[3 * H :] = dh * tanh_c * (o * (one - o))
    dc *= f
    dh[:] = 0


# Inlined for the reason given at gate_row's overload.
@overload(gate_gradient_row, inline="always")
def _gate_gradient_row_compiled(dy, gates, c_prev, tanh_c, dh, dc, dgates):
    return lambda dy, gates, c_prev, tanh_c, dh, dc, dgates: _gate_gradient_row_ir(
        dy, gates, c_prev, tanh_c, dh, dc, dgates
    )


@intrinsic
def _gate_gradient_row_ir(typingctx, dy, gates, c_prev, tanh_c, dh, dc, dgates):
    """:func:`gate_gradient_row` as IR, as :func:`_gate_row_ir` is built."""
    arrays = (dy, gates, c_prev, tanh_c, dh, dc, dgates)
    dtype = row_dtype(arrays)
    if dtype is None:
        return None

    def codegen(context, builder, signature, args):
        pointers, H, offsets = gate_rows(context, builder, arrays, args, 4, 4)  # blocks i, f, g, o
        dy_p, gates_p, c_prev_p, tanh_c_p, dh_p, dc_p, dgates_p = pointers

        mul, sub = builder.fmul, builder.fsub

        def units(v, j, lanes):  # units j .. j + L - 1
            one = v.splat(1.0)
            i, f, g, o = (v.load(v.element(gates_p, offset, j), lanes) for offset in offsets)
            tanh_c = v.load(v.element(tanh_c_p, j), lanes)
            c_prev = v.load(v.element(c_prev_p, j), lanes)
            dh_j = builder.fadd(v.load(v.element(dh_p, j), lanes), v.load(v.element(dy_p, j), lanes))
            # dc += dh o (1 - tanh_c^2)
            dc_j = v.fma(mul(dh_j, o), sub(one, mul(tanh_c, tanh_c)), v.load(v.element(dc_p, j), lanes))
            dgates = (
                mul(mul(dc_j, g), mul(i, sub(one, i))),
                mul(mul(dc_j, c_prev), mul(f, sub(one, f))),
                mul(mul(dc_j, i), sub(one, mul(g, g))),
                mul(mul(dh_j, tanh_c), mul(o, sub(one, o))),
            )
            for offset, value in zip(offsets, dgates):
                v.store(value, v.element(dgates_p, offset, j), lanes)
            v.store(builder.fmul(dc_j, f), v.element(dc_p, j), lanes)
            v.store(v.zero, v.element(dh_p, j), lanes)

        for_each_pair(context, builder, dtype, H, units)
        return context.get_dummy_value()

    return types.none(*arrays), codegen
