"""Page faults and time of a layer's training step: the figures behind docs/benchmarks.md.

    python benchmarks/page_faults.py [--backends cython,numba] [--shapes small,online]
                                     [--threads 1] [--steps 40]

Per backend and benchmark preset (``lstmcpu.bench.PRESETS``), a float32 ``lstmcpu.LSTM`` runs
``--steps`` training steps (``layer(x)`` then ``layer.backward(g)``) after 3 warm-up steps;
prints the median step time and the minor page faults per step (``getrusage``, so Unix only)
in the forward and the backward pass. A step that gets fresh pages from the kernel pays a
fault for each one it writes (about 2.5 µs on the development VM).
"""

import argparse
import resource
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import lstmcpu
from lstmcpu.bench import PRESETS


def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(backend, shape, steps):
    """Median seconds per training step and mean faults per step (forward, backward)."""
    T, B, I, H = PRESETS[shape]
    layer = lstmcpu.LSTM(I, H, dtype=np.float32, backend=backend, random_state=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    g = np.ones((T, B, H), np.float32)
    for _ in range(3):
        layer(x)
        layer.backward(g)
    times, forward_faults, backward_faults = [], 0, 0
    for _ in range(steps):
        start, faults = time.perf_counter(), minor_faults()
        layer(x)
        middle = minor_faults()
        layer.backward(g)
        times.append(time.perf_counter() - start)
        forward_faults += middle - faults
        backward_faults += minor_faults() - middle
    return statistics.median(times), forward_faults / steps, backward_faults / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="cython")
    parser.add_argument("--shapes", default="small,online")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    print("| backend | shape | ms per step | faults per step (forward, backward) |")
    print("|---|---|---:|---:|")
    with threadpool_limits(args.threads):
        for backend in args.backends.split(","):
            for shape in args.shapes.split(","):
                seconds, forward_faults, backward_faults = measure(backend, shape, args.steps)
                print(f"| {backend} | {shape} | {seconds * 1e3:.2f} | {forward_faults:.0f}, {backward_faults:.0f} |")


if __name__ == "__main__":
    main()
