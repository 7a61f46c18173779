"""A character-level language model and a sentence completer.

``LSTMClassifier(output="sequence")`` learns to predict the next character at every step of
windows cut from a short text (``keepers_year.txt``, written for the project). The text is
split in time: the first 80% to learn, the next 10% to choose the epoch, the last 10% to
score, where the model's bits per character are compared with a unigram and a bigram model
of the training text. Then ``predict_stream`` (the most likely character) and
``predict_proba_stream`` (a character drawn from the predicted distribution) complete
prompts one character at a time, carrying the recurrent state from call to call.

Run it from a checkout::

    python docs/examples/char_lm.py            # the full run (a minute or two)
    python docs/examples/char_lm.py --quick    # a small model, seconds

docs/examples.md shows the output of a full run.
"""

import argparse
import copy
import pathlib
import time

import numpy as np

from lstmcpu import LSTMClassifier

TEXT_FILE = pathlib.Path(__file__).with_name("keepers_year.txt")

# n_steps: characters per training window; max_iter: epochs; the rest goes to LSTMClassifier.
FULL = dict(n_steps=64, max_iter=60, hidden_size=128, num_layers=2, dropout=0.25, learning_rate=0.005)
QUICK = dict(n_steps=32, max_iter=8, hidden_size=32, learning_rate=0.01)


def load_text(path=TEXT_FILE):
    """The text without its ``#`` header lines."""
    lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.startswith("#")).strip() + "\n"


class Alphabet:
    """The characters of a text, as one-hot input features."""

    def __init__(self, text):
        self.chars = np.array(sorted(set(text)))
        self._index = {ch: i for i, ch in enumerate(self.chars)}

    def codes(self, text):
        unknown = sorted(set(text) - self._index.keys())
        if unknown:
            raise ValueError(f"characters {unknown} are not in the training text's alphabet")
        return np.array([self._index[ch] for ch in text])

    def one_hot(self, text):
        """``(len(text), n_chars)`` float32 one-hot rows."""
        return np.eye(len(self.chars), dtype=np.float32)[self.codes(text)]


def windows(text, alphabet, n_steps, stride):
    """Every ``n_steps``-character window of ``text`` starting at a multiple of ``stride``:
    one-hot inputs ``X`` ``(n, n_steps, n_chars)`` and the next characters ``y``
    ``(n, n_steps)`` (the same window shifted by one)."""
    starts = np.arange(0, len(text) - n_steps, stride)
    steps = starts[:, None] + np.arange(n_steps)
    X = alphabet.one_hot(text)[steps]
    y = np.array(list(text))[steps + 1]
    return X, y


def train(train_text, val_text, alphabet, n_steps, max_iter, random_state=0, **params):
    """One ``partial_fit`` per epoch, on the windows of ``train_text`` that start at a random
    offset (so each epoch cuts the text differently); returns the model of the epoch with
    the lowest bits per character on ``val_text``, and that figure for every epoch.
    ``params`` go to :class:`~lstmcpu.LSTMClassifier`."""
    rng = np.random.default_rng(random_state)
    clf = LSTMClassifier(output="sequence", random_state=random_state, **params)
    best, val_bits = None, []
    for _ in range(max_iter):
        offset = int(rng.integers(n_steps))
        X, y = windows(train_text[offset:], alphabet, n_steps, stride=n_steps)
        clf.partial_fit(X, y, classes=alphabet.chars)
        val_bits.append(evaluate(clf, alphabet, val_text)[0])
        if val_bits[-1] == min(val_bits):
            best = copy.deepcopy(clf)
    return best, val_bits


def bits_per_char(proba, y, classes):
    """Mean ``-log2 p(next character)`` of ``(n, K)`` probabilities over ``classes``."""
    p = proba[np.arange(len(y)), np.searchsorted(classes, y)]
    return float(-np.mean(np.log2(p)))


def ngram_baselines(train_text, held_out, classes):
    """Bits per character and accuracy of add-one unigram and bigram models of ``train_text``
    on the next characters of ``held_out`` (every character after the first)."""
    codes = np.searchsorted(classes, np.array(list(train_text)))
    K = len(classes)
    unigram = np.bincount(codes[1:], minlength=K) + 1.0
    bigram = np.ones((K, K))
    np.add.at(bigram, (codes[:-1], codes[1:]), 1)  # bigram[a, b]: times b followed a
    unigram /= unigram.sum()
    bigram /= bigram.sum(axis=1, keepdims=True)
    y = np.array(list(held_out[1:]))
    uni = np.tile(unigram, (len(y), 1))
    bi = bigram[np.searchsorted(classes, np.array(list(held_out[:-1])))]
    return {
        "unigram": (bits_per_char(uni, y, classes), float(np.mean(classes[uni.argmax(1)] == y))),
        "bigram": (bits_per_char(bi, y, classes), float(np.mean(classes[bi.argmax(1)] == y))),
    }


def evaluate(clf, alphabet, held_out):
    """The model's bits per character and accuracy on ``held_out`` read as one stream."""
    proba = clf.predict_proba(alphabet.one_hot(held_out[:-1])[None])[0]
    y = np.array(list(held_out[1:]))
    return bits_per_char(proba, y, clf.classes_), float(np.mean(clf.classes_[proba.argmax(1)] == y))


def complete(clf, alphabet, prompt, max_chars=100, temperature=None, rng=None, stop=".\n"):
    """Continue ``prompt`` one character at a time until a character of ``stop``.

    The prompt goes through the network in one chunk; then each new character goes in
    alone, with the state the previous call returned. ``temperature=None`` takes the most
    likely character (``predict_stream``); otherwise a character is drawn from the predicted
    distribution sharpened (below 1) or flattened (above 1) by the temperature
    (``predict_proba_stream``).
    """
    chunk, state, text = alphabet.one_hot(prompt)[None], None, ""
    for _ in range(max_chars):
        if temperature is None:
            labels, state = clf.predict_stream(chunk, state)
            ch = labels[0, -1]
        else:
            proba, state = clf.predict_proba_stream(chunk, state)
            logits = np.log(proba[0, -1]) / temperature
            p = np.exp(logits - logits.max())
            ch = rng.choice(clf.classes_, p=p / p.sum())
        text += ch
        if ch in stop:
            break
        chunk = alphabet.one_hot(ch)[None]
    return prompt + text


PROMPTS = ["The keeper ", "In the fourth month the ", "Wednesday. Wind ", "He knows that "]


def main(quick=False, seed=0):
    config = QUICK if quick else FULL
    text = load_text()
    # A split in time: train on the first 80%, choose the epoch on the next 10%, test on the rest.
    a, b = int(0.8 * len(text)), int(0.9 * len(text))
    train_text, val_text, test_text = text[:a], text[a:b], text[b:]
    alphabet = Alphabet(train_text)
    print(f"text: {len(text)} characters, {len(alphabet.chars)} distinct; train / validation / test: "
          f"{len(train_text)} / {len(val_text)} / {len(test_text)}")  # fmt: skip
    print(f"LSTM: {config.get('num_layers', 1)} x {config['hidden_size']} units, windows of "
          f"{config['n_steps']} characters, {config['max_iter']} epochs")  # fmt: skip
    start = time.perf_counter()
    clf, val_bits = train(train_text, val_text, alphabet, random_state=seed, **config)
    print(f"trained in {time.perf_counter() - start:.0f} s ({clf.backend_} backend); validation bits/char "
          f"{val_bits[0]:.2f} after epoch 1, best {min(val_bits):.2f} after epoch {clf.n_iter_}")  # fmt: skip

    scores = ngram_baselines(train_text, test_text, clf.classes_)
    scores["LSTM"] = evaluate(clf, alphabet, test_text)
    print("\ntest text        bits/char  next-char accuracy")
    for name, (bits, acc) in scores.items():
        print(f"  {name:<12} {bits:10.2f}  {acc:18.1%}")

    rng = np.random.default_rng(seed)
    print("\nmost likely characters (predict_stream):")
    for prompt in PROMPTS:
        print("  " + complete(clf, alphabet, prompt).strip())
    print("\nsampled at temperature 0.5 (predict_proba_stream):")
    for prompt in PROMPTS:
        print("  " + complete(clf, alphabet, prompt, temperature=0.5, rng=rng).strip())
    return clf, scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small model and a short training (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.quick, args.seed)
