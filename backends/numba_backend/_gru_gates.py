"""The GRU's gate pass over one batch row at one step, and its gradient, in 512-bit vectors
(PyTorch's formulation, gates r, z, n): :func:`gate_row`, :func:`gate_gradient_row`.

Written as LLVM IR for the reasons given in :mod:`._lstm_gates`, and in the same way: one
pass over the units, two registers at a time. Measured on the 2-core Xeon, in one process,
medians of 9 interleaved rounds, over 32 rows and 5 steps, ns per unit and step, Numba
loops -> this IR (the same results to the bit): the pass, float32, H=32 7.3 -> 2.0, H=64
4.7 -> 1.9, H=256 2.8 -> 1.6; float64 H=64 8.8 -> 4.5, H=256 7.4 -> 4.5; the gradient,
float32, H=32 5.3 -> 1.4, H=64 3.2 -> 1.1, H=256 2.0 -> 1.2. The small preset's GRU (T=50,
B=32, I=32, H=64, float32, 1 thread), against the Cython backend's time in one process:
forward 1.11 -> 0.65, training step 1.09 -> 0.81.
"""

import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from ._activations import VectorActivations, sigmoid, tanh
from ._vectors import for_each_pair, gate_rows, row_dtype


def gate_row(gates, hidden, bias, b_hn, h, y, hn, k):
    """Gate pass of one active row at one step.

    ``gates`` (3H,) holds ``x W_ih^T`` and receives the activations r, z, n (the cache);
    ``hidden`` (3H,) holds ``h W_hh^T``; ``hn`` receives ``h W_hn^T + b_hn`` (the cache).
    Updates ``h`` in place and writes it to ``y``::

        r = sigmoid(G_r + b_r + h W_hr^T),  z = sigmoid(G_z + b_z + h W_hz^T)
        n = tanh(G_n + b_n + r * (h W_hn^T + b_hn)),  h' = n + z * (h - n)

    ``k`` is :func:`~._activations.constants` of the dtype. The arrays must not overlap.

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code runs
    :func:`_gate_row_ir`, the same operations in vectors.
    """
    H = h.shape[0]
    pre = gates + bias
    r = np.array([sigmoid(a, k) for a in pre[:H] + hidden[:H]])
    z = np.array([sigmoid(a, k) for a in pre[H : 2 * H] + hidden[H : 2 * H]])
    hn[:] = hidden[2 * H :] + b_hn
    n = np.array([tanh(a, k) for a in pre[2 * H :] + r * hn])
    gates[:] = np.concatenate([r, z, n])
    h[:] = n + z * (h - n)
    y[:] = h


# Inlined where it is called, by Numba, as the LSTM's gate pass is (see _lstm_gates).
@overload(gate_row, inline="always")
def _gate_row_compiled(gates, hidden, bias, b_hn, h, y, hn, k):
    return lambda gates, hidden, bias, b_hn, h, y, hn, k: _gate_row_ir(gates, hidden, bias, b_hn, h, y, hn)


@intrinsic
def _gate_row_ir(typingctx, gates, hidden, bias, b_hn, h, y, hn):
    """:func:`gate_row` as IR: a loop over the units in vectors, the last one masked (so
    nothing outside the arrays is read or written), every array 1-D and C-contiguous."""
    arrays = (gates, hidden, bias, b_hn, h, y, hn)
    dtype = row_dtype(arrays)
    if dtype is None:
        return None

    def codegen(context, builder, signature, args):
        pointers, H, offsets = gate_rows(context, builder, arrays, args, 4, 3)  # blocks r, z, n
        gates_p, hidden_p, bias_p, b_hn_p, h_p, y_p, hn_p = pointers

        def units(v, j, lanes):  # units j .. j + L - 1
            act = VectorActivations(v)

            def load(pointer, *offset):
                return v.load(v.element(pointer, *offset, j), lanes)

            pre = [builder.fadd(load(gates_p, offset), load(bias_p, offset)) for offset in offsets]
            r = act.sigmoid(builder.fadd(pre[0], load(hidden_p, offsets[0])))
            z = act.sigmoid(builder.fadd(pre[1], load(hidden_p, offsets[1])))
            hn = builder.fadd(load(hidden_p, offsets[2]), load(b_hn_p))
            n = act.tanh(v.fma(r, hn, pre[2]))  # G_n + b_n + r hn
            for offset, value in zip(offsets, (r, z, n)):
                v.store(value, v.element(gates_p, offset, j), lanes)
            v.store(hn, v.element(hn_p, j), lanes)
            h_new = v.fma(z, builder.fsub(load(h_p), n), n)  # n + z (h - n)
            v.store(h_new, v.element(h_p, j), lanes)
            v.store(h_new, v.element(y_p, j), lanes)

        for_each_pair(context, builder, dtype, H, units)
        return context.get_dummy_value()

    return types.none(*arrays), codegen


def gate_gradient_row(dy, gates, hn, h_prev, dh, dgates, dn_input):
    """Backward of :func:`gate_row` for one active row at one step.

    Fills ``dgates`` (3H,) with the gradients of the recurrent pre-activations (r, z, and
    the reset product's ``h W_hn^T + b_hn``) and ``dn_input`` with that of the input-side
    n; turns ``dh`` into its direct part at the step before (``z * (dh + dy)``; the
    recurrent product adds the rest). ``gates`` holds r, z, n; ``hn`` what
    :func:`gate_row` stored there; ``h_prev`` the hidden state before the step.

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code runs
    :func:`_gate_gradient_row_ir`, the same operations in vectors.
    """
    H = dh.shape[0]
    r, z, n = gates[:H], gates[H : 2 * H], gates[2 * H :]
    one = dh.dtype.type(1)
    d = dh + dy
    # h' = n + z (h - n): to n (through tanh) and to z (through sigmoid)
    dn = d * (one - z) * (one - n * n)
    dgates[H : 2 * H] = d * (h_prev - n) * (z * (one - z))
    # n = tanh(G_n + r hn): to r and to the recurrent n part
    dgates[:H] = dn * hn * (r * (one - r))
    dgates[2 * H :] = dn * r
    dn_input[:] = dn
    # the direct path h -> h' through z
    dh[:] = d * z


# Inlined for the reason given at gate_row's overload.
@overload(gate_gradient_row, inline="always")
def _gate_gradient_row_compiled(dy, gates, hn, h_prev, dh, dgates, dn_input):
    return lambda dy, gates, hn, h_prev, dh, dgates, dn_input: _gate_gradient_row_ir(
        dy, gates, hn, h_prev, dh, dgates, dn_input
    )


@intrinsic
def _gate_gradient_row_ir(typingctx, dy, gates, hn, h_prev, dh, dgates, dn_input):
    """:func:`gate_gradient_row` as IR, as :func:`_gate_row_ir` is built."""
    arrays = (dy, gates, hn, h_prev, dh, dgates, dn_input)
    dtype = row_dtype(arrays)
    if dtype is None:
        return None

    def codegen(context, builder, signature, args):
        pointers, H, offsets = gate_rows(context, builder, arrays, args, 4, 3)  # blocks r, z, n
        dy_p, gates_p, hn_p, h_prev_p, dh_p, dgates_p, dn_input_p = pointers
        mul, sub = builder.fmul, builder.fsub

        def units(v, j, lanes):  # units j .. j + L - 1
            one = v.splat(1.0)

            def load(pointer, *offset):
                return v.load(v.element(pointer, *offset, j), lanes)

            r, z, n = (load(gates_p, offset) for offset in offsets)
            d = builder.fadd(load(dh_p), load(dy_p))
            dn = mul(mul(d, sub(one, z)), sub(one, mul(n, n)))
            dgates = (
                mul(mul(dn, load(hn_p)), mul(r, sub(one, r))),
                mul(mul(d, sub(load(h_prev_p), n)), mul(z, sub(one, z))),
                mul(dn, r),
            )
            for offset, value in zip(offsets, dgates):
                v.store(value, v.element(dgates_p, offset, j), lanes)
            v.store(dn, v.element(dn_input_p, j), lanes)
            v.store(mul(d, z), v.element(dh_p, j), lanes)

        for_each_pair(context, builder, dtype, H, units)
        return context.get_dummy_value()

    return types.none(*arrays), codegen
