"""The LSTM's fused step on the panel route: the product ``[x_t, h] @ [W_ih, W_hh].T`` of a
block of rows with the panels of one group of units, and those units' gate pass in the
block's epilogue (:func:`step_block`), over the weights packed group by group
(:func:`pack_gate_groups`).

A group is ``L`` units, one register (16 in float32, 8 in float64). Its gate rows fill two
panels of the panel kernel (:mod:`._products`): i and f of its units, then g and o. A block
crosses the first with ``R`` rows of ``[x_t, h]`` and activates i and f (into a scratch
row: the registers hold the next panel's accumulators), then the second, and with g and o
in registers updates ``c``, computes ``h`` and writes the step's outputs. The gate pass of
one block thus overlaps the multiply-adds of the next, where the unfused step ran the
whole product, then the whole gate pass, and kept the gates in memory between the two.
Measured on the 2-core Xeon (float32, inference, T=50, 1 thread): against that step in one
process (interleaved medians of 11 rounds), 0.92-0.94 of its time at B=32, I=32, H=64 (the
small preset), 0.93 at B=32, I=64, H=256 and at B=16, I=32, H=128, 0.95 at B=64, I=128,
H=256, in the machine's fast spells; 0.99-1.00 in its slow ones (the host's other work,
which made both steps 1.35 times as long, left nothing for the overlap to gain). The small
preset's forward, in ratio to the Cython backend's: 0.82 -> 0.73 (the backend's call,
medians of 9 rounds), 0.82 -> 0.77 (the layer's, medians of 6 runs); a training forward,
whose stores of the cache dominate, 0.94 either way.

Every output is computed by the same operations in the same order as the unfused step's
(each output of the product one chain of multiply-adds over ``k``, then the activations of
:func:`~._lstm_gates.gate_row`): the results are the same to the bit.
"""

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

from lstmcpu._buffers import BUFFERS

from ._activations import JIT, VectorActivations, constants
from ._lstm_gates import gate_row
from ._products import block_product, pack_rows, panel_width
from ._vectors import VectorBuilder, array_data, array_shape, truth


def pack_gate_groups(w_ih, w_hh):
    """Panels of ``[w_ih, w_hh].T`` (each ``(4H, .)``) for :func:`fused_step`: panel ``2q``
    holds the rows i and f of the units ``qL .. qL + L - 1`` (``L`` of each, side by side),
    panel ``2q + 1`` their rows g and o; the rows of units past ``H`` are zero. A
    C-contiguous ``(2 n_groups, I + H, 2 L)`` array."""
    H, W = w_hh.shape[0] // 4, panel_width(w_hh.dtype)
    panels = BUFFERS.empty((2 * -(-H // (W // 2)), w_ih.shape[1] + w_hh.shape[1], W), w_hh.dtype)
    _pack_gate_groups(w_ih, w_hh, panels)
    return panels


@njit(**JIT)
def _pack_gate_groups(w_ih, w_hh, panels):
    """:func:`pack_gate_groups` into ``panels``: ``w_ih``'s columns, then ``w_hh``'s, each
    packed straight from its rows in the groups' order (:func:`~._products.pack_rows`).
    Measured at the small preset (float32, timeit, best of 7): 16.0-16.4 us, against
    30.6-31.3 with the rows first copied in the groups' order, then packed."""
    H = w_hh.shape[0] // 4
    L = panels.shape[2] // 2
    rows = np.empty(panels.shape[0] * 2 * L, dtype=np.int64)  # packed row -> row of w_ih and w_hh
    for q in range(panels.shape[0] // 2):
        for gate in range(4):
            for j in range(L):
                unit = q * L + j
                rows[(4 * q + gate) * L + j] = gate * H + unit if unit < H else -1
    pack_rows(w_ih, rows, panels, 0)
    pack_rows(w_hh, rows, panels, w_ih.shape[1])


@njit(**JIT)
def fused_step(lo, hi, xh, panels, bias, c, xh_next, y, t, lens, store, G, c_all, tanh_c_all, scratch):
    """Step ``t`` of the forward loop for the rows ``lo:hi``, fused: ``xh`` (B, I + H) holds
    ``[x_t, h_{t-1}]``, ``panels`` the weights of :func:`pack_gate_groups`; ``h_t`` goes to
    the columns ``I:`` of ``xh_next``, ``c`` is updated in place, and ``y[t]``, and with
    ``store`` ``G[t]`` (the activated gates), ``c_all[t]`` and ``tanh_c_all[t]``, are
    written as by :func:`~._lstm_gates.gate_row` and :func:`~._lstm.padding_row` (a row
    past its length keeps its state). ``scratch`` holds ``2 L`` values for each of 8 rows.

    Blocks of 8 rows, each group's two panels crossed by every block before the next
    group (they stay in L1), then a block of 4 rows and single rows for the rest."""
    flat = panels.reshape(-1)
    for q in range(panels.shape[0] // 2):
        r = lo
        while r + 8 <= hi:
            step_block(8, xh, flat, q, r, bias, c, xh_next, y, t, lens, store, G, c_all, tanh_c_all, scratch)
            r += 8
        if r + 4 <= hi:
            step_block(4, xh, flat, q, r, bias, c, xh_next, y, t, lens, store, G, c_all, tanh_c_all, scratch)
            r += 4
        while r < hi:
            step_block(1, xh, flat, q, r, bias, c, xh_next, y, t, lens, store, G, c_all, tanh_c_all, scratch)
            r += 1


def step_block(rows, xh, flat, q, r, bias, c, xh_next, y, t, lens, store, G, c_all, tanh_c_all, scratch):
    """The rows ``r:r + rows`` of :func:`fused_step` for the units of group ``q``.

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code emits
    :func:`_step_block_ir` (``rows`` a literal), the same operations in vectors."""
    K, H = xh.shape[1], c.shape[1]
    I, W = K - H, panel_width(c.dtype)
    L = W // 2
    panels = flat.reshape(-1, K, W)
    u0, u1 = q * L, min(q * L + L, H)
    n = u1 - u0
    k = constants(c.dtype)
    for row in range(r, r + rows):
        # the group's gate rows of [x_t, h] @ [w_ih, w_hh].T: i, f, g, o of its L units
        pre = xh[row] @ np.hstack([panels[2 * q], panels[2 * q + 1]])
        gates = np.concatenate([pre[g * L : g * L + n] for g in range(4)])
        bias_rows = np.concatenate([bias[g * H + u0 : g * H + u1] for g in range(4)])
        c_out, tanh_c_out = (c_all[t, row, u0:u1], tanh_c_all[t, row, u0:u1]) if store else (scratch[:n], scratch[:n])
        if t < lens[row]:
            gate_row(gates, bias_rows, xh_next[row, I + u0 : I + u1], c[row, u0:u1], y[t, row, u0:u1], c_out,
                     tanh_c_out, store, k)  # fmt: skip
            if store:
                for g in range(4):
                    G[t, row, g * H + u0 : g * H + u1] = gates[g * n : (g + 1) * n]
        else:  # past the row's length: the state carried, output zero
            xh_next[row, I + u0 : I + u1] = xh[row, I + u0 : I + u1]
            y[t, row, u0:u1] = 0
            c_out[:] = c[row, u0:u1]
            tanh_c_out[:] = 0


# Inlined into the caller ("always"), as panel_block is: a call of a block passed its 16
# arrays as some 100 words on the stack, and the caller's loop over blocks kept nothing in
# registers across it. Measured (float32, one process, the backend's calls alternating
# with a copy of the package without the inlining, medians of 15 rounds): the small
# preset's forward 0.931-0.968 of the time at 1 thread (4 runs), 0.968 at 2, its training
# step 0.97, the medium forward 0.954; the same results to the bit.
@overload(step_block, prefer_literal=True, inline="always")
def _step_block_compiled(rows, xh, flat, q, r, bias, c, xh_next, y, t, lens, store, G, c_all, tanh_c_all, scratch):
    # rows is the literal of each call site (8, 4 or 1): prefer_literal types it so
    def impl(rows, xh, flat, q, r, bias, c, xh_next, y, t, lens, store, G, c_all, tanh_c_all, scratch):
        _step_block_ir(rows, xh, flat, q, r, bias, c, xh_next, y, t, lens, store, G, c_all, tanh_c_all, scratch)

    return impl


@intrinsic(prefer_literal=True)
def _step_block_ir(typingctx, rows, xh, flat, q, r, bias, c, xh_next, y, t, lens, store, G, c_all, tanh_c_all,
                   scratch):  # fmt: skip
    """:func:`step_block` as LLVM IR: the panel kernel's block of ``rows`` rows over the
    group's first panel, i and f activated into ``scratch``; over the second panel, then
    the state update and the outputs, every store masked to the units before ``H``."""
    if not isinstance(rows, types.IntegerLiteral):
        return None
    arrays2 = (xh, c, xh_next)
    arrays3 = (y, G, c_all, tanh_c_all)
    arrays1 = (flat, bias, scratch)
    if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays1 + arrays2 + arrays3 + (lens,)):
        return None
    dtype = c.dtype
    if dtype not in (types.float32, types.float64) or any(a.dtype != dtype for a in arrays1 + arrays2 + arrays3):
        return None
    if lens.dtype != types.int64 or lens.ndim != 1:
        return None
    arguments = (rows, xh, flat, q, r, bias, c, xh_next, y, t, lens, store, G, c_all, tanh_c_all, scratch)

    def codegen(context, builder, signature, args):
        R = rows.literal_value
        xh_a, flat_a, q_a, r_a, bias_a, c_a, next_a, y_a, t_a, lens_a, store_a, G_a, c_all_a, tanh_a, s_a = args[1:]
        v = VectorBuilder(context, builder, dtype)
        act = VectorActivations(v)
        L, const = v.lanes, v.const
        data = {name: array_data(context, builder, ty, value) for name, ty, value in (
            ("xh", xh, xh_a), ("flat", flat, flat_a), ("bias", bias, bias_a), ("c", c, c_a),
            ("next", xh_next, next_a), ("y", y, y_a), ("lens", lens, lens_a), ("G", G, G_a),
            ("c_all", c_all, c_all_a), ("tanh", tanh_c_all, tanh_a), ("scratch", scratch, s_a))}  # fmt: skip
        K = array_shape(context, builder, xh, xh_a)[1]
        B, H = array_shape(context, builder, c, c_a)
        I = builder.sub(K, H)
        W = const(2 * L)
        q_i = context.cast(builder, q_a, q, types.intp)
        r_i = context.cast(builder, r_a, r, types.intp)
        t_i = context.cast(builder, t_a, t, types.intp)
        u0 = builder.mul(q_i, const(L))
        lanes = v.mask(u0, H)  # the group's units before H
        whole = v.mask(const(0), const(L))
        stored = builder.and_(lanes, v.splat(truth(builder, store_a)))
        xh_rows = [builder.mul(builder.add(r_i, const(b)), K) for b in range(R)]
        gate_offsets = [builder.mul(const(g), H) for g in range(4)]
        biases = [v.load(v.element(data["bias"], gate_offsets[g], u0), lanes) for g in range(4)]
        panel_size = builder.mul(K, W)

        def product(first):
            """The accumulators of ``xh[r + b] @ panel`` for each row ``b``: two vectors
            (the panel's two gates) per row, each output one chain of multiply-adds over k."""
            pieces = [builder.add(first, const(i * L)) for i in range(2)]
            return block_product(v, data["flat"], pieces, W, [whole, whole], data["xh"], xh_rows, K, [v.zero] * 2 * R)

        first = builder.mul(builder.mul(q_i, const(2)), panel_size)
        acc = product(first)
        for b in range(R):  # i and f, activated, to the scratch row of b
            for g in range(2):
                value = act.sigmoid(builder.fadd(acc[2 * b + g], biases[g]))
                v.store(value, v.element(data["scratch"], const((2 * b + g) * L)), whole)
        acc = product(builder.add(first, panel_size))
        for b in range(R):
            row = builder.add(r_i, const(b))
            length = builder.load(builder.gep(data["lens"], [row]))
            active = builder.icmp_signed("<", t_i, length)
            on = builder.and_(lanes, v.splat(active))
            i, f = (v.load(v.element(data["scratch"], const((2 * b + g) * L)), whole) for g in range(2))
            g_ = act.tanh(builder.fadd(acc[2 * b], biases[2]))
            o = act.sigmoid(builder.fadd(acc[2 * b + 1], biases[3]))
            c_at = v.element(data["c"], builder.mul(row, H), u0)
            c_old = v.load(c_at, lanes)
            c_new = v.fma(f, c_old, builder.fmul(i, g_))  # c = f c + i g
            tanh_c = act.tanh(c_new)
            h = builder.fmul(o, tanh_c)
            v.store(c_new, c_at, on)
            # h_t, or past the row's length the state carried
            h_old = v.load(v.element(data["xh"], builder.mul(row, K), I, u0), lanes)
            v.store(builder.select(active, h, h_old), v.element(data["next"], builder.mul(row, K), I, u0), lanes)
            step_row = builder.add(builder.mul(t_i, B), row)  # row of y[t], c_all[t], ...
            v.store(builder.select(active, h, v.zero), v.element(data["y"], builder.mul(step_row, H), u0), lanes)
            gates_row = builder.mul(step_row, builder.mul(const(4), H))
            for offset, value in zip(gate_offsets, (i, f, g_, o)):
                v.store(value, v.element(data["G"], gates_row, offset, u0), builder.and_(stored, on))
            v.store(builder.select(active, c_new, c_old), v.element(data["c_all"], builder.mul(step_row, H), u0),
                    stored)  # fmt: skip
            v.store(builder.select(active, tanh_c, v.zero), v.element(data["tanh"], builder.mul(step_row, H), u0),
                    stored)  # fmt: skip
        return context.get_dummy_value()

    return types.none(*arguments), codegen
