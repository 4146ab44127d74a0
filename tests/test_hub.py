"""HubLayer: SavedModels the tests make themselves, loaded as "hub modules" into Keras 3 models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer import HubLayer


class HubStyleModule(tf.Module):
    """A TF2 SavedModel in TF-Hub's reusable style: `__call__(x, training)`, its own variables."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(
            tf.random.stateless_normal([64, 16], seed=[1, 2]) * 0.2, name="dense/kernel"
        )
        self.bias = tf.Variable(tf.zeros([16]), name="dense/bias")
        self.moving_mean = tf.Variable(tf.zeros([64]), trainable=False, name="norm/moving_mean")

    @tf.function
    def __call__(self, x, training=False):
        flat = tf.reshape(x, [-1, 64])
        if training:
            self.moving_mean.assign(0.9 * self.moving_mean + 0.1 * tf.reduce_mean(flat, axis=0))
        return tf.nn.relu(tf.matmul(flat - self.moving_mean, self.kernel) + self.bias)


@pytest.fixture(scope="module")
def hub_module(tmp_path_factory):
    module = HubStyleModule()
    for training in (True, False):
        module.__call__.get_concrete_function(
            tf.TensorSpec([None, 8, 8, 1], tf.float32), training=training
        )
    path = str(tmp_path_factory.mktemp("hub") / "module")
    tf.saved_model.save(module, path)
    return path


@pytest.fixture(scope="module")
def keras_export(tmp_path_factory):
    """A Keras 3 feature extractor saved by model.export(): a `serve` endpoint, no training arg."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
        ],
        name="features",
    )
    path = str(tmp_path_factory.mktemp("export") / "features")
    model.export(path, verbose=False)
    return model, path


def classifier_on(layer, classes=10):
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(classes, name="head")(layer(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def test_outputs_equal_the_saved_model(keras_export, digits):
    model, path = keras_export
    _, (x_test, _) = digits
    layer = HubLayer(path)
    np.testing.assert_allclose(layer(x_test).numpy(), model.predict(x_test, verbose=0), atol=1e-6)
    assert len(layer.weights) == len(model.weights)
    assert layer.trainable_weights == []


def test_trainable_module_trains_its_own_variables_and_only_the_intended_ones(hub_module, digits):
    (x_train, y_train), _ = digits
    layer = HubLayer(hub_module, trainable=True)
    model = classifier_on(layer)
    kernel_before = layer._module.kernel.numpy().copy()
    mean_before = layer._module.moving_mean.numpy().copy()
    outputs_before = layer(x_train[:32]).numpy()
    with tf.GradientTape() as tape:
        loss = model.compute_loss(
            x=x_train[:64], y=y_train[:64], y_pred=model(x_train[:64], training=True)
        )
    grads = tape.gradient(loss, model.trainable_variables)
    assert {v.path.split("/")[-1] for v in model.trainable_variables} == {
        "dense_kernel",
        "dense_bias",
        "kernel",
        "bias",
    }
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    history = model.fit(x_train, y_train, epochs=5, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert np.abs(layer._module.kernel.numpy() - kernel_before).max() > 1e-3, (
        "the module's own kernel trained"
    )
    assert np.abs(layer(x_train[:32]).numpy() - outputs_before).max() > 1e-3
    # Inference mode by default: the module's moving statistics did not move.
    np.testing.assert_array_equal(layer._module.moving_mean.numpy(), mean_before)


def test_training_mode_updates_the_module_statistics(hub_module, digits):
    (x_train, y_train), _ = digits
    layer = HubLayer(hub_module, trainable=True, training_mode=True)
    classifier_on(layer).fit(x_train[:128], y_train[:128], epochs=1, batch_size=64, verbose=0)
    assert np.abs(layer._module.moving_mean.numpy()).max() > 1e-3


def test_frozen_module_stays_bit_identical_while_the_head_trains(hub_module, digits):
    (x_train, y_train), _ = digits
    layer = HubLayer(hub_module, trainable=False)
    model = classifier_on(layer)
    assert [v.path.split("/")[-1] for v in model.trainable_variables] == ["kernel", "bias"]
    before = [w.numpy().copy() for w in layer.weights]
    head_before = model.get_layer("head").kernel.numpy().copy()
    model.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0)
    for got, want in zip(layer.weights, before):
        np.testing.assert_array_equal(got.numpy(), want)
    assert np.abs(model.get_layer("head").kernel.numpy() - head_before).max() > 0


def test_keras_round_trip_keeps_the_trained_module_weights(hub_module, digits, tmp_path):
    (x_train, y_train), (x_test, _) = digits
    layer = HubLayer(hub_module, trainable=True)
    model = classifier_on(layer)
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    path = tmp_path / "with_hub.keras"
    model.save(path)
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.saving.load_model(path)
    restored = keras.saving.load_model(path, safe_mode=False)
    np.testing.assert_allclose(
        restored.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-6
    )
    fresh = HubLayer(hub_module)
    assert np.abs(fresh(x_test).numpy() - restored.layers[1](x_test).numpy()).max() > 1e-3, (
        "the .keras file holds the trained weights, not the module's originals"
    )
    assert restored.layers[1].get_config()["handle"] == hub_module


def test_trainable_keras_export_fine_tunes_inside_fit(keras_export, digits):
    model, path = keras_export
    (x_train, y_train), _ = digits
    layer = HubLayer(path, trainable=True)
    classifier = classifier_on(layer)
    conv_before = model.get_layer("conv").kernel.numpy()
    history = classifier.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    trained_conv = [
        w
        for w in layer.weights
        if w.name.endswith("conv2d_kernel") or w.name.endswith("conv_kernel")
    ]
    assert trained_conv and np.abs(trained_conv[0].numpy() - conv_before).max() > 1e-4


def test_bad_handles_and_arguments(hub_module, keras_export, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a folder nor a TF-Hub URL"):
        HubLayer(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="without saved_model.pb"):
        HubLayer(str(tmp_path / "empty"))
    with pytest.raises(TypeError, match="handle must be"):
        HubLayer(42)
    with pytest.raises(ValueError, match="signature='nope'"):
        HubLayer(hub_module, signature="nope")
    _, exported = keras_export
    with pytest.raises(ValueError, match="training_mode=True needs"):
        HubLayer(exported, training_mode=True)
    with pytest.raises(ValueError, match="output_key='logits' given"):
        HubLayer(exported, output_key="logits")(np.zeros((1, 8, 8, 1), "float32"))


def test_signature_with_dict_outputs_needs_an_output_key(keras_export):
    _, path = keras_export
    layer = HubLayer(path, signature="serving_default")
    x = np.zeros((2, 8, 8, 1), "float32")
    key = list(tf.saved_model.load(path).signatures["serving_default"].structured_outputs)[0]
    assert HubLayer(path, signature="serving_default", output_key=key)(x).shape == (2, 4)
    assert layer(x).shape == (2, 4)  # a single output is taken without a key
