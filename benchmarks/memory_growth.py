"""Does repeated fit/predict grow memory? The figures behind docs/reliability.md.

    python benchmarks/memory_growth.py [--rounds 300]

Per backend: a small ``LSTMClassifier`` is fitted (64 sequences, 2 epochs) and then predicts
512 sequences three times; after 10 warm-up rounds, ``--rounds`` more rounds run while
``tracemalloc`` traces Python and NumPy allocations. Prints the traced growth and the growth of
the process's resident memory, which also sees the compiled kernels' own allocations (Linux).
The test suite runs the same loop with bounds (tests/test_reliability.py).
"""

import argparse
import os
import tracemalloc
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import lstmcpu


def resident_bytes():
    """Resident memory of this process (Linux), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def growth(backend, rounds):
    """Traced bytes and resident bytes (or None) gained over ``rounds`` fit/predict rounds."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 12, 3)).astype(np.float32)
    y = X[:, 0, 0] > 0
    X_big = rng.standard_normal((512, 12, 3)).astype(np.float32)
    clf = lstmcpu.LSTMClassifier(hidden_size=16, max_iter=2, backend=backend, random_state=0)

    def round_trip():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        for _ in range(3):
            clf.predict(X_big)

    for _ in range(10):  # warm up: compiled code, BLAS buffers, the allocator's pools
        round_trip()
    rss_before = resident_bytes()
    tracemalloc.start()
    try:
        round_trip()
        baseline, _ = tracemalloc.get_traced_memory()
        for _ in range(rounds):
            round_trip()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_grown = None if rss_before is None else resident_bytes() - rss_before
    return current - baseline, rss_grown


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    for name in lstmcpu.available_backends():
        traced, resident = growth(name, args.rounds)
        resident = "n/a" if resident is None else f"{resident / 2**20:+.2f} MiB"
        print(f"{name:>8}: {args.rounds} rounds: traced {traced / 1024:+.1f} KiB, resident {resident}")


if __name__ == "__main__":
    main()
