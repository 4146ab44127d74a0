"""Feature extraction with an on-disk cache keyed by backbone weights and data."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transfer as kt


@keras.saving.register_keras_serializable(package="keras_transfer_tests")
class CountCalls(keras.layers.Layer):
    """Identity that counts the samples it has seen: proof the backbone ran.

    The count lives in a plain tf.Variable, not a Keras weight, so counting does
    not change the weights that key the cache.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = tf.Variable(0.0, trainable=False)

    def call(self, x):
        self.seen.assign_add(tf.cast(tf.shape(x)[0], tf.float32))
        return x


def counting_backbone(trained_digits_model):
    inputs = keras.Input((8, 8, 1))
    counter = CountCalls(name="counter")
    cut = kt.load_backbone(trained_digits_model, output_layer=-2)
    return keras.Model(inputs, cut(counter(inputs)), name="counted"), counter


def test_cache_hit_skips_the_backbone_and_returns_the_same_features(
    trained_digits_model, digits, tmp_path
):
    (x_train, _), _ = digits
    backbone, counter = counting_backbone(trained_digits_model)
    first = kt.extract_features(backbone, x_train, cache_dir=tmp_path)
    seen = float(counter.seen.numpy())
    assert seen == len(x_train)
    assert len(os.listdir(tmp_path)) == 1
    again = kt.extract_features(backbone, x_train, cache_dir=tmp_path)
    assert float(counter.seen.numpy()) == seen, "a cache hit must not run the backbone"
    np.testing.assert_array_equal(again, first)
    kernel = backbone.weights[0]
    kernel.assign(kernel * 1.01)  # the weights changed: the key changes and the backbone runs again
    kt.extract_features(backbone, x_train, cache_dir=tmp_path)
    assert float(counter.seen.numpy()) == 2 * len(x_train)
    kt.extract_features(backbone, x_train[:100], cache_dir=tmp_path)  # other data, other key
    assert len(os.listdir(tmp_path)) == 3


def test_head_on_cached_features_stacks_into_a_deployable_model(
    trained_digits_model, digits, tmp_path
):
    (x_train, y_train), (x_test, y_test) = digits
    backbone = kt.load_backbone(trained_digits_model, output_layer=-2)
    features = kt.extract_features(backbone, x_train, cache_dir=tmp_path)
    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.Input(features.shape[1:]), keras.layers.Dense(10)], name="head")
    head.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = head.fit(features, y_train, epochs=10, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    model = kt.stack(backbone, head)
    test_features = kt.extract_features(backbone, x_test)
    np.testing.assert_allclose(
        model.predict(x_test, verbose=0), head.predict(test_features, verbose=0), atol=1e-5
    )
    assert np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test) > 0.9


def test_bad_inputs(trained_digits_model):
    backbone = kt.load_backbone(trained_digits_model, output_layer=-2)
    with pytest.raises(ValueError, match="x is empty"):
        kt.extract_features(backbone, np.zeros((0, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match=r"x has samples of shape \(28, 28, 1\)"):
        kt.extract_features(backbone, np.zeros((2, 28, 28, 1), "float32"))
    with pytest.raises(TypeError, match="backbone must be a keras.Model"):
        kt.extract_features("backbone", np.zeros((2, 8, 8, 1), "float32"))


def test_a_planted_or_damaged_cache_entry_is_never_returned(trained_digits_model, digits, tmp_path):
    (x_train, _), _ = digits
    x = x_train[:256]
    backbone, counter = counting_backbone(trained_digits_model)
    honest = kt.extract_features(backbone, x, cache_dir=tmp_path)
    (entry,) = os.listdir(tmp_path)
    path = tmp_path / entry
    for planted in (
        {"features": np.zeros((3, 2), "float32"), "key": np.array("x"), "checksum": np.array("y")},
        {
            "features": honest + 1.0,
            "key": np.load(path)["key"],
            "checksum": np.load(path)["checksum"],
        },
    ):
        np.savez(path, **planted)
        seen = float(counter.seen.numpy())
        with pytest.warns(UserWarning, match="computing the features afresh"):
            again = kt.extract_features(backbone, x, cache_dir=tmp_path)
        np.testing.assert_allclose(again, honest, atol=1e-6)
        assert float(counter.seen.numpy()) == seen + len(x), "the backbone ran instead"
        assert np.load(path)["features"].shape == planted["features"].shape, "file left as it was"
