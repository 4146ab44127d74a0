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


class PushToClassZero(adapt.Adapter):
    """A run built to collapse: its term drives every target prediction to class 0."""

    adaptation_terms = ("push_loss",)
    uses_target_logits = True

    def adaptation_loss(self, batch):
        logits = batch.target.logits
        push = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(
                keras.ops.zeros_like(logits[:, 0], "int32"), logits, from_logits=True
            )
        )
        return 3.0 * self.strength * push, {"push_loss": push}


def test_the_collapse_guard_stops_a_collapsing_run_and_restores_the_healthy_weights(
    shifted_digits,
):
    from tests.adapters import digit_networks

    keras.utils.set_random_seed(0)
    adapter = PushToClassZero(*digit_networks(), strength=0.0)
    adapter.compile(keras.optimizers.Adam(3e-3))
    healthy = []

    class Strengthen(keras.callbacks.Callback):  # two healthy epochs, then the push
        def on_epoch_begin(self, epoch, logs=None):
            healthy.append(adapter.get_weights())  # the weights at the start of each epoch

        def on_epoch_end(self, epoch, logs=None):
            adapter.set_adaptation_strength(1.0 if epoch >= 1 else 0.0)

    with pytest.warns(RuntimeWarning, match=r"collapsed at epoch \d.*push_loss"):
        history = adapter.fit(pairs(shifted_digits), epochs=12, verbose=0, callbacks=[Strengthen()])
    shares = history.history["target_class_share"]
    assert len(shares) < 12, "training stopped"
    assert shares[-1] >= 0.9 > max(shares[:-1])
    last_healthy = healthy[len(shares) - 2]  # the start of the last epoch below the threshold
    for restored, want in zip(adapter.get_weights(), last_healthy):
        np.testing.assert_array_equal(restored, want)
    predicted = adapter.predict(shifted_digits[1][0], verbose=0).argmax(-1)
    assert np.bincount(predicted).max() / len(predicted) < 0.9

    # stop=False only warns and trains on
    keras.utils.set_random_seed(0)
    adapter = PushToClassZero(*digit_networks(), strength=0.0)
    adapter.compile(keras.optimizers.Adam(3e-3))
    with pytest.warns(RuntimeWarning, match="Training goes on"):
        history = adapter.fit(
            pairs(shifted_digits),
            epochs=5,
            verbose=0,
            callbacks=[adapt.CollapseGuard(stop=False), Strengthen()],
        )
    assert len(history.history["loss"]) == 5
    # an untrained network gives both domains one class: not a collapse; nor is a healthy run
    keras.utils.set_random_seed(0)
    untrained = PushToClassZero(*digit_networks(), strength=1.0)  # both at 0.98 in epoch 1
    untrained.compile(keras.optimizers.Adam(3e-3))
    healthy_run = PushToClassZero(*digit_networks(), strength=0.0)
    healthy_run.compile(keras.optimizers.Adam(3e-3))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        shares = untrained.fit(pairs(shifted_digits), epochs=1, verbose=0).history
        assert shares["target_class_share"][0] >= 0.9 and shares["source_class_share"][0] >= 0.9
        healthy_run.fit(pairs(shifted_digits), epochs=2, verbose=0)


@pytest.mark.parametrize("statistics", ["joint", "separate"])
def test_domain_statistics_decide_how_batchnorm_sees_the_domains(statistics, tmp_path):
    """ "joint": one BatchNorm batch of both domains (each domain's mean is off zero);
    "separate": each domain normalised by its own batch (both means zero). Kept by .keras."""
    rng = np.random.default_rng(0)
    x_source = rng.normal(0.0, 1.0, (16, 3)).astype("float32")
    x_target = rng.normal(5.0, 2.0, (16, 3)).astype("float32")
    backbone = keras.Sequential(
        [keras.Input((3,)), keras.layers.BatchNormalization(center=False, scale=False)]
    )
    classifier = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    adapter = adapt.DANN(backbone, classifier, domain_statistics=statistics)
    source, target = adapter._both_domains(x_source, x_target, training=True)
    source_mean = np.abs(source.features.numpy().mean(0)).max()
    target_mean = np.abs(target.features.numpy().mean(0)).max()
    if statistics == "separate":
        assert source_mean < 1e-5 and target_mean < 1e-5
    else:
        assert source_mean > 0.5 and target_mean > 0.5
    adapter.save(tmp_path / "adapter.keras")
    loaded = keras.saving.load_model(tmp_path / "adapter.keras", safe_mode=True)
    assert loaded.domain_statistics == statistics
