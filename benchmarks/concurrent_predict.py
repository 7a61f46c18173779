"""How much faster do several Python threads predicting on one fitted estimator go?

    python benchmarks/concurrent_predict.py [--calls 8] [--threads 2] [--repeats 15]

Fits one small ``LSTMClassifier`` per backend, then makes ``--calls`` calls to ``predict``
on the same fitted estimator (T=50, 512 sequences of 8 features, hidden_size=64), first one
after another in the main thread, then spread over ``--threads`` Python threads. The kernels
release the GIL for their time loop, so on a machine with that many idle cores the threaded
run should approach a ``--threads``-fold speedup. The two are timed in turn in every repeat
(a noisy neighbour slows both alike); the script prints the median wall time of each and
their ratio, and checks that the threads' predictions equal the serial ones.
"""

import argparse
import os
import statistics
import threading
import time

import numpy as np

import lstmcpu

T, N, F, H = 50, 512, 8, 64


def fitted(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, T, F)).astype(np.float32)
    y = X[:, :5, 0].sum(axis=1) > 0
    clf = lstmcpu.LSTMClassifier(hidden_size=H, max_iter=2, backend=backend, random_state=0)
    return clf.fit(X, y)


def serial(clf, inputs):
    return [clf.predict(X) for X in inputs]


def threaded(clf, inputs, n_threads):
    """``predict`` on every input, the inputs dealt out round-robin to ``n_threads`` threads."""
    results = [None] * len(inputs)

    def work(first):
        for k in range(first, len(inputs), n_threads):
            results[k] = clf.predict(inputs[k])

    threads = [threading.Thread(target=work, args=(first,)) for first in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((N, T, F)).astype(np.float32) for _ in range(args.calls)]
    print(f"{args.calls} predict calls of {N} sequences x {T} steps, hidden_size={H}, float32; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; median of {args.repeats}")
    print(f"{'backend':>8} {'serial ms':>10} {f'{args.threads} threads ms':>14} {'speedup':>8}")
    for name in lstmcpu.available_backends():
        clf = fitted(name)
        expected = serial(clf, inputs)
        got = threaded(clf, inputs, args.threads)
        if not all(np.array_equal(a, b) for a, b in zip(expected, got)):
            raise AssertionError(f"{name}: threaded predictions differ from serial ones")
        times = {"serial": [], "threaded": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            serial(clf, inputs)
            times["serial"].append(time.perf_counter() - start)
            start = time.perf_counter()
            threaded(clf, inputs, args.threads)
            times["threaded"].append(time.perf_counter() - start)
        one, many = (1e3 * statistics.median(times[k]) for k in ("serial", "threaded"))
        print(f"{name:>8} {one:10.1f} {many:14.1f} {one / many:7.2f}x")


if __name__ == "__main__":
    main()
