"""The harness every adaptation method runs, from one table (tests/adapters.py): it trains on real
digits against a shifted, unlabelled target, logs its terms, survives a .keras round trip; its
two-replica and two-worker equality runs in tests/test_distribute.py from the same table."""

import importlib
import json
import pkgutil

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer import adapt
from tests.adapters import ADAPTERS
from tests.adapters import build


@pytest.fixture(scope="module")
def shifted_digits(digits):
    """Labelled digits (source) and the same digits mirrored left to right (target, labels held
    out).
    """
    (x_train, y_train), (x_test, y_test) = digits
    return (x_train, y_train), (x_test[:, :, ::-1, :].copy(), y_test)


def pairs(shifted_digits):
    source, (x_target, _) = shifted_digits
    return kt.domain_pairs(source, x_target, batch_size=64, seed=0)


@pytest.mark.parametrize("name", ADAPTERS)
def test_the_method_trains_on_real_digits_and_logs_its_terms(name, shifted_digits):
    adapter = build(name)
    adapter.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    logs = adapter.fit(
        pairs(shifted_digits),
        epochs=4,
        verbose=0,
        callbacks=[adapt.DANNSchedule(schedule_learning_rate=False)],
    ).history
    assert {"loss", "task_loss", "accuracy", *adapter.adaptation_terms} <= set(logs)
    assert all(np.isfinite(value) for values in logs.values() for value in values), logs
    assert logs["task_loss"][-1] < 0.5 * logs["task_loss"][0], logs["task_loss"]
    assert logs["accuracy"][-1] > 0.8, "it learns the labelled source"
    result = adapter.evaluate(*shifted_digits[1], verbose=0, return_dict=True)
    assert set(result) == {"loss", "task_loss", "accuracy"}
    assert result["accuracy"] > 0.15, "above chance (0.1) on the mirrored target"


@pytest.mark.parametrize("name", ADAPTERS)
def test_the_method_round_trips_through_a_keras_file(name, shifted_digits, tmp_path):
    adapter = build(name)
    adapter.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    adapter.fit(pairs(shifted_digits), epochs=1, verbose=0)
    adapter.save(tmp_path / "adapter.keras")
    restored = keras.saving.load_model(tmp_path / "adapter.keras", safe_mode=True)
    assert type(restored) is type(adapter)
    x_target = shifted_digits[1][0][:64]
    np.testing.assert_allclose(
        restored.predict(x_target, verbose=0), adapter.predict(x_target, verbose=0), atol=1e-6
    )
    assert json.loads(json.dumps(restored.get_config())) == json.loads(
        json.dumps(adapter.get_config())
    )
    assert float(restored.strength.numpy()) == float(adapter.strength.numpy())
    more = restored.fit(pairs(shifted_digits), epochs=1, verbose=0).history
    assert np.isfinite(more["loss"][0]), "the restored adapter trains on"


def adapter_classes():
    """Every Adapter subclass keras_transfer defines, all of keras_transfer.adapt imported."""
    for module in pkgutil.walk_packages(adapt.__path__, "keras_transfer.adapt."):
        importlib.import_module(module.name)
    found, todo = set(), [adapt.Adapter]
    while todo:
        for subclass in todo.pop().__subclasses__():
            if subclass.__module__.startswith("keras_transfer.") and subclass not in found:
                found.add(subclass)
                todo.append(subclass)
    return found


def test_every_adaptation_method_is_in_the_harness_table():
    tabled = {type(build(name)) for name in ADAPTERS}
    missing = sorted(cls.__name__ for cls in adapter_classes() - tabled)
    assert not missing, f"add a row for {missing} to ADAPTERS in tests/adapters.py"
    assert tabled, "the table is not empty"
