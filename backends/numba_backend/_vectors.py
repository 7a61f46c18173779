"""LLVM IR building blocks for the kernels Numba cannot vectorise well on its own (it has no
vector types): vectors of one 512-bit register, splats, LLVM's masked loads and stores and
its fused multiply-add, and array data pointers. Used by the panel kernel
(:mod:`._products`) and the LSTM gate pass (:mod:`._lstm_gates`)."""

from llvmlite import ir
from numba import types
from numba.core import cgutils

#: Bytes of the vector registers the IR kernels are written for (AVX-512).
VECTOR_BYTES = 64


class VectorBuilder:
    """Vector operations on ``builder`` for arrays of the Numba scalar type ``dtype``:
    vectors of ``registers`` times :data:`VECTOR_BYTES` bytes (16 float32, 8 float64 per
    register). LLVM splits a vector of several registers into one operation per register,
    emitted side by side: independent chains of work that keep the execution units busy
    where one register's chain would leave them waiting on its latency."""

    def __init__(self, context, builder, dtype, registers=1):
        self.context, self.builder = context, builder
        self.scalar = context.get_value_type(dtype)
        self.itemsize = context.get_abi_sizeof(self.scalar)
        self.lanes = registers * VECTOR_BYTES // self.itemsize
        self.vector = ir.VectorType(self.scalar, self.lanes)
        self.intp = ir.IntType(64)
        self.zero = ir.Constant(self.vector, None)
        module, pointer = builder.module, ir.PointerType(ir.IntType(8))
        mask, i32 = ir.VectorType(ir.IntType(1), self.lanes), ir.IntType(32)
        suffix = f"v{self.lanes}f{8 * self.itemsize}"
        self._load = cgutils.get_or_insert_function(
            module, ir.FunctionType(self.vector, [pointer, i32, mask, self.vector]), f"llvm.masked.load.{suffix}.p0"
        )
        self._store = cgutils.get_or_insert_function(
            module, ir.FunctionType(ir.VoidType(), [self.vector, pointer, i32, mask]), f"llvm.masked.store.{suffix}.p0"
        )
        self._intrinsics = {
            name: cgutils.get_or_insert_function(module, ir.FunctionType(self.vector, [self.vector] * arity),
                                                 f"llvm.{name}.{suffix}")  # fmt: skip
            for name, arity in (("fma", 3), ("floor", 1), ("fabs", 1))
        }
        self._align = ir.Constant(i32, self.itemsize)

    def const(self, value):
        """An ``intp`` constant."""
        return ir.Constant(self.intp, value)

    def splat(self, value):
        """A vector of copies of ``value``: a float scalar of the dtype (an IR value, or a
        Python number made a constant), or an integer IR value (a vector of that integer
        type)."""
        if not isinstance(value, ir.Value):
            return ir.Constant(self.vector, [ir.Constant(self.scalar, value)] * self.lanes)
        vector = ir.VectorType(value.type, self.lanes)
        single = self.builder.insert_element(ir.Constant(vector, None), value, ir.Constant(ir.IntType(32), 0))
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), self.lanes), [0] * self.lanes)
        return self.builder.shuffle_vector(single, ir.Constant(vector, None), zeros)

    def element(self, data, *offsets):
        """Pointer to ``data[sum(offsets)]`` (``data`` a pointer to the scalar, the
        offsets ``intp`` values, in elements)."""
        builder = self.builder
        total = offsets[0]
        for offset in offsets[1:]:
            total = builder.add(total, offset)
        return cgutils.pointer_add(builder, data, builder.mul(total, self.const(self.itemsize)),
                                   self.scalar.as_pointer())  # fmt: skip

    def mask(self, first, end):
        """The lanes of the vector starting at element ``first`` that lie before ``end``."""
        lanes = ir.Constant(ir.VectorType(self.intp, self.lanes), list(range(self.lanes)))
        return self.builder.icmp_signed("<", lanes, self.splat(self.builder.sub(end, first)))

    def load(self, pointer, lanes):
        """The vector at ``pointer``, its lanes outside the mask ``lanes`` zero (not read)."""
        return self.builder.call(self._load, [self._bytes(pointer), self._align, lanes, self.zero])

    def store(self, value, pointer, lanes):
        """Writes the lanes of ``value`` that the mask ``lanes`` selects to ``pointer``."""
        self.builder.call(self._store, [value, self._bytes(pointer), self._align, lanes])

    def fma(self, a, b, c):
        """``a * b + c`` with one rounding."""
        return self.builder.call(self._intrinsics["fma"], [a, b, c])

    def floor(self, a):
        return self.builder.call(self._intrinsics["floor"], [a])

    def fabs(self, a):
        return self.builder.call(self._intrinsics["fabs"], [a])

    def for_each_vector(self, end, body, start=None):
        """Emits ``for j in range(start, end, lanes): body(j, mask)``, ``mask`` the lanes of
        the vector at ``j`` before ``end`` (all but in the last); ``start`` an ``intp``
        value, 0 if None."""
        builder = self.builder
        start = self.const(0) if start is None else start
        entry = builder.block
        loop = builder.append_basic_block("vectors.j")
        done = builder.append_basic_block("vectors.done")
        builder.cbranch(builder.icmp_signed(">", end, start), loop, done)
        builder.position_at_end(loop)
        j = builder.phi(self.intp)
        body(j, self.mask(j, end))
        j_next = builder.add(j, self.const(self.lanes))
        body_end = builder.block
        builder.cbranch(builder.icmp_signed("<", j_next, end), loop, done)
        j.add_incoming(start, entry)
        j.add_incoming(j_next, body_end)
        builder.position_at_end(done)

    def _bytes(self, pointer):
        return self.builder.bitcast(pointer, ir.PointerType(ir.IntType(8)))


def for_each_pair(context, builder, dtype, end, body):
    """Emits ``body(v, j, mask)`` for the elements ``0:end`` of arrays of ``dtype``, as
    :meth:`VectorBuilder.for_each_vector` does: ``v`` a :class:`VectorBuilder` of two
    registers while whole ones fit, then of one register for the rest (at most two vectors,
    the last masked), so that a short row does not compute a half-empty pair."""
    pair = VectorBuilder(context, builder, dtype, registers=2)
    single = VectorBuilder(context, builder, dtype)
    whole = builder.mul(builder.sdiv(end, pair.const(pair.lanes)), pair.const(pair.lanes))
    pair.for_each_vector(whole, lambda j, mask: body(pair, j, mask))
    single.for_each_vector(end, lambda j, mask: body(single, j, mask), start=whole)


def for_each_pair_as(context, builder, dtype, end, flag, body_for):
    """:func:`for_each_pair` with the body ``body_for(True)`` or ``body_for(False)``, as the
    Numba boolean ``flag`` (an argument of the kernel) is when it runs: a loop for each."""
    with builder.if_else(truth(builder, flag)) as (when_true, when_false):
        with when_true:
            for_each_pair(context, builder, dtype, end, body_for(True))
        with when_false:
            for_each_pair(context, builder, dtype, end, body_for(False))


def truth(builder, value):
    """An ``i1`` from the Numba boolean ``value`` (an argument of a kernel)."""
    return builder.icmp_unsigned("!=", value, ir.Constant(value.type, 0))


def gate_rows(context, builder, arrays, args, units_of, n_blocks):
    """What a gate-pass kernel over the 1-D arrays ``args`` (of the Numba types ``arrays``)
    starts from: their data pointers, the number of units ``H`` (the length of
    ``args[units_of]``) and the offsets of the ``n_blocks`` blocks of ``H`` gates in a gate
    row."""
    pointers = [array_data(context, builder, t, a) for t, a in zip(arrays, args)]
    H = array_shape(context, builder, arrays[units_of], args[units_of])[0]
    return pointers, H, [builder.mul(ir.Constant(H.type, q), H) for q in range(n_blocks)]


def array_data(context, builder, array_type, value):
    """Pointer to the first element of the Numba array ``value``."""
    return context.make_array(array_type)(context, builder, value).data


def array_shape(context, builder, array_type, value):
    """The shape of the Numba array ``value``, as a list of ``intp`` values."""
    return cgutils.unpack_tuple(builder, context.make_array(array_type)(context, builder, value).shape, array_type.ndim)


def row_dtype(arrays):
    """The dtype of the Numba array types ``arrays`` when all are 1-D, C-contiguous and of
    one dtype, float32 or float64; else None (the IR kernels take no other)."""
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays):
        return None
    dtype = arrays[0].dtype
    if dtype not in (types.float32, types.float64) or any(a.dtype != dtype for a in arrays):
        return None
    return dtype
