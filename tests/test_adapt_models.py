"""DANN and DiscrepancyAdapter on a real shifted pair: MNIST (source) -> USPS (target)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transfer as kt
from keras_transfer.adapt import DANN
from keras_transfer.adapt import DANNSchedule
from keras_transfer.adapt import DiscrepancyAdapter
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def mnist_usps():
    """2,000 MNIST test images (source, labelled) and 1,000 USPS training images (target), 16x16."""
    x_mnist, y_mnist = kt.load_mnist(shared_path("mnist"), split="test")
    x_usps, y_usps = kt.load_usps(shared_path("usps", "usps.h5"), split="train")
    x_mnist = kt.resize_images(x_mnist[:2000], (16, 16))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(x_usps), 1000, replace=False)
    return (x_mnist, y_mnist[:2000]), (x_usps[pick], y_usps[pick])


def lenet_parts(seed=0):
    keras.utils.set_random_seed(seed)
    features = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(16, 5, activation="relu", name="c1"),
            keras.layers.MaxPooling2D(2, name="p1"),
            keras.layers.Conv2D(32, 3, activation="relu", name="c2"),
            keras.layers.MaxPooling2D(2, name="p2"),
            keras.layers.Flatten(name="flat"),
        ],
        name="features",
    )
    classifier = keras.Sequential(
        [
            keras.Input((128,)),
            keras.layers.Dense(32, activation="relu", name="fc"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="classifier",
    )
    return features, classifier


def pairs(mnist_usps, batch_size=64):
    source, (x_target, _) = mnist_usps
    return kt.domain_pairs(source, x_target, batch_size=batch_size, seed=0)


def test_dann_reverses_the_domain_gradient_into_the_features_only(mnist_usps):
    (x_source, _), (x_target, _) = mnist_usps
    features, classifier = lenet_parts()
    dann = DANN(features, classifier, lambda_=0.5)
    xs, xt = x_source[:32], x_target[:32]
    domains = tf.concat([tf.zeros(32), tf.ones(32)], 0)

    def domain_loss(reverse):
        both = tf.concat([features(xs), features(xt)], 0)
        logits = tf.reshape(dann.discriminator(dann.reversal(both) if reverse else both), [-1])
        return tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=domains, logits=logits)
        )

    variables = features.trainable_variables + dann.discriminator.trainable_variables
    grads = {}
    for reverse in (True, False):
        with tf.GradientTape() as tape:
            loss = domain_loss(reverse)
        grads[reverse] = tape.gradient(loss, variables)
    n = len(features.trainable_variables)
    for reversed_grad, plain in zip(grads[True][:n], grads[False][:n]):
        np.testing.assert_allclose(
            reversed_grad.numpy(), -0.5 * plain.numpy(), rtol=1e-5, atol=1e-8
        )
    for reversed_grad, plain in zip(grads[True][n:], grads[False][n:]):
        np.testing.assert_allclose(reversed_grad.numpy(), plain.numpy(), rtol=1e-6)
    owned = [
        {id(v) for v in part.trainable_variables}
        for part in (features, classifier, dann.discriminator)
    ]
    assert {id(v) for v in dann.trainable_variables} == set().union(*owned)
    assert sum(len(ids) for ids in owned) == len(dann.trainable_variables)  # no variable shared


def test_dann_trains_on_mnist_to_usps_and_logs_its_terms(mnist_usps):
    _, (x_target, y_target) = mnist_usps
    features, classifier = lenet_parts()
    dann = DANN(features, classifier)
    dann.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    schedule = DANNSchedule(schedule_learning_rate=False)
    history = dann.fit(pairs(mnist_usps), epochs=4, verbose=0, callbacks=[schedule])
    logs = history.history
    assert {"loss", "task_loss", "domain_loss", "domain_accuracy", "lambda", "accuracy"} <= set(
        logs
    )
    assert logs["task_loss"][-1] < 0.5 * logs["task_loss"][0]
    assert (
        logs["lambda"] == sorted(logs["lambda"]) and 0 < logs["lambda"][0] < logs["lambda"][-1] < 1
    )
    result = dann.evaluate(x_target, y_target, verbose=0, return_dict=True)
    assert result["accuracy"] > 0.3, "well above chance (0.1) on unlabelled-target USPS"
    assert dann.predict(x_target[:5], verbose=0).shape == (5, 10)


def test_dann_schedule_follows_the_paper(mnist_usps):
    features, classifier = lenet_parts()
    dann = DANN(features, classifier)
    dann.compile(keras.optimizers.SGD(0.01))
    schedule = DANNSchedule()
    rates = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    dann.fit(pairs(mnist_usps, batch_size=250), epochs=2, verbose=0, callbacks=[schedule, Watch()])
    steps = len(schedule.history)
    for step, (p, lambda_) in enumerate(schedule.history):
        assert p == pytest.approx(step / steps)
        assert lambda_ == pytest.approx(2 / (1 + np.exp(-10 * p)) - 1)
        assert rates[step] == pytest.approx(0.01 / (1 + 10 * p) ** 0.75, rel=1e-5)


@pytest.mark.parametrize(
    "discrepancy, weight, layers", [("mmd", 0.3, None), ("coral", 1.0, ["fc"]), ("cmd", 0.3, None)]
)
def test_discrepancy_adapter_loss_falls_on_mnist_to_usps(mnist_usps, discrepancy, weight, layers):
    features, classifier = lenet_parts()
    adapter = DiscrepancyAdapter(
        features, classifier, discrepancy=discrepancy, discrepancy_weight=weight, layers=layers
    )
    adapter.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    history = adapter.fit(pairs(mnist_usps), epochs=4, verbose=0).history
    # Measured: task loss 2.26 -> 0.63 (mmd), 2.21 -> 0.76 (coral), 2.27 -> 0.88 (cmd).
    assert history["task_loss"][-1] < 0.6 * history["task_loss"][0]
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert history["discrepancy_loss"][-1] > 0


def test_schedule_ramps_the_discrepancy_weight_in(mnist_usps):
    features, classifier = lenet_parts()
    adapter = DiscrepancyAdapter(features, classifier, discrepancy="mmd", discrepancy_weight=0.3)
    adapter.compile(keras.optimizers.Adam(1e-3))
    history = adapter.fit(
        pairs(mnist_usps),
        epochs=3,
        verbose=0,
        callbacks=[DANNSchedule(schedule_learning_rate=False)],
    ).history
    assert history["weight"] == sorted(history["weight"]) and history["weight"][0] < 0.75 * 0.3
    assert history["weight"][-1] == pytest.approx(
        0.3
        * np.mean([2 / (1 + np.exp(-10 * p)) - 1 for p in np.arange(2 * 32, 3 * 32) / (3 * 32)]),
        rel=0.05,
    )
    assert history["task_loss"][-1] < 0.6 * history["task_loss"][0]


def test_models_round_trip_through_keras_files(mnist_usps, tmp_path):
    _, (x_target, _) = mnist_usps
    for model in (
        DANN(*lenet_parts(), lambda_=0.3),
        DiscrepancyAdapter(
            *lenet_parts(), discrepancy="coral", discrepancy_weight=2.0, layers=["fc"]
        ),
    ):
        model.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        model.fit(pairs(mnist_usps), epochs=1, verbose=0)
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        restored = keras.saving.load_model(path)
        np.testing.assert_allclose(
            restored.predict(x_target[:64], verbose=0),
            model.predict(x_target[:64], verbose=0),
            atol=1e-5,
        )
        assert restored.get_config()["feature_extractor"] is not None
    assert float(restored.discrepancy_weight) == 2.0 and restored.layers_to_align == ["fc"]


def test_bad_input_is_refused_before_training(mnist_usps):
    (x_source, y_source), (x_target, y_target) = mnist_usps
    features, classifier = lenet_parts()
    two_units = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="one logit per sample"):
        DANN(features, classifier, discriminator=two_units)
    with pytest.raises(ValueError, match="discrepancy must be one of"):
        DiscrepancyAdapter(features, classifier, discrepancy="kl")
    with pytest.raises(ValueError, match=r"layers \['nope'\] are not in the classifier"):
        DiscrepancyAdapter(features, classifier, layers=["nope"])
    dann = DANN(features, classifier)
    dann.compile("adam")
    labelled_target = tf.data.Dataset.from_tensor_slices(
        ((x_source[:128], y_source[:128]), (x_target[:128], y_target[:128]))
    ).batch(64)
    with pytest.raises(ValueError, match="target labels"):
        dann.fit(labelled_target, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"\(\(x_source, y_source\), x_target\)"):
        dann.fit(x_source, y_source, epochs=1, verbose=0)
    wrong_shape = tf.data.Dataset.from_tensor_slices(
        ((x_source[:128], y_source[:128]), np.zeros((128, 28, 28, 1), "float32"))
    ).batch(64)
    with pytest.raises(ValueError, match="must match"):
        dann.fit(wrong_shape, epochs=1, verbose=0)
    with pytest.raises(ValueError):
        kt.domain_pairs((x_source, y_source), np.zeros((0, 16, 16, 1), "float32"), batch_size=32)
