"""The gate pass of the LSTM variants (peepholes, coupled input-forget gate, projection)
over one batch row at one step, and its gradient, in 512-bit vectors: :func:`gate_row`,
:func:`gate_gradient_row`.

Written as LLVM IR for the reasons given in :mod:`._lstm_gates`, and in the same way: one
pass over the units, two registers at a time, one loop for coupled gates and one for
separate ones (a flag of the call). Measured on the 2-core Xeon against the Numba loops
(eight a row), the time loops alone (T=50, B=32, H=64, float32, panel kernel, medians of
7 interleaved rounds): forward 2.89 -> 0.98 ms with separate gates, 2.62 -> 0.81 coupled
(the same results to the bit); backward 0.83 -> 0.70 and 0.68 -> 0.51 (within a few ulps
at each step: the multiply-adds fuse differently).
"""

import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from ._activations import VectorActivations, sigmoid, tanh
from ._vectors import for_each_pair_as, gate_rows, row_dtype, truth


def gate_offsets(H, coupled):
    """Offsets of the f, g and o blocks in a row of gates (i, f, g, o; f, g, o when
    coupled)."""
    return (0, H, 2 * H) if coupled else (H, 2 * H, 3 * H)


def gate_row(gates, bias, p_i, p_f, p_o, coupled, c, m, c_out, tanh_c_out, store, k):
    """Gate pass of one active row at one step.

    ``gates`` holds the pre-activations without the bias and receives the activations;
    ``p_i``, ``p_f``, ``p_o`` are the peephole weights (zeros without peepholes; ``p_i`` is
    not read when ``coupled``, as ``i = 1 - f`` then). Updates ``c`` in place and writes
    ``m = o * tanh(c)``; when ``store``, also ``c`` to ``c_out`` and ``tanh(c)`` to
    ``tanh_c_out``. i and f see ``c`` before the step through their peepholes, o after it.
    ``k`` is :func:`~._activations.constants` of the dtype. Arrays of one row must not
    overlap, except ``c_out`` and ``tanh_c_out`` (not written without ``store``).

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code runs
    :func:`_gate_row_ir`, the same operations in vectors.
    """
    H = c.shape[0]
    f_at, g_at, o_at = gate_offsets(H, coupled)
    pre = gates + bias
    f = np.array([sigmoid(a, k) for a in pre[f_at : f_at + H] + p_f * c])
    g = np.array([tanh(a, k) for a in pre[g_at : g_at + H]])
    if coupled:
        c[:] = f * c + (k[0] - f) * g
    else:
        i = np.array([sigmoid(a, k) for a in pre[:H] + p_i * c])
        gates[:H] = i
        c[:] = f * c + i * g
    o = np.array([sigmoid(a, k) for a in pre[o_at:] + p_o * c])
    gates[f_at : f_at + H], gates[g_at : g_at + H], gates[o_at:] = f, g, o
    tanh_c = np.array([tanh(a, k) for a in c])
    m[:] = o * tanh_c
    if store:
        c_out[:] = c
        tanh_c_out[:] = tanh_c


# Inlined where it is called, by Numba, as the LSTM's gate pass is (see _lstm_gates).
@overload(gate_row, inline="always")
def _gate_row_compiled(gates, bias, p_i, p_f, p_o, coupled, c, m, c_out, tanh_c_out, store, k):
    return lambda gates, bias, p_i, p_f, p_o, coupled, c, m, c_out, tanh_c_out, store, k: _gate_row_ir(
        gates, bias, p_i, p_f, p_o, coupled, c, m, c_out, tanh_c_out, store
    )


@intrinsic
def _gate_row_ir(typingctx, gates, bias, p_i, p_f, p_o, coupled, c, m, c_out, tanh_c_out, store):
    """:func:`gate_row` as IR: a loop over the units in vectors, the last one masked (so
    nothing outside the arrays is read or written), every array 1-D and C-contiguous."""
    arrays = (gates, bias, p_i, p_f, p_o, c, m, c_out, tanh_c_out)
    dtype = row_dtype(arrays)
    if dtype is None:
        return None

    def codegen(context, builder, signature, args):
        values = args[:5] + args[6:10]
        pointers, H, offsets = gate_rows(context, builder, arrays, values, 5, 4)
        gates_p, bias_p, p_i_p, p_f_p, p_o_p, c_p, m_p, c_out_p, tanh_c_out_p = pointers
        store = truth(builder, args[10])

        def units(coupled):
            # the i, f, g, o blocks (f, g, o when coupled: i = 1 - f)
            i_at, (f_at, g_at, o_at) = offsets[0], offsets[:3] if coupled else offsets[1:]

            def body(v, j, lanes):  # units j .. j + L - 1
                act = VectorActivations(v)

                def load(pointer, *offset):
                    return v.load(v.element(pointer, *offset, j), lanes)

                def pre(at):  # gates + bias of the block at ``at``
                    return builder.fadd(load(gates_p, at), load(bias_p, at))

                c_prev = load(c_p)
                f = act.sigmoid(v.fma(load(p_f_p), c_prev, pre(f_at)))
                g = act.tanh(pre(g_at))
                if coupled:
                    c_new = v.fma(f, c_prev, builder.fmul(builder.fsub(v.splat(1.0), f), g))  # f c + (1 - f) g
                else:
                    i = act.sigmoid(v.fma(load(p_i_p), c_prev, pre(i_at)))
                    v.store(i, v.element(gates_p, i_at, j), lanes)
                    c_new = v.fma(f, c_prev, builder.fmul(i, g))  # f c + i g
                o = act.sigmoid(v.fma(load(p_o_p), c_new, pre(o_at)))
                for at, value in ((f_at, f), (g_at, g), (o_at, o)):
                    v.store(value, v.element(gates_p, at, j), lanes)
                tanh_c = act.tanh(c_new)
                v.store(c_new, v.element(c_p, j), lanes)
                v.store(builder.fmul(o, tanh_c), v.element(m_p, j), lanes)
                stored = builder.and_(lanes, v.splat(store))
                v.store(c_new, v.element(c_out_p, j), stored)
                v.store(tanh_c, v.element(tanh_c_out_p, j), stored)

            return body

        for_each_pair_as(context, builder, dtype, H, args[5], units)  # coupled or separate gates
        return context.get_dummy_value()

    return types.none(gates, bias, p_i, p_f, p_o, coupled, c, m, c_out, tanh_c_out, store), codegen


def gate_gradient_row(dm, gates, c_prev, tanh_c, p_i, p_f, p_o, coupled, dc, dgates):
    """Backward of :func:`gate_row` for one active row at one step, from ``dm``, the
    gradient of ``m = o * tanh(c)``: fills ``dgates`` with the gradients of the
    pre-activations and turns ``dc`` into the cell gradient carried to the step before.
    ``gates`` holds the activations, ``c_prev`` the cell state before the step.

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code runs
    :func:`_gate_gradient_row_ir`, the same operations in vectors.
    """
    H = dc.shape[0]
    f_at, g_at, o_at = gate_offsets(H, coupled)
    one = dc.dtype.type(1)
    f, g, o = gates[f_at : f_at + H], gates[g_at : g_at + H], gates[o_at:]
    # m = o tanh(c): dm reaches o and, through tanh, c; o saw c_t by its peephole.
    do = dm * tanh_c * (o * (one - o))
    dgates[o_at:] = do
    dc += dm * o * (one - tanh_c * tanh_c) + do * p_o
    # c = f c_prev + i g, then through each gate's activation; coupled gates have i = 1 - f,
    # so f also receives -dc g.
    if coupled:
        df = dc * (c_prev - g) * (f * (one - f))
        dgates[g_at : g_at + H] = dc * (one - f) * (one - g * g)
        dgates[f_at : f_at + H] = df
        # the cell gradient carried to step t - 1, also through the f peephole
        dc[:] = dc * f + df * p_f
    else:
        i = gates[:H]
        di = dc * g * (i * (one - i))
        df = dc * c_prev * (f * (one - f))
        dgates[g_at : g_at + H] = dc * i * (one - g * g)
        dgates[:H], dgates[f_at : f_at + H] = di, df
        # the cell gradient carried to step t - 1, also through the i and f peepholes
        dc[:] = dc * f + df * p_f + di * p_i


# Inlined for the reason given at gate_row's overload.
@overload(gate_gradient_row, inline="always")
def _gate_gradient_row_compiled(dm, gates, c_prev, tanh_c, p_i, p_f, p_o, coupled, dc, dgates):
    return lambda dm, gates, c_prev, tanh_c, p_i, p_f, p_o, coupled, dc, dgates: _gate_gradient_row_ir(
        dm, gates, c_prev, tanh_c, p_i, p_f, p_o, coupled, dc, dgates
    )


@intrinsic
def _gate_gradient_row_ir(typingctx, dm, gates, c_prev, tanh_c, p_i, p_f, p_o, coupled, dc, dgates):
    """:func:`gate_gradient_row` as IR, as :func:`_gate_row_ir` is built."""
    arrays = (dm, gates, c_prev, tanh_c, p_i, p_f, p_o, dc, dgates)
    dtype = row_dtype(arrays)
    if dtype is None:
        return None

    def codegen(context, builder, signature, args):
        values = args[:7] + args[8:]
        pointers, H, offsets = gate_rows(context, builder, arrays, values, 7, 4)
        dm_p, gates_p, c_prev_p, tanh_c_p, p_i_p, p_f_p, p_o_p, dc_p, dgates_p = pointers
        mul, sub = builder.fmul, builder.fsub

        def units(coupled):
            i_at, (f_at, g_at, o_at) = offsets[0], offsets[:3] if coupled else offsets[1:]

            def body(v, j, lanes):  # units j .. j + L - 1
                one = v.splat(1.0)

                def load(pointer, *offset):
                    return v.load(v.element(pointer, *offset, j), lanes)

                f, g, o = load(gates_p, f_at), load(gates_p, g_at), load(gates_p, o_at)
                dm_j, tanh_c, c_prev = load(dm_p), load(tanh_c_p), load(c_prev_p)
                do = mul(mul(dm_j, tanh_c), mul(o, sub(one, o)))
                # dc += dm o (1 - tanh_c^2) + do p_o
                dc = builder.fadd(load(dc_p), v.fma(do, load(p_o_p), mul(mul(dm_j, o), sub(one, mul(tanh_c, tanh_c)))))
                if coupled:
                    df = mul(mul(dc, sub(c_prev, g)), mul(f, sub(one, f)))
                    dg = mul(mul(dc, sub(one, f)), sub(one, mul(g, g)))
                    dc_next = v.fma(df, load(p_f_p), mul(dc, f))
                else:
                    i = load(gates_p, i_at)
                    di = mul(mul(dc, g), mul(i, sub(one, i)))
                    df = mul(mul(dc, c_prev), mul(f, sub(one, f)))
                    dg = mul(mul(dc, i), sub(one, mul(g, g)))
                    v.store(di, v.element(dgates_p, i_at, j), lanes)
                    dc_next = v.fma(di, load(p_i_p), v.fma(df, load(p_f_p), mul(dc, f)))
                for at, value in ((f_at, df), (g_at, dg), (o_at, do)):
                    v.store(value, v.element(dgates_p, at, j), lanes)
                v.store(dc_next, v.element(dc_p, j), lanes)

            return body

        for_each_pair_as(context, builder, dtype, H, args[7], units)  # coupled or separate gates
        return context.get_dummy_value()

    return types.none(dm, gates, c_prev, tanh_c, p_i, p_f, p_o, coupled, dc, dgates), codegen
