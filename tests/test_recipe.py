"""The digit-adaptation recipe: its learning-rate decay, its networks, and BatchNorm that sees
both domains as one batch inside every Adapter."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer import adapt


def test_inverse_decay_follows_its_formula_and_survives_serialization():
    schedule = adapt.InverseDecay(0.01, gamma=0.001, power=0.75)
    for step in (0, 10, 1000, 5000):
        assert float(schedule(step)) == pytest.approx(0.01 * (1 + 0.001 * step) ** -0.75)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert float(restored(1234)) == pytest.approx(float(schedule(1234)))
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        adapt.InverseDecay(0.0)


def test_the_optimizer_decays_its_rate_as_it_steps():
    optimizer = adapt.adaptation_optimizer(learning_rate=0.1)
    variable = keras.Variable(np.ones(3, "float32"))
    before = float(optimizer.learning_rate)
    for _ in range(100):
        optimizer.apply_gradients([(np.ones(3, "float32"), variable)])
    assert float(optimizer.learning_rate) == pytest.approx(0.1 * (1 + 0.1) ** -0.75)
    assert before == pytest.approx(0.1)


def test_an_adapter_normalises_both_domains_with_shared_batch_statistics():
    keras.utils.set_random_seed(0)
    backbone, classifier = adapt.digit_networks(dropout=0.0)
    rng = np.random.default_rng(0)
    x_source = rng.random((8, 28, 28, 1)).astype("float32")
    x_target = (0.5 * rng.random((8, 28, 28, 1))).astype("float32")
    before_bn = keras.Model(backbone.inputs, backbone.get_layer("bottleneck").output)
    joint_mean = np.mean(before_bn.predict(np.concatenate([x_source, x_target]), verbose=0), 0)
    source_mean = np.mean(before_bn.predict(x_source, verbose=0), 0)
    model = adapt.DANN(backbone, classifier)
    model.compile(keras.optimizers.SGD(0.0))
    pairs = tf.data.Dataset.from_tensors(((x_source, np.arange(8) % 10), x_target))
    model.fit(pairs, epochs=1, verbose=0)
    moving_mean = backbone.get_layer("bottleneck_bn").moving_mean.numpy()
    momentum = backbone.get_layer("bottleneck_bn").momentum
    np.testing.assert_allclose(moving_mean, (1 - momentum) * joint_mean, rtol=1e-3, atol=1e-6)
    assert not np.allclose(moving_mean, (1 - momentum) * source_mean, rtol=1e-2, atol=1e-5)
