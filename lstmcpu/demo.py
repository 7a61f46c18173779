"""``python -m lstmcpu demo``: why LSTMs exist, measured on a long-term dependency task.

"I grew up in France ... I speak fluent ___": the answer depends on something seen long
before. Here each sequence starts with one of a few symbols, then ``gap`` distractor steps of
random noise symbols, then a query step; the label is the first symbol. A vanilla RNN's
gradient fades over the gap; the gates of the LSTM and the GRU exist to carry the symbol
across it. What a short training on a few hundred sequences actually achieves is printed,
not assumed.

The LSTM starts with its forget gates' bias at 4 (``forget_bias``): at first
``sigmoid(4) = 0.98`` of the cell survives each step, 47% of it after the 42 steps of the
longest sequences, where the usual bias of 1 keeps ``0.73 ** 42 = 2e-6`` and the gradient
that should teach the network to hold the symbol vanishes before training can open the gate
(with a bias of 1 the LSTM failed at gap 40 on each of 5 seeds; with 4 it learnt it on each
of 10). This is the "chrono" reasoning of Tallec and Ollivier (2018): a forget bias of about
``log(T)`` for dependencies over ``T`` steps. The RNN has no gate to set and the GRU ignores
the option.

The demo trains an RNN, an LSTM and a GRU at increasing gaps (data generated from a seed, no
download), prints the test accuracy of each, times one training epoch on every available
backend, and writes a plot when matplotlib is installed.
"""

import time

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import lstmcpu

from .estimators import LSTMClassifier

CELLS = ("rnn", "lstm", "gru")
GAPS = (5, 10, 20, 40)
QUICK_GAPS = (5, 20)
# The LSTM's initial forget-gate bias: about log(longest sequence) (see the module docstring).
FORGET_BIAS = 4.0


def make_task(n_samples, gap, n_symbols=4, n_distractors=4, seed=0):
    """Remember-the-first-symbol sequences, one-hot encoded.

    Each sequence has ``gap + 2`` steps: a symbol in ``[0, n_symbols)``, ``gap`` random
    distractors, and a query marker. The label is the first symbol, so chance accuracy is
    ``1 / n_symbols``.

    Returns
    -------
    X : ndarray of shape (n_samples, gap + 2, n_symbols + n_distractors + 1), float32
    y : ndarray of shape (n_samples,), int

    Examples
    --------
    >>> X, y = make_task(3, gap=2, seed=0)
    >>> X.shape, y.shape
    ((3, 4, 9), (3,))
    >>> bool((X[np.arange(3), 0, y] == 1).all())  # the label is the first step's symbol
    True
    """
    rng = np.random.default_rng(seed)
    n_features = n_symbols + n_distractors + 1
    X = np.zeros((n_samples, gap + 2, n_features), np.float32)
    y = rng.integers(n_symbols, size=n_samples)
    rows = np.arange(n_samples)
    X[rows, 0, y] = 1
    noise = rng.integers(n_distractors, size=(n_samples, gap))
    X[rows[:, None], np.arange(1, gap + 1), n_symbols + noise] = 1
    X[:, -1, -1] = 1
    return X, y


def train_until_solved(cell, X, y, max_epochs, backend="auto", seed=0, chunk=5):
    """Fit ``chunk`` epochs at a time until the training accuracy reaches 99% or
    ``max_epochs`` have run. Returns the fitted classifier."""
    clf = LSTMClassifier(cell=cell, hidden_size=32, learning_rate=0.02, batch_size=32, max_iter=chunk,
                         n_iter_no_change=max_epochs, warm_start=True, backend=backend, random_state=seed,
                         forget_bias=FORGET_BIAS)  # fmt: skip
    while clf.__dict__.get("n_iter_", 0) < max_epochs:
        clf.fit(X, y)
        if clf.score(X, y) >= 0.99:
            break
    return clf


def run_experiment(gaps, cells=CELLS, n_train=800, n_test=400, max_epochs=40, backend="auto", seed=0):
    """Test accuracy of every cell at every gap: a list of dicts (gap, cell, accuracy, epochs, seconds)."""
    results = []
    with tqdm(total=len(gaps) * len(cells), desc="training", unit="model") as bar:
        for gap in gaps:
            X, y = make_task(n_train, gap, seed=seed)
            X_test, y_test = make_task(n_test, gap, seed=seed + 1)
            for cell in cells:
                bar.set_postfix(gap=gap, cell=cell)
                start = time.perf_counter()
                clf = train_until_solved(cell, X, y, max_epochs, backend, seed)
                seconds = time.perf_counter() - start
                results.append(dict(gap=gap, cell=cell, accuracy=clf.score(X_test, y_test), epochs=clf.n_iter_,
                                    seconds=seconds, backend=clf.backend_))  # fmt: skip
                bar.update()
    return results


def time_backends(gap, backends, n_train=800, epochs=3, seed=0):
    """Milliseconds per LSTM training epoch on each backend (median of ``epochs`` epochs)."""
    X, y = make_task(n_train, gap, seed=seed)
    timings = {}
    for name in backends:
        clf = LSTMClassifier(hidden_size=32, max_iter=1, warm_start=True, backend=name, random_state=seed)
        clf.fit(X, y)  # warm up: compiles Numba kernels, loads the backend
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            clf.fit(X, y)
            times.append(time.perf_counter() - start)
        timings[name] = 1e3 * float(np.median(times))
    return timings


def format_results(results, gaps, cells=CELLS):
    """The accuracy table: one row per gap, one column per cell."""
    by_key = {(r["gap"], r["cell"]): r for r in results}
    lines = [f"{'gap':>5} " + " ".join(f"{cell.upper():>12}" for cell in cells)]
    for gap in gaps:
        cols = []
        for cell in cells:
            r = by_key[(gap, cell)]
            cols.append(f"{r['accuracy']:6.0%} ({r['epochs']:>2}ep)")
        lines.append(f"{gap:>5} " + " ".join(f"{c:>12}" for c in cols))
    return "\n".join(lines)


def plot(results, gaps, path, n_symbols=4, cells=CELLS):
    """Accuracy against gap, one line per cell, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for cell in cells:
        acc = [next(r["accuracy"] for r in results if r["gap"] == g and r["cell"] == cell) for g in gaps]
        ax.plot(gaps, acc, marker="o", label=cell.upper())
    ax.axhline(1 / n_symbols, color="grey", linestyle="--", label="chance")
    ax.set_xlabel("gap between the symbol and the question (time steps)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("Remembering the first symbol across a gap")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser):
    parser.add_argument("--backend", default="auto", help="backend for the experiment (default: auto)")
    parser.add_argument("--quick", action="store_true", help=f"gaps {QUICK_GAPS} and fewer epochs (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="lstmcpu-demo.png", help="where to write the plot (needs matplotlib)")


def main(args):
    gaps = QUICK_GAPS if args.quick else GAPS
    max_epochs = 20 if args.quick else 100
    n_train = 400 if args.quick else 800
    print(f"Remember the first of 4 symbols across a gap of distractors (chance: 25%), seed {args.seed}.")
    print(f"RNN, LSTM and GRU with 32 hidden units, Adam, up to {max_epochs} epochs on {n_train} sequences;")
    print(f"the LSTM's forget gates start with a bias of {FORGET_BIAS:g}.\n")
    with threadpool_limits(1):
        results = run_experiment(gaps, n_train=n_train, max_epochs=max_epochs, backend=args.backend, seed=args.seed)
        print("\nTest accuracy (epochs trained):")
        print(format_results(results, gaps))
        backends = lstmcpu.available_backends() if args.backend == "auto" else [args.backend]
        timings = time_backends(gaps[-1], backends, n_train=n_train, epochs=1 if args.quick else 3, seed=args.seed)
    print(f"\nOne LSTM training epoch at gap {gaps[-1]} ({n_train} sequences of {gaps[-1] + 2} steps), 1 thread:")
    fastest = min(timings.values())
    for name, ms in timings.items():
        print(f"  {name:>8}: {ms:8.1f} ms  ({ms / fastest:.1f}x the fastest)")
    try:
        plot(results, gaps, args.out)
    except ImportError:
        print('\n(matplotlib is not installed: pip install "lstmcpu[plot]" for the plot)')
    else:
        print(f"\nwrote {args.out}")
