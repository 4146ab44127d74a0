"""Shared test fixtures: where the real datasets are, and small trained models."""

import os

import numpy as np
import pytest

# Scripts the tests run in subprocesses: importing them (as doctest collection would) starts work.
collect_ignore = ["distributed_equality.py", "multiworker_equality.py", "resume_training.py"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get(
    "KERAS_TRANSFER_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data")
)


def shared_path(*parts):
    """A path inside ../shared/data, or a skip naming what is missing."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"shared data not found at {path} (set KERAS_TRANSFER_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def digits():
    from keras_transfer import load_digits

    return load_digits(seed=0)


@pytest.fixture(scope="session")
def trained_digits_model(digits):
    """A small CNN trained for a few seconds on the digits: a real model to export."""
    import keras

    from keras_transfer.demo import small_cnn

    (x_train, y_train), _ = digits
    keras.utils.set_random_seed(0)
    model = small_cnn((8, 8, 1), 10)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, epochs=15, batch_size=64, verbose=0)
    return model


@pytest.fixture
def rng():
    return np.random.default_rng(0)
