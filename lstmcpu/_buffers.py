"""Large arrays of the compiled kernels, reused from one call to the next.

A training step allocates the same few large arrays every time (the forward cache, the gate
gradients, packed weights) and frees them at the end. glibc hands freed memory at the top of
its heap back to the kernel once more than a threshold is free, so the next step gets fresh
pages and takes a page fault on each first write: for the small benchmark preset (T=50, B=32,
I=32, H=64) about 1100 faults per forward + backward, 2.5-3 ms of a 6.5 ms step on the
development VM. :data:`BUFFERS` keeps the memory of freed arrays and hands it out again for
the next request of the same size, so a training loop stops faulting after its first step.

An array from :meth:`BufferCache.empty` owns nothing itself: its memory stays with the cache,
and it becomes reusable only once the array *and every view of it* are gone (a weak reference
to the one object all the views keep alive tells the cache). Callers therefore use these
arrays like any NumPy array, keep them as long as they like, and never return anything.

Idle memory is bounded (:data:`IDLE_LIMIT_BYTES`, least recently freed dropped first), and
:meth:`BufferCache.release` frees all of it, e.g. after training.

Every array with data starts on a 64-byte boundary (:data:`ALIGN`), as the kernels' 512-bit
loads want: malloc and NumPy give 16-byte alignment, and a 64-byte load from such an address
spans two cache lines. Measured on the Intel Xeon (Cython backend, one thread, the same
calls alternating between 64-byte and 16-byte alignment, `benchmarks/page_faults.py`'s
presets): 16-byte alignment made the online forward 1.41 times slower, the online training
step 1.36, the medium forward 1.11, the small forward 1.06.
"""

import ctypes
import math
import mmap
import os
import sys
import threading
import weakref

import numpy as np

__all__ = ["ALIGN", "BUFFERS", "BufferCache", "IDLE_LIMIT_BYTES", "MIN_BYTES", "release_buffers"]

#: Alignment, in bytes, of every array the cache hands out: a cache line, one 512-bit vector.
ALIGN = 64

# Smaller arrays come from malloc's heap (below glibc's initial mmap threshold) and are
# recycled by malloc itself; caching them would only add overhead.
MIN_BYTES = 128 * 1024
# The most idle memory the cache keeps: a small or medium preset's training step (5 and
# 80 MB) fits; a large one's (about 600 MB) is mostly huge pages, whose faults cost little
# per byte.
IDLE_LIMIT_BYTES = 128 * 1024 * 1024


class BufferCache:
    """Hands out arrays whose memory is reused once they are garbage.

    Parameters
    ----------
    idle_limit : int, default=IDLE_LIMIT_BYTES
        Most bytes kept for reuse while no array uses them.
    min_bytes : int, default=MIN_BYTES
        Smaller requests get a plain ``np.empty``.

    Examples
    --------
    >>> import numpy as np
    >>> cache = BufferCache(min_bytes=0)
    >>> a = cache.empty((256, 256), np.float32)
    >>> address = a.ctypes.data
    >>> del a  # the memory is idle now ...
    >>> b = cache.empty((512, 128), np.float32)  # ... and this request has the same size
    >>> b.ctypes.data == address
    True
    >>> view = b[1:]
    >>> del b  # the view still uses the memory: not reused
    >>> cache.empty((512, 128), np.float32).ctypes.data == address
    False
    """

    def __init__(self, idle_limit=IDLE_LIMIT_BYTES, min_bytes=MIN_BYTES):
        self.idle_limit = idle_limit
        self.min_bytes = min_bytes
        self._lock = threading.RLock()
        self._idle = []  # (mapping, offset of its first aligned byte), the most recently freed last
        self._idle_bytes = 0
        self._in_use = {}  # id of a weak reference to an owner -> (the reference, its memory)

    # Measured on the 2-core Xeon, a request served from idle memory and the release of
    # its array: 9.3 us with the array sliced out of its owner and ``weakref.finalize`` on
    # the owner, 6.2 with the array built straight on the owner's buffer and a plain weak
    # reference; a small request 3.6 -> 2.4 us. A 2-thread single-sequence forward asks
    # for 9 arrays.

    def empty(self, shape, dtype):
        """An uninitialised C-contiguous array, like ``np.empty(shape, dtype)``, that starts
        on an :data:`ALIGN`-byte boundary (an empty array is ``np.empty``'s: the kernels
        pass arrays of no step where a call keeps no cache)."""
        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes == 0:  # no data to align
            return np.empty(shape, dtype)
        if nbytes < self.min_bytes:
            raw = np.empty(nbytes + ALIGN, np.uint8)
            return np.ndarray(shape, dtype, buffer=raw, offset=_aligned_offset(raw))
        memory = self._take(nbytes + ALIGN) or _new_memory(nbytes + ALIGN)
        # Every view of ``owner`` (and of the arrays made from it) keeps ``owner`` alive,
        # because its base is not an ndarray: when it dies, nothing uses the memory.
        owner = np.frombuffer(memory[0], np.uint8)
        reference = weakref.ref(owner, self._owner_died)
        self._in_use[id(reference)] = (reference, memory)
        return np.ndarray(shape, dtype, buffer=owner, offset=memory[1])

    def zeros(self, shape, dtype):
        """A zero-filled array, like ``np.zeros(shape, dtype)``."""
        out = self.empty(shape, dtype)
        out.fill(0)
        return out

    @property
    def idle_bytes(self):
        """Bytes kept for reuse that no array uses now."""
        return self._idle_bytes

    def release(self):
        """Free the idle memory (arrays still in use keep theirs and return it later)."""
        with self._lock:
            self._idle.clear()
            self._idle_bytes = 0

    # The idle mappings are ALIGN bytes longer than the arrays they held; idle_bytes
    # counts what the arrays used.

    def _take(self, size):
        with self._lock:
            for k in range(len(self._idle) - 1, -1, -1):
                if len(self._idle[k][0]) == size:
                    self._idle_bytes -= size - ALIGN
                    return self._idle.pop(k)
        return None

    def _owner_died(self, reference):
        # Called by the garbage collector, in whichever thread drops the last view.
        _, memory = self._in_use.pop(id(reference))
        with self._lock:
            if len(memory[0]) - ALIGN > self.idle_limit:
                return
            self._idle.append(memory)
            self._idle_bytes += len(memory[0]) - ALIGN
            while self._idle_bytes > self.idle_limit:
                self._idle_bytes -= len(self._idle.pop(0)[0]) - ALIGN

    def _reset_lock(self):
        self._lock = threading.RLock()


def _aligned_offset(raw):
    """Offset of the first byte of the uint8 array ``raw`` that lies on an ALIGN-byte
    boundary."""
    # raw's address, read through a ctypes view of its buffer: 0.36 us against 1.1-1.9
    # for raw.ctypes.data, which builds a ctypes helper object
    return -ctypes.addressof(ctypes.c_char.from_buffer(raw)) % ALIGN


# New memory is an anonymous mapping of its own, fresh pages from the kernel, not malloc's:
# once a process has freed a large block, glibc serves large requests from its heap (its
# mmap threshold rises to the block's size), out of pages that earlier arrays used, in any
# physical order. The kernels read packed weights from L2 at every step, and a matrix on
# such pages can lose to cache-set conflicts: measured on the 2-core Xeon (float32, one
# thread, processes in turn), a 1 MiB panel product (a step of the online preset) 8.4-10.4
# us on fresh pages against 15.9-18.9 on a copy in a fragmented heap, and in one process
# the online preset's training step 3.40-3.58 ms with w_hh on fresh pages against
# 3.90-4.26 with it on heap copies (4 of 6 copies slow).
_ANONYMOUS = {} if sys.platform == "win32" else {"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS}


def _new_memory(size):
    """An anonymous memory mapping of ``size`` bytes (fresh pages, see above; its memory
    never moves, and goes back to the system when the mapping is garbage), or a bytearray
    where the system refuses one more mapping (Linux allows 65530 by default), and the
    offset of its first aligned byte."""
    try:
        memory = mmap.mmap(-1, size, **_ANONYMOUS)
    except OSError:
        memory = bytearray(size)  # exported, it cannot be resized: its memory never moves either
    return memory, _aligned_offset(np.frombuffer(memory, np.uint8))


BUFFERS = BufferCache()
# A child forked while another thread held the lock would wait for it forever.
os.register_at_fork(after_in_child=BUFFERS._reset_lock)


def release_buffers():
    """Free the memory lstmcpu keeps for reuse between kernel calls.

    The compiled backends keep the memory of their large arrays (up to 128 MiB not in use)
    so that repeated training steps do not fault in fresh pages; call this after training
    to give it back. Arrays still in use are not affected.

    Examples
    --------
    >>> import lstmcpu
    >>> lstmcpu.release_buffers()
    """
    BUFFERS.release()
