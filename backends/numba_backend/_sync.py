"""Two threads sharing one time loop, step by step (a batch too small to cut into chunks,
whose units are split instead): :func:`team_parts` before each step and
:func:`team_step_done` after it, around the step's work in a loop of the caller's (a
compiled function that received the step function as an argument could not be cached:
Numba embeds the function object, and compiled it again in every process).

The calling thread leads: it publishes each step's number, both threads run their part of
the step, and the leader waits for the other's part before the next step. Each side spins
briefly, then gives its core away at every further poll, so that a thread whose partner
was descheduled on a busy machine does not hold a core. When the leader has had to give
its core away waiting for the other thread more than :data:`MAX_LATE` times (more busy
threads than cores: every step then costs a trip through the scheduler), it stops the
other thread and runs the remaining steps, both parts, alone.

Numba has no atomics built in: :func:`atomic_load` and :func:`atomic_store` emit LLVM's
sequentially consistent atomic load and store of an int64 array's element.
"""

import platform
import sys
import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._activations import JIT
from ._vectors import array_data

#: Polls of a wait before it gives the core away: an atomic load and a pause each, 21 ns on
#: the 2-core Xeon (86 us in all, several steps; shorter where ``pause`` is, as on Zen).
SPINS = 2**12
#: Waits for the other thread that may give the core away before the leader goes alone.
MAX_LATE = 4
# Slots of ``progress``: the step the other thread may run (STOP: none, it returns), the
# steps it has finished, and the leader's own count of late steps and whether it went alone.
START, DONE, LATE, ALONE, STOP = 0, 1, 2, 3, -1


def new_progress():
    """The ``progress`` array of one team's run."""
    return np.zeros(4, dtype=np.int64)


@njit(**JIT)
def team_parts(me, i, progress):
    """The parts ``(first, end)`` of step ``i`` that thread ``me`` runs, once it may: 0 (the
    leader, the calling thread) runs part 0, both once it goes alone; 1 runs part 1 of each
    step the leader allows, none (``first == end``: it returns) once the leader goes alone.
    A team's loop is ``for i in range(n_steps)``: these parts of step ``i``, then
    :func:`team_step_done`."""
    if me == 1:
        return (1, 2) if _wait(progress, START, i) else (1, 1)
    if progress[ALONE]:
        return (0, 2)
    atomic_store(progress, START, i)
    return (0, 1)


@njit(**JIT)
def team_step_done(me, i, progress):
    """After thread ``me``'s parts of step ``i``: the worker reports them; the leader waits
    for the worker's, and after more than :data:`MAX_LATE` waits that gave its core away,
    stops the worker and goes on alone. Every write of a step is then visible to both
    threads before either starts the next."""
    if me == 1:
        atomic_store(progress, DONE, i + 1)
    elif not progress[ALONE] and not _wait(progress, DONE, i + 1):
        progress[LATE] += 1
        if progress[LATE] > MAX_LATE:
            progress[ALONE] = 1
            atomic_store(progress, START, STOP)


@njit(**JIT)
def _wait(progress, slot, value):
    """Waits until ``progress[slot]`` is ``value`` or more, or STOP; returns False on STOP,
    and, for the DONE slot, whether the wait never had to give the core away."""
    spins = 0
    while True:
        seen = atomic_load(progress, slot)
        if seen == STOP:
            return False
        if seen >= value:
            return slot == START or spins <= SPINS
        spins += 1
        if spins > SPINS:
            yield_cpu()
        else:
            spin_pause()


def atomic_load(a, i):
    """``a[i]`` read atomically (``a`` an int64 array). This Python body runs under
    ``NUMBA_DISABLE_JIT=1`` (the GIL orders it); compiled code uses :func:`_atomic_load`."""
    return a[i]


def atomic_store(a, i, value):
    """``a[i] = value`` written atomically; see :func:`atomic_load`."""
    a[i] = value


def spin_pause():
    """Tells the core that this thread is spinning (x86 ``pause``, Arm ``yield``): the poll
    slows to the pace of the cache line it watches, and leaves the execution units to a
    hyperthread sharing the core (a VM's two vCPUs may be such twins). A no-op in Python."""


def yield_cpu():
    """Gives the core to another thread that is ready to run, if any. In Python this also
    releases the GIL, without which the partner could not advance; compiled code calls the
    C library's ``sched_yield`` (``SwitchToThread`` on Windows) directly."""
    time.sleep(0)


@overload(atomic_load)
def _atomic_load_compiled(a, i):
    return lambda a, i: _atomic_load(a, i)


@overload(atomic_store)
def _atomic_store_compiled(a, i, value):
    return lambda a, i, value: _atomic_store(a, i, value)


@overload(yield_cpu)
def _yield_cpu_compiled():
    return lambda: _yield_cpu()


@overload(spin_pause)
def _spin_pause_compiled():
    return lambda: _spin_pause()


def _element_pointer(context, builder, array_type, array, index):
    """The address of ``array[index]`` (a 1-D C-contiguous array)."""
    return builder.gep(array_data(context, builder, array_type, array), [index])


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


@intrinsic
def _yield_cpu(typingctx):
    """A call of the C library's ``sched_yield`` (``SwitchToThread`` on Windows), resolved
    by name when the code is loaded, so that the kernels stay cacheable."""

    def codegen(context, builder, signature, args):
        name = "SwitchToThread" if sys.platform == "win32" else "sched_yield"
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), name)
        builder.call(function, [])
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def _spin_pause(typingctx):
    """LLVM's spin-wait hint of the machine the code is compiled for, none elsewhere."""

    def codegen(context, builder, signature, args):
        machine = platform.machine().lower()
        if machine in ("x86_64", "amd64", "i386", "i686"):
            function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                      "llvm.x86.sse2.pause")  # fmt: skip
            builder.call(function, [])
        elif machine in ("aarch64", "arm64"):
            function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(32)]),
                                                      "llvm.aarch64.hint")  # fmt: skip
            builder.call(function, [ir.Constant(ir.IntType(32), 1)])  # hint #1: yield
        return context.get_dummy_value()

    return types.none(), codegen
