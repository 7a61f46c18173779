"""Where should the Numba backend's recurrent products leave the panel kernel for BLAS?

    python -m benchmarks.numba_crossover [--hidden 64,256,512] [--batch 1,8,32,64,128]
                                         [--steps 20] [--repeats 9] [--cell lstm]

For each hidden size and batch, times one layer's forward pass (``need_cache=False``) and
one training step (forward + backward), float32, on one thread, with every product on the
panel kernel and then on BLAS, interleaved in one process (the machine is shared and noisy:
medians of ``--repeats`` rounds, two warm-up rounds dropped). Prints panel time / BLAS time
(below 1 the panel kernel wins), the figures behind :data:`SMALL_BATCH` and
:data:`L2_WEIGHTS` in ``lstmcpu.backends.numba_backend``.
"""

import argparse
import statistics
import time

from threadpoolctl import threadpool_limits

from lstmcpu.backends import numba_backend as nb

from .numba_chunks import N_GATES, problem, training_step


def forward(backend, cell, p):
    if cell == "lstm":
        backend.forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["h0"], need_cache=False)
    elif cell == "gru":
        backend.gru_forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["b"][: p["h0"].shape[1]], p["h0"], need_cache=False)
    else:
        backend.rnn_forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], need_cache=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default="64,256,512")
    parser.add_argument("--batch", default="1,8,32,64,128")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--cell", choices=list(N_GATES), default="lstm")
    args = parser.parse_args()
    backend = nb.NumbaBackend(n_threads=1)
    routes = {"panel": 2**62, "blas": 0}  # SMALL_BATCH for each route
    print(f"{args.cell}, float32, 1 thread, T={args.steps}, I=H: panel time / BLAS time")
    print("| H | B | forward | training step |")
    print("|---|---|---|---|")
    with threadpool_limits(limits=1, user_api="blas"):
        for H in (int(h) for h in args.hidden.split(",")):
            for B in (int(b) for b in args.batch.split(",")):
                p = problem(args.cell, args.steps, B, H, H)
                ratios = []
                for run in (forward, training_step):
                    times = {route: [] for route in routes}
                    for _ in range(args.repeats + 2):
                        for route, small_batch in routes.items():
                            nb.SMALL_BATCH = small_batch
                            start = time.perf_counter()
                            run(backend, args.cell, p)
                            times[route].append(time.perf_counter() - start)
                    panel, blas = (statistics.median(times[route][2:]) for route in routes)
                    ratios.append(panel / blas)
                print(f"| {H} | {B} | {ratios[0]:.2f} | {ratios[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
