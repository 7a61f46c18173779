"""``python -m lstmcpu demo``: why LSTMs exist, measured on a long-term dependency task.

"I grew up in France ... I speak fluent ___": the answer depends on something seen long
before. Here each sequence starts with one of a few symbols, then ``gap`` distractor steps of
random noise symbols, then a query step; the label is the first symbol. A vanilla RNN's
gradient fades over the gap; the gates of the LSTM and the GRU exist to carry the symbol
across it. What a short training on 800 sequences actually achieves is printed, not
assumed.

One training run is one draw: whether a network finds the solution depends on its initial
weights and its data, and the RNN's outcome in particular is a lottery that gets worse with
the gap. So the demo trains every cell at every gap on several seeds (5 by default, derived
from ``--seed``) and reports the median test accuracy and how many seeds solved the gap
(95% test accuracy or more); the plot shows every seed.

The LSTM starts with its forget gates' bias at 5 (``forget_bias``): at first
``sigmoid(5) = 0.993`` of the cell survives each step, 70% of it after the 52 steps of the
longest sequences, where the usual bias of 1 keeps ``0.73 ** 52 = 8e-8`` and the gradient
that should teach the network to hold the symbol vanishes before training can open the gate.
This is the "chrono" reasoning of Tallec and Ollivier (2018): a forget bias of about
``log(T)`` for dependencies over ``T`` steps. Measured at gap 50 on seeds 0 to 7, a bias of 4
solved 7 and a bias of 5 all 8 (and all of seeds 0 to 19). The RNN has no gate to set and
the GRU ignores the option.

The demo stops at gap 50 because that is as far as the LSTM went reliably within its
minute: at gap 75 it solved 8 of 10 seeds, at gap 100 10 of 20 (with a bias of 6: 5 of 8),
each failed run taking all 100 epochs; the GRU solved every one of those seeds, and the RNN
4 of 10 at gap 75 and 2 of 20 at gap 100.

The demo trains an RNN, an LSTM and a GRU at gaps 5, 20 and 50 (data generated from a seed,
no download), prints the test accuracy of each, times one training epoch on every available
backend, and writes a plot when matplotlib is installed.
"""

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import lstmcpu

from .estimators import LSTMClassifier

CELLS = ("rnn", "lstm", "gru")
# The default run and ``--quick``: gaps, repetitions (seeds) per gap, training sequences and
# the most epochs a network gets to learn them.
DEFAULT = dict(gaps=(5, 20, 50), n_seeds=5, n_train=800, max_epochs=100)
QUICK = dict(gaps=(5, 50), n_seeds=1, n_train=800, max_epochs=20)
# The LSTM's initial forget-gate bias: about log(longest sequence) (see the module docstring).
FORGET_BIAS = 5.0
# A seed "solves" a gap when its test accuracy reaches this.
SOLVED = 0.95
# The backend capability (lstmcpu.backend.CELLS) that each cell of the demo needs.
CAPABILITY = {"rnn": "rnn_tanh", "lstm": "lstm", "gru": "gru"}


def make_task(n_samples, gap, n_symbols=4, n_distractors=4, seed=0):
    """Remember-the-first-symbol sequences, one-hot encoded.

    Each sequence has ``gap + 2`` steps: a symbol in ``[0, n_symbols)``, ``gap`` random
    distractors, and a query marker. The label is the first symbol, so chance accuracy is
    ``1 / n_symbols``. ``seed`` (an int or a sequence of ints) seeds
    :func:`numpy.random.default_rng`.

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
    """Train ``chunk`` epochs at a time until the training accuracy reaches 99%.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}
    X, y : ndarray
        Training sequences and labels, as made by :func:`make_task`.
    max_epochs : int
        Stop after this many epochs even if the training set is not learnt.
    backend : str, default="auto"
    seed : int, default=0
        The network's ``random_state``.
    chunk : int, default=5
        Epochs between two checks of the training accuracy.

    Returns
    -------
    LSTMClassifier
        Fitted; ``n_iter_`` is the number of epochs trained.

    Examples
    --------
    >>> X, y = make_task(64, gap=2, seed=0)
    >>> clf = train_until_solved("gru", X, y, max_epochs=5, backend="numpy")
    >>> clf.n_iter_ <= 5
    True
    """
    clf = LSTMClassifier(cell=cell, hidden_size=32, learning_rate=0.02, batch_size=32, max_iter=chunk,
                         n_iter_no_change=max_epochs, warm_start=True, backend=backend, random_state=seed,
                         forget_bias=FORGET_BIAS)  # fmt: skip
    while clf.__dict__.get("n_iter_", 0) < max_epochs:
        with warnings.catch_warnings():
            # Each chunk of epochs ends at max_iter: that is the plan, not a failure to converge.
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        if clf.score(X, y) >= 0.99:
            break
    return clf


def run_seeds(seed, n_seeds):
    """The ``n_seeds`` repetition seeds of a demo run with ``--seed seed``.

    Consecutive ``--seed`` values give disjoint repetitions.

    Examples
    --------
    >>> run_seeds(0, 3), run_seeds(1, 3)
    ([0, 1, 2], [3, 4, 5])
    """
    return [seed * n_seeds + r for r in range(n_seeds)]


def backends_for(backend, cells=CELLS):
    """The backend each cell trains on: ``backend`` where it implements the cell, else "auto".

    Examples
    --------
    >>> backends_for("numpy")
    {'rnn': 'numpy', 'lstm': 'numpy', 'gru': 'numpy'}
    """
    if backend == "auto":
        return dict.fromkeys(cells, backend)
    chosen = lstmcpu.get_backend(backend)
    return {cell: backend if chosen.can_run(CAPABILITY[cell]) else "auto" for cell in cells}


def run_experiment(gaps, seeds, cells=CELLS, n_train=800, n_test=400, max_epochs=100, backend="auto"):
    """Train every cell at every gap once per seed and measure its test accuracy.

    Repetition ``s`` trains on ``make_task(n_train, gap, seed=[s, 0])``, tests on the
    independent ``make_task(n_test, gap, seed=[s, 1])`` and starts the network from
    ``random_state=s``. A cell that ``backend`` does not implement trains on ``"auto"``.

    Returns
    -------
    list of dict
        One per (gap, seed, cell), with keys ``gap``, ``seed``, ``cell``, ``accuracy`` (test),
        ``epochs``, ``seconds`` and ``backend``.

    Examples
    --------
    >>> results = run_experiment([2], seeds=[0], cells=["gru"], n_train=64, n_test=32,
    ...                          max_epochs=5, backend="numpy")
    >>> sorted(results[0])
    ['accuracy', 'backend', 'cell', 'epochs', 'gap', 'seconds', 'seed']
    """
    backends = backends_for(backend, cells)
    results = []
    with tqdm(total=len(gaps) * len(seeds) * len(cells), desc="training", unit="model") as bar:
        for gap in gaps:
            for seed in seeds:
                X, y = make_task(n_train, gap, seed=[seed, 0])
                X_test, y_test = make_task(n_test, gap, seed=[seed, 1])
                for cell in cells:
                    bar.set_postfix(gap=gap, seed=seed, cell=cell)
                    start = time.perf_counter()
                    clf = train_until_solved(cell, X, y, max_epochs, backends[cell], seed)
                    results.append(dict(gap=gap, seed=seed, cell=cell, accuracy=clf.score(X_test, y_test),
                                        epochs=clf.n_iter_, seconds=time.perf_counter() - start,
                                        backend=clf.backend_))  # fmt: skip
                    bar.update()
    return results


def time_backends(gap, backends, n_train=800, epochs=3, seed=0):
    """Milliseconds per LSTM training epoch on each backend (median of ``epochs`` epochs).

    Examples
    --------
    >>> ms = time_backends(gap=2, backends=["numpy"], n_train=32, epochs=1)
    >>> list(ms), ms["numpy"] > 0
    (['numpy'], True)
    """
    X, y = make_task(n_train, gap, seed=seed)
    timings = {}
    for name in backends:
        clf = LSTMClassifier(hidden_size=32, max_iter=1, warm_start=True, backend=name, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch per fit, on purpose
            clf.fit(X, y)  # warm up: compiles Numba kernels, loads the backend
            times = []
            for _ in range(epochs):
                start = time.perf_counter()
                clf.fit(X, y)
                times.append(time.perf_counter() - start)
        timings[name] = 1e3 * float(np.median(times))
    return timings


def summarize(results, gaps, cells=CELLS):
    """Per (gap, cell): the test accuracies of all seeds, their median and how many solved it.

    A seed solves a gap when its test accuracy reaches ``SOLVED``.

    Examples
    --------
    >>> results = [dict(gap=5, cell="rnn", accuracy=a) for a in (1.0, 0.3, 0.98)]
    >>> s = summarize(results, [5], cells=["rnn"])[(5, "rnn")]
    >>> s["median"], s["solved"], s["runs"]
    (0.98, 2, 3)
    """
    summary = {}
    for gap in gaps:
        for cell in cells:
            acc = [r["accuracy"] for r in results if r["gap"] == gap and r["cell"] == cell]
            summary[(gap, cell)] = dict(accuracies=acc, median=float(np.median(acc)),
                                        solved=sum(a >= SOLVED for a in acc), runs=len(acc))  # fmt: skip
    return summary


def format_results(results, gaps, cells=CELLS):
    """The accuracy table: one row per gap, one column per cell, each cell of the table the
    median test accuracy over the seeds and how many seeds solved the gap.

    Examples
    --------
    >>> results = [dict(gap=5, cell=c, accuracy=a) for c, a in
    ...            [("rnn", 1.0), ("rnn", 0.25), ("rnn", 1.0), ("lstm", 1.0), ("lstm", 1.0), ("lstm", 1.0)]]
    >>> print(format_results(results, [5], cells=["rnn", "lstm"]))
      gap          RNN         LSTM
        5     100% 2/3     100% 3/3
    """
    summary = summarize(results, gaps, cells)
    lines = [f"{'gap':>5} " + " ".join(f"{cell.upper():>12}" for cell in cells)]
    for gap in gaps:
        cols = [f"{s['median']:.0%} {s['solved']}/{s['runs']}" for s in (summary[(gap, c)] for c in cells)]
        lines.append(f"{gap:>5} " + " ".join(f"{c:>12}" for c in cols))
    return "\n".join(lines)


def plot(results, gaps, path, n_symbols=4, cells=CELLS):
    """Accuracy against gap: every seed's test accuracy as a dot, the median as a line.

    Examples
    --------
    >>> import os, tempfile
    >>> results = [dict(gap=g, cell=c, accuracy=a) for g in (5, 20) for c in CELLS for a in (0.5, 1.0)]
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.png")
    >>> plot(results, [5, 20], path)
    >>> os.path.getsize(path) > 1000
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarize(results, gaps, cells)
    fig, ax = plt.subplots(figsize=(6, 4))
    # Side by side at each gap (a few percent apart on the log axis), so that no cell hides another.
    shifts = np.geomspace(0.93, 1 / 0.93, len(cells))
    for cell, shift, marker in zip(cells, shifts, "os^"):
        x = np.multiply(gaps, shift)
        medians = [summary[(g, cell)]["median"] for g in gaps]
        (line,) = ax.plot(x, medians, marker=marker, markersize=5, label=f"{cell.upper()} (line: median)")
        for gap, x_gap in zip(gaps, x):
            acc = summary[(gap, cell)]["accuracies"]
            ax.plot(np.full(len(acc), x_gap), acc, marker, color=line.get_color(), alpha=0.6, markersize=5)
    ax.axhline(1 / n_symbols, color="grey", linestyle="--", label="chance")
    ax.set_xscale("log")
    ax.set_xticks(gaps, [str(g) for g in gaps])
    ax.minorticks_off()
    ax.set_xlabel("gap between the symbol and the question (time steps)")
    ax.set_ylabel("test accuracy (dots: one per seed)")
    ax.set_ylim(0, 1.05)
    ax.set_title("Remembering the first symbol across a gap")
    ax.legend(loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser):
    parser.add_argument("--backend", default="auto", help="backend for the experiment (default: auto)")
    parser.add_argument("--quick", action="store_true",
                        help=f"gaps {QUICK['gaps']}, {QUICK['n_seeds']} seeds, fewer epochs (seconds)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0,
                        help=f"run seeds seed*n .. seed*n+n-1 (n = {DEFAULT['n_seeds']}, --quick: {QUICK['n_seeds']})")
    parser.add_argument("--out", default="lstmcpu-demo.png", help="where to write the plot (needs matplotlib)")


def main(args):
    start = time.perf_counter()
    config = QUICK if args.quick else DEFAULT
    gaps, n_train, max_epochs = config["gaps"], config["n_train"], config["max_epochs"]
    seeds = run_seeds(args.seed, config["n_seeds"])
    print(f"Remember the first of 4 symbols across a gap of distractors (chance: 25%), seeds {seeds}.")
    print(f"RNN, LSTM and GRU with 32 hidden units, Adam, up to {max_epochs} epochs on {n_train} sequences;")
    print(f"the LSTM's forget gates start with a bias of {FORGET_BIAS:g}.")
    try:
        backends = backends_for(args.backend)
    except (ValueError, lstmcpu.BackendUnavailableError) as exc:
        raise SystemExit(f"lstmcpu demo: {exc}") from None
    elsewhere = [cell.upper() for cell, name in backends.items() if name != args.backend]
    if elsewhere:
        print(f"Cells the {args.backend} backend does not implement ({', '.join(elsewhere)}) train on 'auto'.")
    print()
    with threadpool_limits(1):
        results = run_experiment(gaps, seeds, n_train=n_train, max_epochs=max_epochs, backend=args.backend)
        print(f"\nTest accuracy: median over the seeds, and how many of the {len(seeds)} reached {SOLVED:.0%}:")
        print(format_results(results, gaps))
        timed = lstmcpu.available_backends() if args.backend == "auto" else [args.backend]
        timings = time_backends(gaps[-1], timed, n_train=n_train, epochs=1 if args.quick else 3, seed=args.seed)
    shape = f"{n_train} sequences of {gaps[-1] + 2} steps"
    print(f"\nOne LSTM training epoch at gap {gaps[-1]} ({shape}), BLAS on 1 thread:")
    fastest = min(timings.values())
    for name, ms in timings.items():
        print(f"  {name:>8}: {ms:8.1f} ms  ({ms / fastest:.1f}x the fastest)")
    try:
        plot(results, gaps, args.out)
    except ImportError:
        print('\n(matplotlib is not installed: pip install "lstmcpu[plot]" for the plot)')
    else:
        print(f"\nwrote {args.out}")
    print(f"total: {time.perf_counter() - start:.0f} s")
