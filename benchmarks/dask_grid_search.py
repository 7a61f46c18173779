"""GridSearchCV of LSTMClassifier: serial against a local dask.distributed cluster.

Task: scikit-learn's digits read as sequences (8 steps of 8 pixels), a 2 x 2 grid
(``hidden_size`` 16 or 32, ``learning_rate`` 0.003 or 0.01), 3-fold cross-validation, so 12
fits of a fixed number of epochs (``tol=0``: no early end) plus the refit. Configurations:

serial
    ``GridSearchCV(n_jobs=None)`` in this process.
processes
    ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` with
    ``NUMBA_NUM_THREADS=1`` in the workers, through ``joblib.parallel_backend("dask")``:
    the setting docs/scale-out.md recommends.
threads
    ``LocalCluster(n_workers=1, threads_per_worker=2, processes=False)``: two fits at a time
    in threads of this process, sharing its GIL.

The clusters start (and their workers import lstmcpu, with one warm-up search each) before
the clock runs; the configurations then alternate for ``--repeats`` rounds and the script
prints the median wall time of each, its speedup over serial, the median CPU time of the
search (this process plus the worker processes: what the fan-out costs in work) and the
load average. The speedup needs idle cores: on a machine that other jobs keep busy, CPU time
shows whether the work grew, wall time only how the cores were shared.

Run: ``python benchmarks/dask_grid_search.py [--repeats 5] [--epochs 30]``
"""

import argparse
import os
import statistics
import time
import warnings

import dask
import joblib
import numpy as np
from dask.distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from lstmcpu import LSTMClassifier

GRID = {"hidden_size": [16, 32], "learning_rate": [0.003, 0.01]}


def search(X, y, epochs, backend, n_jobs):
    est = LSTMClassifier(max_iter=epochs, tol=0.0, n_iter_no_change=epochs + 1, backend=backend, random_state=0)
    return GridSearchCV(est, GRID, cv=3, n_jobs=n_jobs).fit(X, y)


def _cpu_seconds():
    return time.process_time()


def cpu_time(client):
    """CPU seconds used so far by this process and, with a client, by its worker processes."""
    workers = client.run(_cpu_seconds).values() if client is not None else []
    return time.process_time() + sum(workers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30, help="epochs of every fit")
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # ConvergenceWarning of the fixed-epoch fits, dask's start-up

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8).astype(np.float32)

    def serial():
        return search(X, y, args.epochs, args.backend, None)

    def on(client):
        def run():
            with joblib.parallel_backend("dask", client=client):  # noqa: B023 (called in the loop)
                return search(X, y, args.epochs, args.backend, -1)

        return run

    loopback = {"host": "127.0.0.1", "dashboard_address": None}
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ.NUMBA_NUM_THREADS": 1}),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, **loopback) as procs,
        Client(procs) as procs_client,
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as threads,
        Client(threads) as threads_client,
    ):  # fmt: skip
        runs = {"serial": serial, "processes": on(procs_client), "threads": on(threads_client)}
        # Threads of the in-process cluster count in this process's CPU time.
        clients = {"serial": None, "processes": procs_client, "threads": None}
        reference = {name: run().best_params_ for name, run in runs.items()}  # warm-up
        assert all(params == reference["serial"] for params in reference.values()), reference
        times = {name: [] for name in runs}
        cpu = {name: [] for name in runs}
        load = [os.getloadavg()[0]]
        for _ in range(args.repeats):
            for name, run in runs.items():
                start, start_cpu = time.perf_counter(), cpu_time(clients[name])
                run()
                times[name].append(time.perf_counter() - start)
                cpu[name].append(cpu_time(clients[name]) - start_cpu)
            load.append(os.getloadavg()[0])

    base = statistics.median(times["serial"])
    print(f"GridSearchCV, 2 x 2 grid, cv=3, {args.epochs} epochs per fit, backend={args.backend}, "
          f"{os.cpu_count()} CPUs, load average {min(load):.1f}-{max(load):.1f}")  # fmt: skip
    print("| configuration | median wall s | min wall s | speedup over serial | median CPU s |")
    print("|---|---:|---:|---:|---:|")
    for name, ts in times.items():
        median = statistics.median(ts)
        print(f"| {name} | {median:.2f} | {min(ts):.2f} | {base / median:.2f}x | {statistics.median(cpu[name]):.2f} |")


if __name__ == "__main__":
    main()
