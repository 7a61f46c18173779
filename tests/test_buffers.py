"""The cache that reuses the compiled kernels' large arrays (lstmcpu/_buffers.py)."""

import gc
import mmap
import sys
import threading

import numpy as np
import pytest

import lstmcpu
from lstmcpu import _buffers
from lstmcpu._buffers import ALIGN, BUFFERS, BufferCache

from _lstm_helpers import random_problem, upstream_grads

KIB = 1024


def address(a):
    return a.__array_interface__["data"][0]


def memory_of(a):
    """The object whose memory the cache handed out as ``a`` (an array on its owner array,
    which NumPy builds on a memoryview of it)."""
    base = getattr(a.base, "base", None)
    return base.obj if isinstance(base, memoryview) else base


def test_memory_is_reused_once_the_array_is_gone():
    cache = BufferCache(min_bytes=0)
    a = cache.empty((64, 64), np.float32)
    where = address(a)
    del a
    assert cache.idle_bytes == 64 * 64 * 4
    b = cache.empty((128, 16), np.float64)  # same size in bytes, another shape and dtype
    assert address(b) == where
    assert b.shape == (128, 16) and b.dtype == np.float64 and b.flags.c_contiguous and b.flags.writeable
    assert cache.idle_bytes == 0


@pytest.mark.parametrize(
    "keep",
    [
        lambda a: a[1:],
        lambda a: a.T,
        lambda a: a.reshape(-1)[::2],
        lambda a: a.view(np.int32),
        lambda a: memoryview(a),
        lambda a: np.asarray(a[3]),
    ],
    ids=["slice", "transpose", "strided", "view-dtype", "memoryview", "asarray-row"],
)
def test_memory_is_not_reused_while_any_view_of_it_lives(keep):
    cache = BufferCache(min_bytes=0)
    a = cache.empty((32, 32), np.float32)
    a.fill(7.0)
    where = address(a)
    kept = keep(a)
    expected = np.array(kept, copy=True)
    del a
    gc.collect()
    b = cache.empty((32, 32), np.float32)
    assert address(b) != where
    b.fill(-1.0)
    np.testing.assert_array_equal(np.asarray(kept), expected)
    del kept, b
    assert cache.idle_bytes == 2 * 32 * 32 * 4


def test_small_requests_are_not_kept_for_reuse():
    cache = BufferCache(min_bytes=4 * KIB)
    a = cache.empty((10, 10), np.float64)  # 800 bytes
    assert a.shape == (10, 10) and a.dtype == np.float64
    del a
    assert cache.idle_bytes == 0


@pytest.mark.parametrize("min_bytes", [0, 4 * KIB, 1 << 30], ids=["all-kept", "mixed", "none-kept"])
def test_every_array_starts_on_a_cache_line(min_bytes):
    """The kernels' 512-bit loads and stores want 64-byte alignment: malloc gives 16."""
    cache = BufferCache(min_bytes=min_bytes)
    arrays = [cache.empty(shape, dtype) for shape in [(3,), (10, 10), (1000, 33)]
              for dtype in (np.float32, np.float64, np.int64)]  # fmt: skip
    arrays += [cache.zeros((257, 129), np.float32)]
    for a in arrays:
        assert address(a) % ALIGN == 0, (a.shape, a.dtype)
        assert a.flags.c_contiguous and a.flags.writeable
    del arrays
    again = cache.empty((1000, 33), np.float32)  # reused memory keeps its alignment
    assert address(again) % ALIGN == 0
    empty = cache.empty((0, 7, 3), np.float64)  # no data: nothing to align
    assert empty.shape == (0, 7, 3) and empty.dtype == np.float64 and empty.flags.c_contiguous


def test_kept_arrays_live_on_fresh_pages_of_a_mapping_of_their_own():
    """Not malloc's heap, whose recycled pages can put a matrix read at every step into
    conflicting cache sets (see _new_memory)."""
    cache = BufferCache(min_bytes=4 * KIB)
    a, b = cache.empty((100, 100), np.float32), cache.empty((100, 100), np.float32)
    assert isinstance(memory_of(a), mmap.mmap) and memory_of(a) is not memory_of(b)
    small = cache.empty((10,), np.float32)
    assert not isinstance(memory_of(small), mmap.mmap)


def test_a_refused_mapping_falls_back_to_a_bytearray(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(_buffers.mmap, "mmap", refuse)
    cache = BufferCache(min_bytes=0)
    a = cache.empty((300, 7), np.float64)
    assert isinstance(memory_of(a), bytearray) and address(a) % ALIGN == 0
    a[:] = 1.5
    where = address(a)
    del a
    assert address(cache.empty((7, 300), np.float64)) == where  # kept for reuse like any other


def test_idle_memory_is_bounded_and_the_least_recently_freed_goes_first():
    cache = BufferCache(idle_limit=10 * KIB, min_bytes=0)
    arrays = [cache.empty(4 * KIB, np.uint8) for _ in range(3)]
    where = [address(a) for a in arrays]
    del arrays[0]  # freed first
    del arrays[0]
    del arrays[0]  # third: 12 KiB idle > 10 KiB, the first is dropped
    assert cache.idle_bytes == 8 * KIB
    again = cache.empty(4 * KIB, np.uint8)
    assert address(again) == where[2]  # the most recently freed
    assert cache.idle_bytes == 4 * KIB
    big = cache.empty(11 * KIB, np.uint8)
    del big  # larger than the limit: never kept
    assert cache.idle_bytes <= 10 * KIB


def test_release_frees_idle_memory():
    cache = BufferCache(min_bytes=0)
    a = cache.empty(1000, np.float32)
    del a
    assert cache.idle_bytes == 4000
    cache.release()
    assert cache.idle_bytes == 0


def test_zeros_are_zero_on_reused_memory():
    cache = BufferCache(min_bytes=0)
    a = cache.empty((50, 50), np.float64)
    a.fill(np.nan)
    del a
    z = cache.zeros((50, 50), np.float64)
    assert np.all(z == 0)


def test_concurrent_users_never_share_memory():
    cache = BufferCache(min_bytes=0)
    barrier = threading.Barrier(4)
    failures = []

    def work(k):
        for round_ in range(200):
            a = cache.empty((16, 16), np.float64)
            a.fill(k * 1000 + round_)
            if round_ % 50 == 0:
                barrier.wait()
            if not np.all(a == k * 1000 + round_):
                failures.append((k, round_))
            del a

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_public_release_empties_the_shared_cache():
    a = BUFFERS.empty(BUFFERS.min_bytes, np.uint8)
    del a
    assert BUFFERS.idle_bytes >= BUFFERS.min_bytes
    lstmcpu.release_buffers()
    assert BUFFERS.idle_bytes == 0


def test_cython_training_steps_reuse_the_forward_cache_and_results_do_not_change():
    """Backward spends the cache; the next forward gets its memory back, and the results
    are those of the first step."""
    backend = lstmcpu.get_backend("cython")
    T, B, I, H = 20, 16, 8, 64  # gates: 20 * 16 * 256 * 4 bytes = 320 KiB, above MIN_BYTES
    p = random_problem(T, B, I, H, np.float32)
    grads = upstream_grads(T, B, H, np.float32)
    args = (p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["c0"])

    lstmcpu.release_buffers()
    y, h_n, c_n, cache = backend.forward(*args)
    where = address(cache.gates)
    first = [y.copy()] + [g.copy() for g in backend.backward(*grads, cache)]
    assert cache.gates is None  # spent: its memory held the gate gradients ...
    assert BUFFERS.idle_bytes >= T * B * 4 * H * 4  # ... and is kept for reuse
    y, h_n, c_n, cache = backend.forward(*args)
    assert address(cache.gates) == where
    again = [y] + list(backend.backward(*grads, cache))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts page faults with getrusage")
def test_cython_training_steps_take_no_fresh_pages():
    """The point of the cache: a training loop stops faulting in pages after its first step
    (the small benchmark preset took ~1100 faults per step, 40% of its time)."""
    from benchmarks.page_faults import measure

    seconds, forward_faults, backward_faults = measure("cython", "small", steps=10)
    # The step's large arrays alone span 1100 pages; what is left is the interpreter's own.
    assert forward_faults < 25 and backward_faults < 25, (forward_faults, backward_faults)
