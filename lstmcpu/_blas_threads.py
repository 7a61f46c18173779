"""BLAS on one thread while lstmcpu trains or predicts, from whichever Python threads call it.

A recurrent step multiplies small matrices (one time step of one minibatch). BLAS threads only
add synchronisation there, and on a busy machine they make training tens of times slower, so
the estimators run BLAS on one thread and take their parallelism elsewhere (several Python
threads calling ``predict`` at once, the kernels releasing the GIL).

The BLAS thread count is process-wide state. :data:`ONE_BLAS_THREAD` is a context manager
shared by every thread: the first caller to enter limits BLAS to one thread, the last to leave
restores what the first found, so overlapping calls from several threads neither fight over
the setting nor leave the process single-threaded.

threadpoolctl (3.8 and later) lets only one *controlling* Python thread change OpenBLAS's
process-wide setting and silently ignores the others; the thread that set a limit stays in
control until it clears it. A limit set in one thread and restored in another (the last
caller to leave is not always the first to enter) would therefore be lost, and calls from
worker threads would run BLAS with all its threads (measured: 8 ``predict`` calls over 2
threads took 1.5-5 s instead of 0.08-0.3 s). So, under this module's lock, each change
first releases OpenBLAS control, then takes it for the change, then releases it again.
"""

import functools
import os
import threading

import threadpoolctl
from threadpoolctl import ThreadpoolController

__all__ = ["ONE_BLAS_THREAD", "blas_threads", "thread_budget"]


@functools.lru_cache(maxsize=None)
def _blas_libraries():
    """threadpoolctl's controllers of the loaded BLAS libraries, found once (inspecting the
    loaded libraries costs ~0.2 ms): all of them, and those SciPy ships (what
    ``scipy.linalg.cython_blas``, hence the compiled kernels, calls)."""
    libs = ThreadpoolController().select(user_api="blas")
    scipy_libs = [c for c in libs.lib_controllers if "scipy" in os.path.basename(os.path.dirname(c.filepath))]
    return libs, scipy_libs or libs.lib_controllers


def blas_threads():
    """The thread limit of the BLAS the compiled kernels call: what ``threadpool_limits``,
    ``OPENBLAS_NUM_THREADS`` or :data:`ONE_BLAS_THREAD` set; 1 if unknown (about 2.5 µs)."""
    return min((c.get_num_threads() for c in _blas_libraries()[1]), default=1)


def thread_budget():
    """Threads lstmcpu's own compiled loops may use: the BLAS limit the user set, even while
    :data:`ONE_BLAS_THREAD` holds BLAS itself at one thread (the estimators keep BLAS's
    workers out of the way of the kernels' own threads, not the user's cores)."""
    found = ONE_BLAS_THREAD.threads_found
    return blas_threads() if found is None else found


def _release_openblas_control():
    """Let the next thread that changes OpenBLAS's limit take control (threadpoolctl >= 3.8;
    older versions have no controlling thread and nothing to release)."""
    clear = getattr(threadpoolctl.OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


class _OneBLASThread:
    """Context manager: BLAS on one thread while any thread of the process is inside it.

    Examples
    --------
    >>> from threadpoolctl import threadpool_info
    >>> from lstmcpu._blas_threads import ONE_BLAS_THREAD
    >>> with ONE_BLAS_THREAD:
    ...     print({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
    {1}
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._active = 0
        self._restore = None  # (controller, thread count) pairs to set back on the last exit
        #: The BLAS limit found on entry while a limit is in force (else None).
        self.threads_found = None

    def __enter__(self):
        with self._lock:
            if self._active == 0:
                controllers = _blas_libraries()[0].lib_controllers
                found = [(c, c.get_num_threads()) for c in controllers]
                # Nothing to change (and ~12 µs saved per call) when BLAS already has one thread.
                if any(n not in (1, None) for _, n in found):
                    self.threads_found = blas_threads()
                    # Each library's own setter (~1 µs) rather than threadpoolctl's
                    # ``limit``, which inspects every library again (~45 µs a call).
                    _set_threads((c, 1) for c, n in found if n is not None)
                    self._restore = found
            self._active += 1
        return self

    def __exit__(self, *exc_info):
        with self._lock:
            self._active -= 1
            if self._active == 0 and self._restore is not None:
                _set_threads(self._restore)
                self._restore = None
                self.threads_found = None


def _set_threads(settings):
    """``controller.set_num_threads(n)`` for each ``(controller, n)`` of ``settings`` whose
    ``n`` is known (a library that cannot tell its count is left alone), with OpenBLAS's
    control released before and after (see the module's docstring)."""
    _release_openblas_control()
    for controller, n in settings:
        if n is not None:
            controller.set_num_threads(n)
    _release_openblas_control()


#: The process's one instance; ``with ONE_BLAS_THREAD:`` around kernel calls.
ONE_BLAS_THREAD = _OneBLASThread()
