"""One-step-ahead forecasting of a neuron's membrane potential.

The series is the membrane potential of a neuron recorded every 0.5 ms for 6 s, which ships
with matplotlib as sample data (``membrane.dat``, the trace of matplotlib's original logo):
rest, then about 60 action potentials while a current is injected, then rest again.
Averaged in 2 ms bins it has 3000 steps. The task: from the last ``n_lags`` bins, predict the
next one.

The split is in time: the LSTM and the baselines learn on the first 60% of the series,
choose their settings (the LSTM's epoch, the autoregression's number of lags) on the next
20%, and are scored once on the last 20%. No window used for learning or choosing reaches a
target of a later part. Baselines: the last value (naive) and a linear autoregression.

Run it from a checkout (needs matplotlib)::

    python docs/examples/forecast.py                          # the full run (seconds)
    python docs/examples/forecast.py --plot docs/examples/forecast.png
    python docs/examples/forecast.py --quick                  # a small model, seconds

docs/examples.md shows the output of a full run.
"""

import argparse
import copy
import time

import numpy as np
from sklearn.linear_model import LinearRegression

from lstmcpu import LSTMRegressor

FULL = dict(hidden_size=32, n_lags=48, max_iter=40)
QUICK = dict(hidden_size=16, n_lags=24, max_iter=6)
BIN = 4  # samples of 0.5 ms per bin


def load_membrane():
    """The membrane potential in mV, averaged in bins of 2 ms: ``(3000,)`` float64."""
    from matplotlib import cbook

    raw = np.fromfile(cbook.get_sample_data("membrane.dat", asfileobj=False), np.float32)
    mv = 100.0 * raw.astype(np.float64)  # the file holds volts / 10
    return mv[: len(mv) // BIN * BIN].reshape(-1, BIN).mean(axis=1)


def lagged(series, features, start, stop, n_lags):
    """Windows for the targets ``series[t + 1]``, ``start <= t < stop``.

    Returns ``X`` ``(n, n_lags, n_features)``: ``features[t - n_lags + 1 : t + 1]``, the
    last values ``series[t]`` and the targets ``series[t + 1]``.
    """
    t = np.arange(max(start, n_lags - 1), stop)
    steps = t[:, None] + np.arange(1 - n_lags, 1)
    return features[steps], series[t], series[t + 1]


def rmse_mae(pred, truth):
    err = pred - truth
    return float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err)))


def fit_lstm(X, change, X_val, last_val, truth_val, hidden_size, max_iter, random_state=0):
    """One ``partial_fit`` per epoch on the training windows (predicting the change from the
    last value); returns the model of the epoch with the lowest validation RMSE and the
    validation RMSE of every epoch."""
    reg = LSTMRegressor(hidden_size=hidden_size, learning_rate=0.005, random_state=random_state)
    best, val_rmse = None, []
    for _ in range(max_iter):
        reg.partial_fit(X, change)
        val_rmse.append(rmse_mae(last_val + reg.predict(X_val), truth_val)[0])
        if val_rmse[-1] == min(val_rmse):
            best = copy.deepcopy(reg)
    return best, val_rmse


def fit_autoregression(series, train_end, val_end, lag_choices=(1, 2, 4, 8, 16, 32)):
    """Least-squares ``series[t + 1] - series[t]`` from the last ``p`` values, ``p`` chosen on
    the validation part. Returns ``(p, model)``."""
    best = None
    for p in lag_choices:
        X, last, target = lagged(series, series[:, None], 0, train_end - 1, p)
        model = LinearRegression().fit(X[:, :, 0], target - last)
        Xv, last_v, target_v = lagged(series, series[:, None], train_end - 1, val_end - 1, p)
        rmse = rmse_mae(last_v + model.predict(Xv[:, :, 0]), target_v)[0]
        if best is None or rmse < best[0]:
            best = (rmse, p, model)
    return best[1], best[2]


def main(quick=False, seed=0, plot_path=None):
    config = QUICK if quick else FULL
    n_lags = config["n_lags"]
    series = load_membrane()
    n = len(series)
    train_end, val_end = int(0.6 * n), int(0.8 * n)
    # Inputs: the standardized level and its change, with the training part's statistics.
    z = (series - series[:train_end].mean()) / series[:train_end].std()
    features = np.stack([z, np.diff(z, prepend=z[0])], axis=-1)
    X, last, target = lagged(series, features, 0, train_end - 1, n_lags)
    X_val, last_val, target_val = lagged(series, features, train_end - 1, val_end - 1, n_lags)
    X_test, last_test, target_test = lagged(series, features, val_end - 1, n - 1, n_lags)
    print(f"membrane potential: {n} steps of 2 ms, {series.min():.1f} to {series.max():.1f} mV; "
          f"train / validation / test targets: {len(target)} / {len(target_val)} / {len(target_test)}")  # fmt: skip

    start = time.perf_counter()
    reg, val_rmse = fit_lstm(X, target - last, X_val, last_val, target_val, config["hidden_size"],
                             config["max_iter"], random_state=seed)  # fmt: skip
    print(f"LSTM: {config['hidden_size']} units, windows of {n_lags} steps, trained in "
          f"{time.perf_counter() - start:.0f} s ({reg.backend_} backend), best validation epoch "
          f"{reg.n_iter_} of {config['max_iter']}")  # fmt: skip
    p, ar = fit_autoregression(series, train_end, val_end)
    X_ar, _, _ = lagged(series, series[:, None], val_end - 1, n - 1, p)

    forecasts = {
        "last value": last_test,
        f"linear AR({p})": last_test + ar.predict(X_ar[:, :, 0]),
        "LSTM": last_test + reg.predict(X_test),
    }
    naive_rmse = rmse_mae(last_test, target_test)[0]
    print("\ntest (last 20%)   RMSE (mV)  MAE (mV)  RMSE / naive")
    scores = {}
    for name, pred in forecasts.items():
        scores[name] = rmse_mae(pred, target_test)
        rmse, mae = scores[name]
        print(f"  {name:<14} {rmse:10.2f} {mae:9.2f} {rmse / naive_rmse:13.2f}")
    if plot_path:
        plot(series, val_end, forecasts, target_test, plot_path)
        print(f"\nwrote {plot_path}")
    return reg, scores


def plot(series, val_end, forecasts, truth, path, first=80, length=120):
    """The test part's first spikes: the recording and each forecast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = 2 * (val_end + np.arange(len(truth)))[first : first + length]  # ms
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(t, truth[first : first + length], color="black", linewidth=2, label="recorded")
    for name, pred in forecasts.items():
        ax.plot(t, pred[first : first + length], linewidth=1, label=f"{name} (one step ahead)")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("membrane potential (mV)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small model and a short training (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PNG", help="write a plot of the test part's first spikes")
    args = parser.parse_args()
    main(args.quick, args.seed, args.plot)
