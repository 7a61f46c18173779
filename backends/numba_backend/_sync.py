"""Step-by-step synchronisation of two threads that share one time loop (a batch too small
to cut into chunks, whose units are split instead): each thread publishes the steps it has
finished in its own slot of a small int64 array, and waits by spinning until its partner
has finished as many. Numba has no atomics built in: :func:`atomic_load` and
:func:`atomic_store` emit LLVM's sequentially consistent atomic load and store."""

import time

from numba import njit, types
from numba.extending import intrinsic, overload

from ._activations import JIT


@njit(**JIT)
def finish_step(progress, me, step):
    """Publishes that thread ``me`` (0 or 1) has finished ``step`` steps, then waits until the
    other thread has too: every write of those steps, by either thread, is then visible."""
    atomic_store(progress, me, step)
    while atomic_load(progress, 1 - me) < step:
        pause()


def atomic_load(a, i):
    """``a[i]`` read atomically (``a`` an int64 array). This Python body runs under
    ``NUMBA_DISABLE_JIT=1`` (the GIL orders it); compiled code uses :func:`_atomic_load`."""
    return a[i]


def atomic_store(a, i, value):
    """``a[i] = value`` written atomically; see :func:`atomic_load`."""
    a[i] = value


def pause():
    """A hint that the caller is spinning. In Python it gives up the GIL, without which the
    partner could not advance; compiled code needs nothing."""
    time.sleep(0)


@overload(atomic_load)
def _atomic_load_compiled(a, i):
    return lambda a, i: _atomic_load(a, i)


@overload(atomic_store)
def _atomic_store_compiled(a, i, value):
    return lambda a, i, value: _atomic_store(a, i, value)


@overload(pause)
def _pause_compiled():
    return lambda: None


def _element_pointer(context, builder, array_type, array, index):
    """The address of ``array[index]`` (a 1-D C-contiguous array)."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


def _check(a, i):
    return isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and a.dtype == types.int64 and isinstance(
        i, types.Integer
    )


@intrinsic
def _atomic_load(typingctx, a, i):
    """``load atomic i64 seq_cst`` of ``a[i]``."""
    if not _check(a, i):
        return None

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, a, args[0], args[1])
        return builder.load_atomic(pointer, "seq_cst", 8)

    return types.int64(a, i), codegen


@intrinsic
def _atomic_store(typingctx, a, i, value):
    """``store atomic i64 seq_cst`` of ``value`` to ``a[i]``."""
    if not (_check(a, i) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, a, args[0], args[1])
        value = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(value, pointer, "seq_cst", 8)
        return context.get_dummy_value()

    return types.none(a, i, value), codegen
