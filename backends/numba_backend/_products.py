"""Compiled matrix products of the time loops: the register-blocked panel kernel for small
batch chunks, and the one entry every cell calls, which picks BLAS or the panel kernel.

The panel kernel computes ``out += A @ m`` for a ``(K, N)`` matrix ``m`` read as panels of
:func:`panel_width` consecutive columns (two 512-bit vectors: 32 float32, 16 float64). A
panel is a ``(K, W)`` block whose rows are ``W`` consecutive values in memory: either rows
of a packed copy (:func:`pack_panels`, for ``m = w.T``, which is ``w`` transposed), or the
rows of a C-contiguous ``m`` itself, cut into pieces of ``W`` (no copy, for ``m = w``).

For a block of a few rows of ``A`` and a few panels, the kernel keeps one vector
accumulator per row and half panel in registers while ``k`` runs from 0 to ``K - 1``,
adding ``m[k] * A[row, k]`` with one fused multiply-add per vector, then stores the block
to ``out``. Every output is thus the same chain of fused multiply-adds in the order
``k = 0, 1, ...``, whatever the blocking: results do not depend on how the batch is cut
into chunks or blocks. The block is emitted as LLVM IR (:func:`_panel_block_ir`), as
Numba has no vector types: written as loops, LLVM vectorised the ``k`` loop with gathers
and kept the accumulators in memory (2 GFLOP/s against 70-86 for the IR, float32, on the
2-core Xeon).
"""

import numpy as np
from llvmlite import ir
from numba import literally, njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from lstmcpu._buffers import BUFFERS

from ._activations import JIT
from ._vectors import VECTOR_BYTES, VectorBuilder, array_data, array_shape


def panel_width(dtype):
    """Columns of a panel: two 512-bit vectors of ``dtype`` (32 float32, 16 float64)."""
    return 2 * VECTOR_BYTES // np.dtype(dtype).itemsize


@overload(panel_width)
def _panel_width_compiled(dtype):
    width = 2 * VECTOR_BYTES * 8 // dtype.dtype.bitwidth
    return lambda dtype: width


def pack_panels(w):
    """Panels of ``m = w.T`` for :func:`matmul_add`, from ``w`` (N, K): a C-contiguous
    ``(ceil(N / W), K, W)`` array with ``panels[q, k, j] = w[q W + j, k]``, zero past
    the ``N`` columns of ``m``."""
    N, K = w.shape
    W = panel_width(w.dtype)
    panels = BUFFERS.empty((-(-N // W), K, W), w.dtype)
    pack_rows(w, np.arange(panels.shape[0] * W), panels, 0)  # the rows in order
    return panels


@njit(**JIT)
def pack_rows(w, rows, panels, k_out):
    """Packs the rows of ``w`` (N, K) in the order ``rows`` gives: the ``p``-th packed row,
    ``panels[p // W, k_out:k_out + K, p % W]``, is ``w[rows[p]]``, or zero where
    ``rows[p]`` is not a row of ``w`` (-1, say); nothing is written outside those columns,
    so that a matrix of several blocks of columns, such as ``[w_ih, w_hh].T``, is packed
    one block at a time without copying its rows side by side first. ``rows`` has an
    entry for every packed row (``panels.shape[0] * W``).

    Half a panel at a time (:func:`transpose_strip`), in tiles of ``L x L`` (``L = W / 2``)
    transposed in registers."""
    if rows.shape[0] != panels.shape[0] * panels.shape[2] or k_out < 0 or k_out + w.shape[1] > panels.shape[1]:
        raise ValueError("pack_rows: rows or k_out do not fit the panels")
    contiguous = np.ascontiguousarray(w)  # w itself when it is C-contiguous
    for q in range(panels.shape[0]):
        for half in range(2):
            transpose_strip(contiguous, rows, panels, q, half, k_out)


def transpose_strip(w, rows, panels, q, half, k_out):
    """``panels[q, k_out + k, half L + j] = w[rows[p], k]``, ``p = q W + half L + j``, for
    ``j < L`` (``L = W / 2``) and every column ``k`` of ``w``, zero where ``rows[p]`` is not
    a row of ``w``.

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code runs
    :func:`_transpose_strip_ir`: the ``L`` rows' addresses and masks once, then per tile
    of ``L`` columns ``L`` vector loads, a transpose in ``log2(L)`` rounds of shuffles and
    ``L`` vector stores. Measured (float32, ``w_hh`` of H=256, 1 MiB, timeit best of 7):
    162 us with the addresses and masks computed again for every tile (the scalar work of
    16 rows around 64 shuffles), 88 once per strip, where a copy of the same bytes
    (``np.copyto``) took 48-63; a split part's preparation at the online preset 0.77-0.79
    of its time (:func:`~._lstm.prepare_unit_part`, 2 runs alternating).
    """
    N, K = w.shape
    L = panels.shape[2] // 2
    for j in range(L):
        row = rows[q * 2 * L + half * L + j]
        for k in range(K):
            panels[q, k_out + k, half * L + j] = w[row, k] if 0 <= row < N else 0


@overload(transpose_strip)
def _transpose_strip_compiled(w, rows, panels, q, half, k_out):
    return lambda w, rows, panels, q, half, k_out: _transpose_strip_ir(w, rows, panels, q, half, k_out)


@intrinsic
def _transpose_strip_ir(typingctx, w, rows, panels, q, half, k_out):
    """:func:`transpose_strip` as IR. ``w`` is C-contiguous; ``panels`` may be a view whose
    last axis is contiguous. Round ``s`` of a tile's transpose (``L / 2`` down to 1) swaps
    the off-diagonal ``s x s`` blocks of every ``2s x 2s`` block, rows ``i`` and ``i + s`` at
    a time."""
    if not (isinstance(w, types.Array) and w.ndim == 2 and w.layout == "C"):
        return None
    if not (isinstance(rows, types.Array) and rows.ndim == 1 and rows.dtype == types.int64):
        return None
    if not (isinstance(panels, types.Array) and panels.ndim == 3 and panels.dtype == w.dtype):
        return None
    if w.dtype not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        v = VectorBuilder(context, builder, w.dtype)
        L, const = v.lanes, v.const
        q_arg, half_arg, k_out_arg = args[3:]
        w_data = array_data(context, builder, w, args[0])
        N, K = array_shape(context, builder, w, args[0])
        rows_struct = context.make_array(rows)(context, builder, args[1])
        rows_step = cgutils.unpack_tuple(builder, rows_struct.strides, 1)[0]
        panels_struct = context.make_array(panels)(context, builder, args[2])
        strides = cgutils.unpack_tuple(builder, panels_struct.strides, 3)
        p0 = builder.add(builder.mul(q_arg, const(2 * L)), builder.mul(half_arg, const(L)))
        # Once per strip: each row's offset in w (rows[p0 + r] * K; pack_rows checked that
        # rows has every packed row) and whether it is a row of w.
        row_offsets, row_lanes = [], []
        for r in range(L):
            offset = builder.mul(builder.add(p0, const(r)), rows_step)
            row = builder.load(cgutils.pointer_add(builder, rows_struct.data, offset, ir.IntType(64).as_pointer()))
            inside = builder.and_(builder.icmp_signed(">=", row, const(0)), builder.icmp_signed("<", row, N))
            row_offsets.append(builder.mul(builder.select(inside, row, const(0)), K))
            row_lanes.append(v.splat(inside))
        # panels[q, k_out + k, half L]: the first row of the strip, then strides[1] per k
        first = builder.add(builder.add(builder.mul(q_arg, strides[0]), builder.mul(k_out_arg, strides[1])),
                            builder.mul(half_arg, const(L * v.itemsize)))  # fmt: skip
        i32 = ir.IntType(32)

        def tile(k0, columns):  # the columns k0:k0 + L (those before K: columns)
            t = [v.load(v.element(w_data, row_offsets[r], k0), builder.and_(columns, row_lanes[r])) for r in range(L)]
            s = L // 2
            while s:
                for i in range(L):
                    if i & s:
                        continue
                    a, b = t[i], t[i + s]
                    low = [e if not e & s else L + e - s for e in range(L)]
                    high = [e + s if not e & s else L + e for e in range(L)]
                    t[i] = builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, L), low))
                    t[i + s] = builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, L), high))
                s //= 2
            # t[c] = w[rows[p0:p0 + L], k0 + c]: to panels[q, k_out + k0 + c, half L:(half + 1) L]
            for c in range(L):
                k = builder.add(k0, const(c))
                offset = builder.add(first, builder.mul(k, strides[1]))
                pointer = cgutils.pointer_add(builder, panels_struct.data, offset, v.scalar.as_pointer())
                v.store(t[c], pointer, v.splat(builder.icmp_signed("<", k, K)))

        v.for_each_vector(K, tile)
        return context.get_dummy_value()

    return types.none(w, rows, panels, q, half, k_out), codegen


def panel_block(rows, count, m, first, row_step, panel_step, A, r, out, c0, add):
    """``out[r:r + rows, c0:c0 + n] += A[r:r + rows] @ M`` for ``count`` consecutive
    panels, ``M`` their ``count W`` columns, of which the first ``n`` exist in ``out``;
    ``=`` instead of ``+=`` without ``add``.

    ``m`` is the flat storage of the panels: row ``k`` of the ``p``-th panel starts at
    ``m[first + k row_step + p panel_step]`` (a C-contiguous ``(K, N)`` matrix: ``first``
    the column, ``row_step = N``, ``panel_step = W``; packed panels: ``first = q K W``,
    ``row_step = W``, ``panel_step = K W``).

    This Python body runs under ``NUMBA_DISABLE_JIT=1``; compiled code emits the
    register-blocked block of :func:`_panel_block_ir` (``rows``, ``count`` and ``add``
    literals).
    """
    W = panel_width(out.dtype)
    for j in range(min(count * W, out.shape[1] - c0)):
        p, i = divmod(j, W)
        column = m[first + p * panel_step + i :: row_step][: A.shape[1]]
        # out[r:r + rows, c0 + j] (+)= A[r:r + rows] @ M[:, j]
        out[r : r + rows, c0 + j] = (out[r : r + rows, c0 + j] if add else 0) + A[r : r + rows] @ column


@overload(panel_block, prefer_literal=True, inline="always")  # see _lstm_step's step_block
def _panel_block_compiled(rows, count, m, first, row_step, panel_step, A, r, out, c0, add):
    return lambda rows, count, m, first, row_step, panel_step, A, r, out, c0, add: _panel_block_ir(
        rows, count, m, first, row_step, panel_step, A, r, out, c0, add
    )


@intrinsic(prefer_literal=True)
def _panel_block_ir(typingctx, rows, count, m, first, row_step, panel_step, A, r, out, c0, add):
    """The block of :func:`panel_block` as LLVM IR: ``rows x 2 count`` vector accumulators
    (loaded from ``out``, or zero without ``add``), a loop over ``k`` of two vector loads per
    panel, one broadcast per row and one fused multiply-add per accumulator, then the stores.
    The columns of the last panel past ``out``'s width are masked in every load and store
    (``m``'s too), so nothing outside the arrays is read or written."""
    literal = types.IntegerLiteral
    if not (isinstance(rows, literal) and isinstance(count, literal) and isinstance(add, types.BooleanLiteral)):
        return None
    if not (isinstance(m, types.Array) and m.ndim == 1 and m.layout == "C"):
        return None
    if not all(isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C" for a in (A, out)):
        return None
    dtype = out.dtype
    if dtype not in (types.float32, types.float64) or m.dtype != dtype or A.dtype != dtype:
        return None

    def codegen(context, builder, signature, args):
        R, Q = rows.literal_value, count.literal_value
        m_arg, first_arg, row_arg, panel_arg, a_arg, row, out_arg, col = args[2:10]
        v = VectorBuilder(context, builder, dtype)
        L, const = v.lanes, v.const
        m_data = array_data(context, builder, m, m_arg)
        a_data, out_data = array_data(context, builder, A, a_arg), array_data(context, builder, out, out_arg)
        K = array_shape(context, builder, A, a_arg)[1]
        out_width = array_shape(context, builder, out, out_arg)[1]
        a_rows = [builder.mul(builder.add(row, const(b)), K) for b in range(R)]
        out_rows = [builder.mul(builder.add(row, const(b)), out_width) for b in range(R)]
        # Piece i = (p, v): vector v of panel p, columns c0 + i L + (0..L-1) of out.
        pieces = range(2 * Q)
        m_piece = [builder.add(first_arg, builder.add(builder.mul(const(i // 2), panel_arg), const(i % 2 * L)))
                   for i in pieces]  # fmt: skip
        out_piece = [builder.add(col, const(i * L)) for i in pieces]
        masks = [v.mask(out_piece[i], out_width) for i in pieces]
        if add.literal_value:
            start = [v.load(v.element(out_data, out_rows[b], out_piece[i]), masks[i]) for b in range(R) for i in pieces]
        else:
            start = [v.zero for b in range(R) for i in pieces]

        results = block_product(v, m_data, m_piece, row_arg, masks, a_data, a_rows, K, start)
        for index, result in enumerate(results):
            b, i = divmod(index, 2 * Q)
            v.store(result, v.element(out_data, out_rows[b], out_piece[i]), masks[i])
        return context.get_dummy_value()

    return types.none(rows, count, m, first, row_step, panel_step, A, r, out, c0, add), codegen


def block_product(v, m_data, m_pieces, m_row_step, masks, a_data, a_rows, K, start):
    """Emits the ``k`` loop of a block of the panel kernel with the
    :class:`~._vectors.VectorBuilder` ``v``: for ``k`` in ``range(K)``, each accumulator
    ``acc[b, i]`` (index ``b * len(m_pieces) + i``, from ``start``) gains
    ``m[k m_row_step + m_pieces[i] + (0..L-1)] * a[a_rows[b] + k]`` in one fused
    multiply-add, the loads of ``m`` masked by ``masks[i]``. Returns the accumulators after
    the loop (``start`` when ``K`` is 0)."""
    builder, const = v.builder, v.const
    entry = builder.block
    loop = builder.append_basic_block("panel.k")
    done = builder.append_basic_block("panel.done")
    builder.cbranch(builder.icmp_signed(">", K, const(0)), loop, done)
    builder.position_at_end(loop)
    k = builder.phi(v.intp)
    acc = [builder.phi(v.vector) for _ in start]
    m_k = builder.mul(k, m_row_step)
    w = [v.load(v.element(m_data, m_k, piece), mask) for piece, mask in zip(m_pieces, masks)]
    new = []
    for b, a_row in enumerate(a_rows):
        a = v.splat(builder.load(v.element(a_data, a_row, k), align=v.itemsize))
        new += [v.fma(w_i, a, acc[b * len(w) + i]) for i, w_i in enumerate(w)]
    k_next = builder.add(k, const(1))
    body_end = builder.block
    builder.cbranch(builder.icmp_signed("<", k_next, K), loop, done)
    k.add_incoming(const(0), entry)
    k.add_incoming(k_next, body_end)
    for phi, before, after in zip(acc, start, new):
        phi.add_incoming(before, entry)
        phi.add_incoming(after, body_end)
    builder.position_at_end(done)
    results = [builder.phi(v.vector) for _ in start]
    for result, before, after in zip(results, start, new):
        result.add_incoming(before, entry)
        result.add_incoming(after, body_end)
    return results


@njit(**JIT)
def panel_matmul_add(A, m, packed, out, lo, hi):
    """``out[lo:hi] += A[lo:hi] @ M`` by blocks of :func:`panel_block`; ``M`` is ``m``
    (K, N) itself, or the matrix whose panels ``m`` (N / W, K, W) holds when ``packed``."""
    _panel_blocks(A, m, packed, out, lo, hi, True)


@njit(**JIT)
def panel_matmul(A, m, packed, out, lo, hi):
    """``out[lo:hi] = A[lo:hi] @ M``, as :func:`panel_matmul_add` (``out`` is not read)."""
    _panel_blocks(A, m, packed, out, lo, hi, False)


@njit(**JIT)
def _panel_blocks(A, m, packed, out, lo, hi, add):
    """The blocks of :func:`panel_matmul_add` (``add``) and :func:`panel_matmul`; ``add`` is
    compiled in as a constant (``literally``), one kernel for each.

    Blocks of 8 rows by 1 panel where the batch allows (16 independent accumulators, two
    vector loads and eight broadcasts per ``k``), each panel crossed by every block of rows
    before the next (so the panel stays in L1 while the rows, a smaller stream, pass).
    Measured on the 2-core Xeon, float32, medians of 7 interleaved rounds, the small
    preset's step product (32 x 96 @ 96 x 256) against 4 rows by 2 panels: 133 -> 146
    GFLOP/s (the core's peak: 166-178 alone, 150 with both cores busy), medium's (32 x 384
    @ 384 x 1024) 131 -> 141; and in one process against PyTorch, the layer's time over
    PyTorch's (1 thread, medians of 9 rounds): small forward 1.23 -> 1.15, training 1.02 ->
    0.98; medium (T=100, B=32, I=64, H=128) forward 1.24-1.28 -> 0.97-1.12, training
    1.14-1.21 -> 1.02-1.19. A remaining 4 rows go in blocks of 4 rows by 2 panels, the last
    rows in blocks of 1 row by 4 panels (8 accumulators: one row brings too few
    multiply-adds per load for more), enough either way to hide the latency of the fused
    multiply-adds.
    """
    add = literally(add)
    W = panel_width(out.dtype)
    n_panels = -(-out.shape[1] // W)
    K = A.shape[1]
    flat = m.reshape(-1)
    row_step, panel_step = (W, K * W) if packed else (out.shape[1], W)
    done = lo + (hi - lo) // 8 * 8  # rows lo:done in blocks of 8; then a block of 4, then rows
    for q in range(n_panels):
        for r in range(lo, done, 8):
            panel_block(8, 1, flat, q * panel_step, row_step, panel_step, A, r, out, q * W, add)
    if hi - done >= 4:
        q = 0
        while q + 2 <= n_panels:
            panel_block(4, 2, flat, q * panel_step, row_step, panel_step, A, done, out, q * W, add)
            q += 2
        if q < n_panels:
            panel_block(4, 1, flat, q * panel_step, row_step, panel_step, A, done, out, q * W, add)
        done += 4
    for row in range(done, hi):
        q = 0
        while q + 4 <= n_panels:
            panel_block(1, 4, flat, q * panel_step, row_step, panel_step, A, row, out, q * W, add)
            q += 4
        for q in range(q, n_panels):
            panel_block(1, 1, flat, q * panel_step, row_step, panel_step, A, row, out, q * W, add)


@njit(**JIT)
def copy_matrix(source, target):
    """``target[:] = source`` for 2-D arrays of one shape, element by element: Numba's
    slice assignment of a 2-D block takes its generic strided copy, 4-5 times as long
    (measured: ``x[t]`` (32 x 32) into a block of columns of a (32, 96) buffer, 0.64 us
    against 0.14; the rows of ``w_hh`` and ``w_ih`` of one part of a split step, 512 x 256
    and 512 x 64, 52 us against 20)."""
    for r in range(source.shape[0]):
        for k in range(source.shape[1]):
            target[r, k] = source[r, k]


@njit(**JIT)
def column_sums(a):
    """``a.sum(axis=0)`` of a 2-D array, the same sums to the bit (row after row, each
    column accumulated in order) in one compiled pass: NumPy's took 2.2 times as long
    (1600 x 256 float32, the small preset's bias gradient: 110 us against 50)."""
    sums = np.zeros(a.shape[1], dtype=a.dtype)
    for r in range(a.shape[0]):
        for j in range(a.shape[1]):
            sums[j] += a[r, j]
    return sums


@njit(**JIT)
def matmul(blas, A, m_blas, m_hand, out, lo, hi):
    """``out[lo:hi] = A[lo:hi] @ m``, by BLAS or the panel kernel as in :func:`matmul_add`
    (``out`` is not read, and BLAS writes straight into its rows)."""
    if blas:
        # out[lo:hi] = A[lo:hi] @ m
        np.dot(A[lo:hi], m_blas, out[lo:hi])
    else:
        # out[lo:hi] = A[lo:hi] @ m, with m[:, q W + j] = m_hand[q, :, j] when packed
        panel_matmul(A, m_hand, m_hand.ndim == 3, out, lo, hi)


@njit(**JIT)
def matmul_add(blas, A, m_blas, m_hand, out, lo, hi, scratch):
    """``out[lo:hi] += A[lo:hi] @ m``, the recurrent product of every cell.

    With ``blas``, BLAS computes the product into ``scratch``, this thread's own
    ``(hi - lo, N)`` buffer, from ``m_blas`` (any layout, e.g. a transposed view). Else the
    panel kernel reads ``m_hand``: either ``m`` itself when it is C-contiguous (2-D), or
    its packed panels from :func:`pack_panels` (3-D), and needs no scratch.
    """
    if blas:
        # scratch = A[lo:hi] @ m
        np.dot(A[lo:hi], m_blas, scratch)
        for r in range(hi - lo):
            for n in range(out.shape[1]):
                out[lo + r, n] += scratch[r, n]
    else:
        # out[lo:hi] += A[lo:hi] @ m, with m[:, q W + j] = m_hand[q, :, j] when packed
        panel_matmul_add(A, m_hand, m_hand.ndim == 3, out, lo, hi)
