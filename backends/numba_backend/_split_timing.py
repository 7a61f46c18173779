"""Whether a single sequence's steps should be split between two threads, from how fast the
two ways ran lately (:class:`SplitTimes`).

Splitting a step's units pays only when the other core is free at every step: on a shared
machine whose host runs other work on the second core, the same split call took 1.4 ms in
one minute and 2.7 in the next, against 1.5 on one thread (the online preset's forward, the
2-core Xeon VM). Both ways give the same results to the bit, so the backend times them and
takes the faster, and tries the other again now and then, as the load changes.

Each way is judged by its fastest call among the latest few: on this machine a call is only
ever slowed down, never sped up, by what else runs, so the fastest recent call tells what
the way can do now. A median judged by a run of slow calls instead: after another library's
threads had run (PyTorch's spin for a while after their work), the first split calls took
3-5 ms instead of 1.3-1.9, the median turned to one thread (2.0-2.1 ms) and held there for
16-32 calls (the online preset's forward at 2 threads, in blocks of 20 calls between blocks
of PyTorch and Cython calls: 61 and 32 of 140 calls split by the median).

The first call after a change of way does not count either: the other thread has slept
and its cache holds none of the call's data, and a split call after 15 calls on one thread
took 2.7 ms against 1.2-1.4 for the next (same setting), so single tries kept the split
way looking slow for good. The way not taken is therefore tried two calls in a row, and
the second counts.
"""

import threading
from collections import deque

#: The way not taken is tried at the RETRY_CALLS-th call of one kind that could split and
#: at the next (the second is timed), then the count starts again.
RETRY_CALLS = 16
#: Latest calls of each way whose fastest decides.
SAMPLES = 3


class SplitTimes:
    """Seconds per step of the latest calls of each kind (a key: direction, shapes, dtype,
    cache) that split their steps between two threads, and of those that did not.

    The first call of each way is not counted, nor any call that changes way: it pays for
    what only a first call does (compiling the kernels, up to 12 s, or loading them from the
    cache, starting or waking the pool's thread, bringing the weights to its cache).

    Examples
    --------
    >>> times = SplitTimes()
    >>> times.choose("forward")  # untried: split
    True
    >>> times.record("forward", True, 0.3)  # the first split call: not counted
    >>> times.choose("forward")
    True
    >>> times.record("forward", True, 2.7e-5)
    >>> times.choose("forward")  # then one thread, its first call not counted either
    False
    >>> times.record("forward", False, 0.1)
    >>> times.choose("forward")
    False
    >>> times.record("forward", False, 1.5e-5)
    >>> times.choose("forward")  # then the faster
    False
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._samples = {}  # key -> (split times, one-thread times), each the latest SAMPLES
        self._calls = {}  # key -> calls since the slower way was last tried
        self._last = {}  # key -> (the way of the latest call, whether its time counts)

    def choose(self, key):
        """Whether the next call of kind ``key`` should split: each way until it has a time
        that counts (split first), then the way of the faster recent call, except the
        :data:`RETRY_CALLS`-th call and the next, which time the other way again."""
        with self._lock:
            split, alone = self._of(key)
            if not split or not alone:
                way = not split
            else:
                faster = min(split) <= min(alone)
                calls = self._calls.get(key, 0) + 1
                self._calls[key] = 0 if calls > RETRY_CALLS else calls
                way = faster if calls < RETRY_CALLS else not faster
            previous_way = self._last.get(key, (None, False))[0]
            self._last[key] = (way, way == previous_way)  # a change of way does not count
            return way

    def record(self, key, split, seconds_per_step):
        """Adds the time of a call of kind ``key`` that did (``split``) or did not split,
        unless it was the first of its way since the other (see :meth:`choose`)."""
        with self._lock:
            if self._last.get(key) == (split, True):
                self._of(key)[0 if split else 1].append(seconds_per_step)

    def _of(self, key):
        """The (split, one-thread) latest times of ``key``, empty at first."""
        return self._samples.setdefault(key, (deque(maxlen=SAMPLES), deque(maxlen=SAMPLES)))
