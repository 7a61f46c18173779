"""How much do denormal (subnormal) states slow each backend down?

    python benchmarks/denormals.py [--threads 1] [--repeats 30]

Runs one LSTM layer twice with the same shapes (T=50, B=32, I=32, H=64, float32): once with
ordinary values, once with weights and biases scaled so that the gates' inputs, the cell
state and the hidden state stay subnormal (below 1.2e-38) at every step. Prints the median
time of each and their ratio per backend, forward and training step.
"""

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import lstmcpu

T, B, I, H = 50, 32, 32, 64


def problem(subnormal, seed=0):
    rng = np.random.default_rng(seed)
    scale = np.float32(1e-40) if subnormal else np.float32(0.1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_ih = (scale * rng.standard_normal((4 * H, I))).astype(np.float32)
    w_hh = (0.1 * rng.standard_normal((4 * H, H))).astype(np.float32)
    b = (scale * rng.standard_normal(4 * H)).astype(np.float32)
    # i, f, o = sigmoid(~0) = 0.5, g = tanh(subnormal): c and h stay subnormal when scale is.
    h0 = np.zeros((B, H), np.float32)
    return x, w_ih, w_hh, b, h0, h0.copy()


def interleaved_medians(fns, repeats):
    """Median seconds of each function, timed in turn within every repeat so that a noisy
    neighbour slows them alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(f"T={T} B={B} I={I} H={H} float32, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'backend':>8} {'mode':>8} {'normal ms':>10} {'subnormal ms':>13} {'ratio':>6}")
    with threadpool_limits(args.threads):
        for name in lstmcpu.available_backends():
            backend = lstmcpu.get_backend(name)
            for mode in ("forward", "train"):
                runs = []
                for subnormal in (False, True):
                    args_ = problem(subnormal)
                    _, _, c_n, _ = backend.forward(*args_, need_cache=False)
                    if subnormal:
                        assert 0 < np.abs(c_n).max() < np.finfo(np.float32).tiny, "states are subnormal"
                    dy = np.ones((T, B, H), np.float32)
                    zeros = np.zeros((B, H), np.float32)

                    def run(args_=args_, dy=dy, zeros=zeros, mode=mode):
                        out = backend.forward(*args_, need_cache=mode == "train")
                        if mode == "train":
                            backend.backward(dy, zeros, zeros, out[3])

                    runs.append(run)
                normal, sub = interleaved_medians(runs, args.repeats)
                times = {False: normal, True: sub}
                ratio = times[True] / times[False]
                print(f"{name:>8} {mode:>8} {1e3 * times[False]:10.3f} {1e3 * times[True]:13.3f} {ratio:6.2f}")


if __name__ == "__main__":
    main()
