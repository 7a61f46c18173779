"""Whether a single sequence's steps should be split between two threads, from how fast the
two ways ran lately (:class:`SplitTimes`).

Splitting a step's units pays only when the other core is free at every step: on a shared
machine whose host runs other work on the second core, the same split call took 1.4 ms in
one minute and 2.7 in the next, against 1.5 on one thread (the online preset's forward, the
2-core Xeon VM). Both ways give the same results to the bit, so the backend times them and
takes the faster, and tries the other again now and then, as the load changes.
"""

import statistics
import threading
from collections import deque

#: Calls that could split, of one kind, between two tries of the way not taken.
RETRY_CALLS = 16
#: Latest calls of each way whose median time decides.
SAMPLES = 3


class SplitTimes:
    """Seconds per step of the latest calls of each kind (a key: direction, shapes, dtype,
    cache) that split their steps between two threads, and of those that did not.

    The first call of each way is not counted: it pays for what only a first call does
    (compiling the kernels, up to 12 s, or loading them from the cache, and starting the
    pool's thread).

    Examples
    --------
    >>> times = SplitTimes()
    >>> times.choose("forward")  # untried: split
    True
    >>> times.record("forward", True, 0.3)  # the first split call: not counted
    >>> times.choose("forward")
    True
    >>> times.record("forward", True, 2.7e-5)
    >>> times.choose("forward")  # then one thread, twice
    False
    >>> times.record("forward", False, 0.1)
    >>> times.record("forward", False, 1.5e-5)
    >>> times.choose("forward")  # then the faster
    False
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._samples = {}  # key -> (split times, one-thread times), each the latest SAMPLES
        self._calls = {}  # key -> calls since the slower way was last tried
        self._first_done = set()  # (key, way) whose first call is behind

    def choose(self, key):
        """Whether the next call of kind ``key`` should split: each way until it has a time
        that counts (split first), then the way of the lower median time, except every
        :data:`RETRY_CALLS`-th call, which times the other way again."""
        with self._lock:
            split, alone = self._of(key)
            if not split or not alone:
                return not split
            faster = statistics.median(split) <= statistics.median(alone)
            calls = self._calls.get(key, 0) + 1
            self._calls[key] = 0 if calls >= RETRY_CALLS else calls
            return faster if calls < RETRY_CALLS else not faster

    def record(self, key, split, seconds_per_step):
        """Adds the time of a call of kind ``key`` that did (``split``) or did not split, but
        for the first call of each way."""
        with self._lock:
            if (key, split) not in self._first_done:
                self._first_done.add((key, split))
                return
            self._of(key)[0 if split else 1].append(seconds_per_step)

    def _of(self, key):
        """The (split, one-thread) latest times of ``key``, empty at first."""
        return self._samples.setdefault(key, (deque(maxlen=SAMPLES), deque(maxlen=SAMPLES)))
