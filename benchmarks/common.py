"""What the asv benchmarks run over, and the base class of the layer benchmarks.

The parameters are fixed when asv imports this module, so a backend that becomes available
(a new registered backend, a built extension) is benchmarked without editing anything here.
Shapes are the presets of the comparison command (:data:`lstmcpu.bench.PRESETS`) and cells
are the ones it knows (:data:`lstmcpu.bench.CELLS`); a backend that cannot run a cell or
dtype skips that combination.

Environment variables
---------------------
LSTMCPU_ASV_PRESETS=small,medium,online
    Comma-separated presets to run; the default leaves out ``large`` (T=200, B=128, I=256,
    H=512: seconds per training step on the NumPy backend), so that a 2-core machine runs
    the suite in minutes. ``small,medium,online,large`` is the large profile; CI's smoke
    pass runs ``small,online``.
LSTMCPU_ASV_THREADS=N
    BLAS, OpenMP and Numba threads of every benchmark (default 1, the least noisy).
"""

import os
import sys

import numpy as np
from threadpoolctl import threadpool_limits

import lstmcpu
from lstmcpu import bench

BACKENDS = lstmcpu.available_backends()
DTYPES = ["float32", "float64"]
CELLS = list(bench.CELLS)
PRESETS = [name.strip() for name in os.environ.get("LSTMCPU_ASV_PRESETS", "small,medium,online").split(",")]
if unknown := sorted(set(PRESETS) - set(bench.PRESETS)):
    raise ValueError(f"LSTMCPU_ASV_PRESETS names unknown presets {unknown}; choose from {list(bench.PRESETS)}")


def limit_threads():
    """Limit BLAS/OpenMP (and Numba, when loaded) to ``LSTMCPU_ASV_THREADS`` threads.

    Returns the :class:`threadpoolctl.threadpool_limits` object; call its
    ``restore_original_limits()`` to undo.
    """
    threads = int(os.environ.get("LSTMCPU_ASV_THREADS", "1"))
    if "numba" in sys.modules:  # loaded by the numba backend; never imported just for this
        numba = sys.modules["numba"]
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return threadpool_limits(limits=threads)


def require(backend, cell, dtype):
    """asv's skip: raise NotImplementedError when ``backend`` cannot run ``cell`` in ``dtype``."""
    if not lstmcpu.get_backend(backend).can_run(cell, dtype):
        raise NotImplementedError(f"backend {backend!r} does not run {cell} in {dtype}")


def make_layer(cell, preset, backend, dtype):
    """The one-layer lstmcpu layer of ``cell`` with the sizes of ``preset``."""
    _, _, I, H = bench.PRESETS[preset]
    return getattr(lstmcpu, bench.CELLS[cell][0])(I, H, dtype=dtype, backend=backend, random_state=0)


class LayerBenchmark:
    """Base of the layer benchmarks: one recurrent layer per (backend, dtype, preset, cell).

    ``setup`` builds the runners of :func:`lstmcpu.bench.lstmcpu_runner` for the modes in
    :attr:`modes` ("forward": inference; "train": forward plus backward) as ``self.runners``.
    """

    params = [BACKENDS, DTYPES, PRESETS, CELLS]
    param_names = ["backend", "dtype", "preset", "cell"]
    modes = ("forward", "train")

    def setup(self, backend, dtype, preset, cell):
        self.limits = limit_threads()  # first: asv calls teardown after a skip too
        require(backend, cell, dtype)
        T, B, I, H = bench.PRESETS[preset]
        rng = np.random.default_rng(0)
        self.runners = {
            mode: bench.lstmcpu_runner(backend, cell, mode, T, B, I, H, np.dtype(dtype).type, rng)
            for mode in self.modes
        }

    def teardown(self, *params):
        self.limits.restore_original_limits()
