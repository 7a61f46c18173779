"""``python -m lstmcpu demo``: an LSTM on generated data, timed on every available backend.

It builds a batch of noisy sine waves from a seed (no download), runs a 2-layer LSTM's
inference pass and one training step (forward + backward) on each backend, checks that the
backends agree with the NumPy reference, and prints the timings.
"""

import time

import numpy as np
from tqdm import tqdm

import lstmcpu


def sine_batch(T, B, I, seed):
    """``B`` noisy sine waves of ``T`` steps with ``I`` phase-shifted channels each."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None, None]
    freq = rng.uniform(0.05, 0.3, size=(1, B, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(1, B, I))
    return (np.sin(freq * t + phase) + 0.1 * rng.standard_normal((T, B, I))).astype(np.float32)


def add_arguments(parser):
    parser.add_argument("--backend", default=None, help="run only this backend (default: all available)")
    parser.add_argument("--quick", action="store_true", help="smaller problem, fewer repeats")
    parser.add_argument("--seed", type=int, default=0)


def _median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main(args):
    T, B, I, H = (20, 8, 4, 32) if args.quick else (100, 32, 8, 128)
    repeats = 3 if args.quick else 10
    backends = [args.backend] if args.backend else lstmcpu.available_backends()
    x = sine_batch(T, B, I, args.seed)
    grad_out = np.ones((T, B, H), np.float32)
    reference = lstmcpu.LSTM(I, H, num_layers=2, backend="numpy", random_state=args.seed)
    expected, _ = reference.eval()(x)
    print(f"2-layer LSTM, T={T} B={B} I={I} H={H}, float32, sine-wave data (seed {args.seed})")
    rows = []
    for name in tqdm(backends, desc="backends", leave=False):
        layer = lstmcpu.LSTM(I, H, num_layers=2, backend=name)
        layer.load_state_dict(reference.state_dict())
        out, _ = layer.eval()(x)
        deviation = float(np.max(np.abs(out - expected)))
        forward_ms = _median_ms(lambda: layer(x), repeats)
        layer.train()

        def train_step():
            layer(x)
            layer.backward(grad_out)

        train_ms = _median_ms(train_step, repeats)
        rows.append((name, forward_ms, train_ms, deviation))
    print(f"{'backend':>10} {'forward ms':>11} {'train ms':>9} {'max |diff| vs numpy':>20}")
    for name, forward_ms, train_ms, deviation in rows:
        print(f"{name:>10} {forward_ms:11.2f} {train_ms:9.2f} {deviation:20.2e}")
