"""When does the Numba backend gain from cutting a batch into chunks, one per thread?

    python benchmarks/numba_chunks.py [--threads 2] [--repeats 15] [--cell lstm]

For each shape, times one training step (forward + backward, float32) of one layer on one
chunk and on ``--threads`` chunks, interleaved in one process, BLAS on one thread in both
(as the backend runs it when it may use several threads). Prints the work of the call, in
multiply-adds of the recurrent products (what :data:`MIN_CHUNK_WORK` is compared with),
the median wall times and their ratio (chunked / one chunk: below 1 the split pays), and the
ratio of CPU times (the cost of splitting: above 1 by the extra work the chunks do). On a
machine whose other work takes the cores, the wall ratio cannot fall below the CPU ratio.
"""

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from lstmcpu.backends import numba_backend as nb

SHAPES = [  # (T, B, I, H)
    (20, 8, 32, 32), (40, 32, 8, 32), (50, 32, 32, 64), (50, 8, 64, 128), (50, 16, 64, 128),
    (50, 32, 64, 128), (20, 64, 64, 128), (50, 8, 64, 256), (50, 32, 64, 256), (100, 64, 128, 256),
]  # fmt: skip
N_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def training_step(backend, cell, p):
    if cell == "lstm":
        y, h, c, cache = backend.forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["h0"])
        backend.backward(y, h, c, cache)
    elif cell == "gru":
        y, h, cache = backend.gru_forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["b"][: p["h0"].shape[1]], p["h0"])
        backend.gru_backward(y, h, cache)
    else:
        y, h, cache = backend.rnn_forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"])
        backend.rnn_backward(y, h, cache)


def problem(cell, T, B, I, H, seed=0):
    rng = np.random.default_rng(seed)
    G = N_GATES[cell] * H
    shapes = dict(x=(T, B, I), w_ih=(G, I), w_hh=(G, H), b=(G,), h0=(B, H))
    return {k: (0.3 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cell", choices=list(N_GATES), default="lstm")
    args = parser.parse_args()
    backend = nb.NumbaBackend(n_threads=args.threads)
    huge = 2**62
    print(f"{args.cell}, float32, training step, {args.threads} chunks vs 1, median of {args.repeats}")
    print("| T | B | I | H | work (M multiply-adds) | 1 chunk ms | chunked ms | wall ratio | CPU ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(limits=1, user_api="blas"):
        for T, B, I, H in SHAPES:
            p = problem(args.cell, T, B, I, H)
            times = {huge: [], 1: []}  # MIN_CHUNK_WORK: one chunk, or as many as threads
            cpu = {huge: [], 1: []}
            for _ in range(args.repeats + 2):  # two warm-up rounds, dropped
                for least, runs in times.items():
                    nb.MIN_CHUNK_WORK = least
                    start, start_cpu = time.perf_counter(), time.process_time()
                    training_step(backend, args.cell, p)
                    runs.append(time.perf_counter() - start)
                    cpu[least].append(time.process_time() - start_cpu)
            one, split = (1e3 * statistics.median(runs[2:]) for runs in times.values())
            cpu_one, cpu_split = (statistics.median(runs[2:]) for runs in cpu.values())
            work = T * B * N_GATES[args.cell] * H * H / 1e6
            print(f"| {T} | {B} | {I} | {H} | {work:.1f} | {one:.3f} | {split:.3f} | {split / one:.2f} "
                  f"| {cpu_split / cpu_one:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
