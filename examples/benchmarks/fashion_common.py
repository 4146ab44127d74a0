"""Shared pieces of the Fashion-MNIST benchmarks: data, networks, step timing, tables.

Not part of the library: the benchmark scripts beside this file import it.
"""

import json
import os
import platform
import statistics
import time

import keras
import numpy as np

import keras_transfer as kt

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def fashion_subset(train_size=20000, seed=0):
    """A stratified training subset (same for every seed) and the full 10,000-image test split."""
    (x_train, y_train), (x_test, y_test) = kt.load_fashion_mnist()
    index = _subset_index(y_train, train_size, seed)
    return (x_train[index], y_train[index]), (x_test, y_test)


def _subset_index(y_train, train_size, seed):
    rng = np.random.default_rng(seed)
    per_class = train_size // 10
    return np.sort(
        np.concatenate(
            [rng.choice(np.flatnonzero(y_train == c), per_class, replace=False) for c in range(10)]
        )
    )


def fashion_unlabelled_pool(train_size=20000, pool_size=20000, seed=0):
    """Training images outside `fashion_subset(train_size, seed)`, without their labels."""
    (x_train, y_train), _ = kt.load_fashion_mnist()
    rest = np.setdiff1d(np.arange(len(x_train)), _subset_index(y_train, train_size, seed))
    return x_train[np.random.default_rng(seed + 1).choice(rest, pool_size, replace=False)]


def teacher_cnn(seed, classes=10, name="teacher"):
    """About 0.9M parameters: three conv blocks and a wide dense layer."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="t_conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="t_pool1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="t_conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="t_pool2")(x)
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu", name="t_conv3")(x)
    x = keras.layers.Flatten(name="t_flatten")(x)
    x = keras.layers.Dropout(0.3, name="t_dropout")(x)
    x = keras.layers.Dense(128, activation="relu", name="t_dense")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="t_logits")(x), name=name)


def student_cnn(seed):
    """About 53K parameters (17x fewer than the teacher), int8-friendly layers only."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="s_conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="s_pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="s_conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="s_pool2")(x)
    x = keras.layers.Flatten(name="s_flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="s_dense")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="s_logits")(x), name="student")


def sparse_ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class _StepTimes:
    """Per-step wall times of fit (or predict): medians are immune to end-of-fit stalls."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def _begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def _end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)

    on_train_batch_begin = on_predict_batch_begin = _begin
    on_train_batch_end = on_predict_batch_end = _end

    def epoch_seconds(self, steps_per_epoch, skip=3):
        """Median step time (first steps, which trace, left out) times steps per epoch."""
        return statistics.median(self.seconds[skip:]) * steps_per_epoch


class StepTimer(_StepTimes, keras.callbacks.Callback):
    """Step times of a Keras 3 fit or predict."""


def legacy_step_timer():
    """Step times of a tf_keras fit (the QAT student trains there)."""
    import tf_keras

    class LegacyStepTimer(_StepTimes, tf_keras.callbacks.Callback):
        pass

    return LegacyStepTimer()


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch of fit (for steps_per_execution > 1, where step callbacks are
    coarse).
    """

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=1000, verbose=0), -1) == y))


def mean_std(values):
    return float(np.mean(values)), float(np.std(values))


def write_json(name, payload):
    payload = {
        "python": platform.python_version(),
        "tensorflow": __import__("tensorflow").__version__,
        "keras": keras.__version__,
        "cpus": os.cpu_count(),
        **payload,
    }
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(path + ".tmp", path)
    return path


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        return "  ".join(str(c).ljust(w) for c, w in zip(r, widths))

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
