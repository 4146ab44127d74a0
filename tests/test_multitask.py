"""MultiTaskModel and task_batches on real digits: two tasks with different label sets."""

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.multitask import MultiTaskModel
from keras_transfer.multitask import task_batches


@pytest.fixture(scope="module")
def digit_tasks():
    """'low' classifies digits 0-4, 'high' digits 5-9 (as 0-4): two datasets, two label sets."""
    (x, y), _ = kt.load_digits()
    low, high = y < 5, y >= 5
    return {
        "low": (x[low], y[low].astype("int32")),
        "high": (x[high], (y[high] - 5).astype("int32")),
    }


def make_model(seed=0, loss_weights=None):
    keras.utils.set_random_seed(seed)
    backbone = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
        ],
        name="backbone",
    )
    heads = {
        name: keras.Sequential([keras.Input((32,)), keras.layers.Dense(5)], name=f"{name}_head")
        for name in ("low", "high")
    }
    return MultiTaskModel(backbone, heads, loss_weights=loss_weights)


def one_task_batch(tasks, task, size=16):
    x, y = tasks[task]
    labels = {name: (y[:size] if name == task else np.zeros(size, "int32")) for name in tasks}
    masks = {name: np.full(size, 1.0 if name == task else 0.0, "float32") for name in tasks}
    return x[:size], labels, masks


def test_round_robin_batches_alternate_tasks_and_cover_each_once(digit_tasks):
    batches = list(task_batches(digit_tasks, batch_size=32, seed=0))
    present = [
        [name for name, mask in masks.items() if float(mask.numpy().max()) == 1.0]
        for _, _, masks in batches
    ]
    assert all(len(p) == 1 for p in present)
    order = [p[0] for p in present]
    n_low, n_high = (len(digit_tasks[t][0]) // 32 for t in ("low", "high"))
    assert len(order) == n_low + n_high
    assert order[:4] == ["low", "high", "low", "high"]
    x, labels, masks = batches[0]
    assert tuple(x.shape) == (32, 8, 8, 1)
    assert set(labels) == {"low", "high"} and float(masks["high"].numpy().sum()) == 0.0


def test_proportional_sampling_follows_task_sizes(digit_tasks):
    x, y = digit_tasks["low"]
    tasks = {
        "big": (np.resize(x, (6400,) + x.shape[1:]), np.resize(y, 6400)),
        "small": (x[:640], y[:640]),
    }
    batches = task_batches(tasks, batch_size=32, sampling="proportional", seed=0)
    counts = {"big": 0, "small": 0}
    for _, _, masks in batches:
        counts["big" if float(masks["big"][0]) == 1.0 else "small"] += 1
    assert counts["big"] + counts["small"] == 220
    assert 5 < counts["big"] / counts["small"] < 20  # expected 10


def task_order(batches):
    return [
        next(name for name, mask in masks.items() if float(mask[0]) == 1.0)
        for _, _, masks in batches
    ]


def test_proportional_task_order_changes_each_epoch_and_repeats_with_the_seed(digit_tasks):
    batches = task_batches(digit_tasks, batch_size=32, sampling="proportional", seed=0)
    epochs = [task_order(batches) for _ in range(3)]
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    again = task_batches(digit_tasks, batch_size=32, sampling="proportional", seed=0)
    assert [task_order(again) for _ in range(3)] == epochs


def test_a_task_absent_from_the_batch_gets_no_loss_and_no_gradient(digit_tasks):
    model = make_model()
    model.compile(keras.optimizers.SGD(0.1), metrics=["accuracy"])
    x, labels, masks = one_task_batch(digit_tasks, "low")
    model(x)
    before = {v.path: np.array(v.numpy()) for v in model.trainable_variables}
    logs = model.train_on_batch(x, labels, sample_weight=masks, return_dict=True)
    changed = {
        v.path for v in model.trainable_variables if not np.array_equal(before[v.path], v.numpy())
    }
    assert logs["high_loss"] == 0.0 and logs["low_loss"] > 0.0
    assert any(path.startswith("low_head") for path in changed)
    assert any(path.startswith("backbone") for path in changed)
    assert not any(path.startswith("high_head") for path in changed)
    assert changed == {path for path in before if not path.startswith("high_head")}


def test_logged_loss_is_each_tasks_mean_over_its_labelled_samples(digit_tasks):
    model = make_model(loss_weights={"high": 0.5})
    model.compile(keras.optimizers.SGD(0.0))
    x_low, y_low = digit_tasks["low"][0][:10], digit_tasks["low"][1][:10]
    x_high, y_high = digit_tasks["high"][0][:6], digit_tasks["high"][1][:6]
    x = np.concatenate([x_low, x_high])
    labels = {
        "low": np.concatenate([y_low, np.zeros(6, "int32")]),
        "high": np.concatenate([np.zeros(10, "int32"), y_high]),
    }
    masks = {
        "low": np.r_[np.ones(10), np.zeros(6)].astype("float32"),
        "high": np.r_[np.zeros(10), np.ones(6)].astype("float32"),
    }
    outputs = model.predict(x, verbose=0)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected_low = float(ce(y_low, outputs["low"][:10]))
    expected_high = float(ce(y_high, outputs["high"][10:]))
    logs = model.test_on_batch(x, labels, sample_weight=masks, return_dict=True)
    np.testing.assert_allclose(logs["low_loss"], expected_low, rtol=1e-5)
    np.testing.assert_allclose(logs["high_loss"], expected_high, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], expected_low + 0.5 * expected_high, rtol=1e-5)


def test_both_tasks_learn_on_real_digits_with_per_task_metrics(digit_tasks):
    model = make_model()
    model.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    history = model.fit(
        task_batches(digit_tasks, batch_size=32, seed=0), epochs=6, verbose=0
    ).history
    assert history["low_loss"][-1] < 0.5 * history["low_loss"][0]
    assert history["high_loss"][-1] < 0.5 * history["high_loss"][0]
    for task in ("low", "high"):
        x, y = digit_tasks[task]
        accuracy = np.mean(np.argmax(model.predict(x, verbose=0)[task], -1) == y)
        assert accuracy > 0.85, (task, accuracy)
        assert history[f"{task}_accuracy"][-1] > 0.85


def test_save_load_and_head_model_predict_alike(digit_tasks, tmp_path):
    model = make_model()
    model.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    model.fit(task_batches(digit_tasks, batch_size=32, seed=0), epochs=1, verbose=0)
    x = digit_tasks["low"][0][:50]
    path = tmp_path / "multitask.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for task in ("low", "high"):
        np.testing.assert_allclose(after[task], before[task], atol=1e-6)
    batch = one_task_batch(digit_tasks, "high")
    assert loaded.test_on_batch(*batch[:2], sample_weight=batch[2], return_dict=True)[
        "high_accuracy"
    ] == pytest.approx(
        model.test_on_batch(*batch[:2], sample_weight=batch[2], return_dict=True)["high_accuracy"]
    )
    head = loaded.head_model("high")
    np.testing.assert_allclose(head.predict(x, verbose=0), after["high"], atol=1e-6)
    head.save(tmp_path / "high.keras")
    np.testing.assert_allclose(
        keras.models.load_model(tmp_path / "high.keras").predict(x, verbose=0),
        after["high"],
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: task_batches({}, 32), "non-empty dict"),
        (lambda t: task_batches(t, 32, sampling="random"), "sampling"),
        (
            lambda t: task_batches({"a": t["low"], "b": (t["high"][0][:, :4], t["high"][1])}, 32),
            "one input shape",
        ),
        (lambda t: task_batches({"a": (t["low"][0], t["low"][1][:-1])}, 32), "one label per input"),
        (
            lambda t: task_batches({"a": (t["low"][0][:8], t["low"][1][:8])}, 32),
            "fewer than batch_size",
        ),
        (lambda t: MultiTaskModel(make_model().backbone, {}), "non-empty dict"),
        (
            lambda t: MultiTaskModel(
                make_model().backbone, make_model().heads, loss_weights={"mid": 1.0}
            ),
            "'mid'",
        ),
        (lambda t: make_model().compile("adam", loss={"mid": "mse"}), "'mid'"),
    ],
)
def test_bad_input_is_named(digit_tasks, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(digit_tasks)


def test_labels_must_be_a_dict_of_known_tasks(digit_tasks):
    model = make_model()
    model.compile("adam")
    x, y = digit_tasks["low"]
    with pytest.raises(ValueError, match="dict"):
        model.train_on_batch(x[:8], y[:8])
    with pytest.raises(ValueError, match="'mid'"):
        model.train_on_batch(x[:8], {"mid": y[:8]})
