"""Zero-shot learning: the hinge ranking loss, the classifier, and unseen classes on real Fashion-
MNIST.
"""

import os

import keras
import numpy as np
import pytest

from keras_transfer.datasets import DEBIAN_FASHION_MNIST
from keras_transfer.zeroshot import FASHION_MNIST_ATTRIBUTES
from keras_transfer.zeroshot import HingeRankingLoss
from keras_transfer.zeroshot import ZeroShotClassifier
from keras_transfer.zeroshot import hinge_ranking_loss
from keras_transfer.zeroshot import zero_shot_evaluation


def test_hinge_ranking_loss_equals_its_formula_on_hand_computed_values():
    scores = np.array(
        [
            [2.0, 1.5, -1.0],  # y=0: 1 - 2 + 1.5 = 0.5
            [0.0, 3.0, 0.5],  # y=1: 1 - 3 + 0.5 < 0 -> 0
            [4.0, -2.0, 1.0],  # y=2: 1 - 1 + 4 = 4
            [-5.0, -6.0, -7.0],
        ]
    )  # y=1, all negative: 1 + 6 - 5 = 2
    labels = np.array([0, 1, 2, 1])
    np.testing.assert_allclose(hinge_ranking_loss(labels, scores, margin=1.0), [0.5, 0.0, 4.0, 2.0])
    np.testing.assert_allclose(hinge_ranking_loss(labels, scores, margin=2.5), [2.0, 0.0, 5.5, 3.5])
    np.testing.assert_allclose(HingeRankingLoss(margin=1.0)(labels, scores), 6.5 / 4)


def test_hinge_ranking_loss_random_values_match_a_numpy_loop(rng):
    scores = rng.normal(size=(50, 7)).astype("float32")
    labels = rng.integers(0, 7, 50)
    expected = [
        max(0.0, 0.7 - s[y] + max(v for m, v in enumerate(s) if m != y))
        for s, y in zip(scores, labels)
    ]
    np.testing.assert_allclose(
        hinge_ranking_loss(labels, scores, margin=0.7), expected, rtol=1e-6, atol=1e-6
    )


def identity_classifier(table):
    """Scores = x · a_c exactly: both encoders are the identity."""
    return ZeroShotClassifier(keras.layers.Identity(), keras.layers.Identity(), table)


def test_generalized_evaluation_counts_per_class_and_harmonic_mean():
    table = np.eye(4, dtype="float32")  # class c scores feature c
    seen = [0, 1]
    # Images of class 0 (2: right, wrong->1), class 1 (1 right), class 2 (2: right, wrong->0),
    # class 3 (1, wrong->2)
    x = np.eye(4, dtype="float32")[[0, 1, 1, 2, 0, 2]]
    # a class-2 image predicted as seen class 0, and as unseen class 3 among unseen ones:
    x[4, 3] = 0.1
    y = np.array([0, 0, 1, 2, 2, 3])
    result = zero_shot_evaluation(identity_classifier(table), x, y, table, seen)
    assert result["seen"] == pytest.approx((0.5 + 1.0) / 2)
    assert result["unseen"] == pytest.approx((0.5 + 0.0) / 2)
    assert result["harmonic_mean"] == pytest.approx(2 * 0.75 * 0.25 / (0.75 + 0.25))
    assert result["zsl"] == pytest.approx((0.5 + 0.0) / 2) and result["chance_zsl"] == 0.5
    calibrated = zero_shot_evaluation(
        identity_classifier(table), x, y, table, seen, calibration=2.0
    )
    assert calibrated["seen"] == 0.0 and calibrated["unseen"] == pytest.approx(result["zsl"])


def test_with_classes_shares_encoders_and_save_load_keeps_scores(tmp_path, rng):
    keras.utils.set_random_seed(0)
    model = ZeroShotClassifier(
        keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)]),
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False)]),
        rng.normal(size=(6, 4)),
    )
    x = rng.normal(size=(10, 5)).astype("float32")
    other = rng.normal(size=(3, 4)).astype("float32")
    assert model.with_classes(other).image_encoder is model.image_encoder
    model.compile("adam", loss=HingeRankingLoss(margin=0.5))
    model.save(tmp_path / "zsl.keras")
    loaded = keras.models.load_model(tmp_path / "zsl.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(
        loaded.with_classes(other).predict(x, verbose=0),
        model.with_classes(other).predict(x, verbose=0),
        atol=1e-6,
    )
    assert loaded.loss.margin == 0.5


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: identity_classifier(np.ones(4)), "class_attributes"),
        (lambda: identity_classifier(np.array([[1.0, np.nan], [0.0, 1.0]])), "NaN"),
        (lambda: identity_classifier(np.eye(3)).with_classes(np.eye(4)), "attributes per class"),
        (
            lambda: zero_shot_evaluation(
                identity_classifier(np.eye(3)), np.eye(3), [0, 1, 2], np.eye(3), [0, 1, 2]
            ),
            "seen_classes",
        ),
        (
            lambda: zero_shot_evaluation(
                identity_classifier(np.eye(3)), np.eye(3), [0, 1, 5], np.eye(3), [0]
            ),
            "y must",
        ),
        (lambda: HingeRankingLoss(margin=0), "margin"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_unseen_fashion_classes_are_recognised_well_above_chance():
    if not os.path.isdir(DEBIAN_FASHION_MNIST):
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    from keras_transfer import load_fashion_mnist

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    unseen = [2, 3, 5]  # Pullover, Dress, Sandal: never shown in training
    seen = [c for c in range(10) if c not in unseen]
    picks = np.concatenate([np.flatnonzero(y_train == c)[:600] for c in seen])
    row_of = np.full(10, -1)
    row_of[seen] = np.arange(len(seen))
    keras.utils.set_random_seed(0)
    image_encoder = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(32),
        ]
    )
    attribute_encoder = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, use_bias=False)]
    )
    model = ZeroShotClassifier(image_encoder, attribute_encoder, FASHION_MNIST_ATTRIBUTES[seen])
    model.compile(keras.optimizers.Adam(1e-3), loss=HingeRankingLoss())
    history = model.fit(
        x_train[picks], row_of[y_train[picks]], epochs=4, batch_size=64, verbose=0
    ).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    result = zero_shot_evaluation(
        model, x_test[:3000], y_test[:3000], FASHION_MNIST_ATTRIBUTES, seen
    )
    assert result["chance_zsl"] == pytest.approx(1 / 3)
    assert result["zsl"] > 0.5, result
