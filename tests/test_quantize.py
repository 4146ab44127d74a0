"""Quantization-aware training of Keras 3 models through the tf_keras rebuild."""

import os

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer import compare
from keras_transfer import export_tflite
from keras_transfer import quantize_aware
from keras_transfer import to_tf_keras
from keras_transfer.export import load_tflite
from keras_transfer.quantize import is_tf_keras_model


def assert_same_outputs(model, x):
    legacy = to_tf_keras(model)
    assert is_tf_keras_model(legacy) and not isinstance(legacy, keras.Model)
    np.testing.assert_allclose(legacy.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert legacy.count_params() == model.count_params()
    return legacy


def test_functional_cnn_rebuilds_exactly(trained_digits_model, digits):
    _, (x_test, _) = digits
    assert_same_outputs(trained_digits_model, x_test)


def residual_model():
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    branch = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    branch = keras.layers.BatchNormalization(name="depthwise_bn")(branch)
    x = keras.layers.Add(name="residual")([x, branch])
    shared = keras.layers.Conv2D(8, 1, activation="relu", name="shared_pointwise")
    x = keras.layers.Concatenate(name="concat")([shared(x), shared(branch)])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))


def train_briefly(model, digits, epochs=3):
    (x_train, y_train), _ = digits
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    return model


def test_residual_model_with_batchnorm_and_a_shared_layer_rebuilds_exactly(digits):
    keras.utils.set_random_seed(1)
    model = train_briefly(residual_model(), digits)
    moving_mean = model.get_layer("stem_bn").moving_mean.numpy()
    assert np.abs(moving_mean).max() > 0, "training should have moved the BatchNorm statistics"
    _, (x_test, _) = digits
    assert_same_outputs(model, x_test)


def test_sequential_model_rebuilds_exactly(digits):
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(
                16, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-3)
            ),
            keras.layers.Dense(10),
        ]
    )
    train_briefly(model, digits, epochs=1)
    _, (x_test, _) = digits
    assert_same_outputs(model, x_test)


def test_unsupported_layers_are_listed_before_any_work():
    inputs = keras.Input((6, 4))
    x = keras.layers.LSTM(3, name="recurrent")(inputs)
    x = keras.layers.Lambda(lambda t: t * 2, name="doubling")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match=r"recurrent \(LSTM\), doubling \(Lambda\)"):
        quantize_aware(model)


def test_lora_and_subclassed_models_are_refused():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(3, name="adapted")
    model = keras.Model(inputs, dense(inputs))
    dense.enable_lora(2)
    with pytest.raises(ValueError, match=r"adapted \(Dense, LoRA enabled\)"):
        to_tf_keras(model)

    class Custom(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    custom = Custom()
    custom(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="subclassed model"):
        to_tf_keras(custom)
    with pytest.raises(TypeError, match="keras.Model"):
        to_tf_keras("student.keras")


@pytest.fixture(scope="module")
def trained_qat(trained_digits_model, digits):
    (x_train, y_train), _ = digits
    qat = quantize_aware(trained_digits_model)
    qat.compile(optimizer="adam", loss=_legacy_loss())
    history = qat.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    return qat, history


def _legacy_loss():
    import tf_keras

    return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_quantize_aware_trains_and_leaves_the_environment_alone(trained_qat):
    qat, history = trained_qat
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    assert os.environ.get("TF_USE_LEGACY_KERAS") is None
    assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in qat.layers)


def test_quantize_aware_model_exports_to_integer_tflite(
    trained_qat, trained_digits_model, digits, tmp_path
):
    qat, _ = trained_qat
    _, (x_test, y_test) = digits
    report = export_tflite(qat, tmp_path / "qat.tflite", quantization="int8")
    assert (report.input_dtype, report.output_dtype) == ("int8", "int8")
    interpreter = load_tflite(report.path)
    float_tensors = [
        d["name"] for d in interpreter.get_tensor_details() if np.dtype(d["dtype"]).kind == "f"
    ]
    assert not float_tensors
    parity = compare(report.path, qat, (x_test, y_test))
    assert parity.agreement >= 0.98
    float_accuracy = np.mean(trained_digits_model.predict(x_test, verbose=0).argmax(-1) == y_test)
    assert parity.tflite_accuracy >= float_accuracy - 0.02


def test_quantize_aware_model_exports_only_as_int8(trained_qat, tmp_path):
    qat, _ = trained_qat
    with pytest.raises(ValueError, match="exports as int8"):
        export_tflite(qat, tmp_path / "qat.tflite", quantization="float16")
    assert not os.listdir(tmp_path)


def test_quantize_aware_student_learns_from_cached_teacher_logits(
    trained_digits_model, digits, tmp_path
):
    """distill_quantize_aware: the teacher runs once, its logits travel beside the labels."""
    import tf_keras

    from keras_transfer.demo import small_student

    (x_train, y_train), (x_test, y_test) = digits
    keras.utils.set_random_seed(0)
    qat = kt.distill_quantize_aware(
        trained_digits_model,
        small_student((8, 8, 1), 10),
        x_train,
        y_train,
        temperature=2.0,
        alpha=0.1,
        optimizer=tf_keras.optimizers.Adam(1e-2),
        epochs=15,
        batch_size=64,
        validation_data=(x_test, y_test),
        verbose=0,
    )
    logs = qat.history.history
    assert logs["loss"][-1] < 0.3 * logs["loss"][0], logs["loss"]
    assert logs["val_label_accuracy"][-1] > 0.8
    report = export_tflite(qat, tmp_path / "distilled_qat.tflite", quantization="int8")
    parity = compare(report.path, trained_digits_model, (x_test, y_test))
    assert parity.agreement > 0.8, "the int8 student follows its teacher"


def test_quantize_aware_distillation_without_labels(trained_digits_model, digits):
    import tf_keras

    from keras_transfer.demo import small_student

    (x_train, _), (x_test, y_test) = digits
    keras.utils.set_random_seed(0)
    qat = kt.distill_quantize_aware(
        trained_digits_model,
        small_student((8, 8, 1), 10),
        x_train,
        alpha=0.0,
        optimizer=tf_keras.optimizers.Adam(1e-2),
        epochs=10,
        batch_size=64,
        verbose=0,
    )
    assert qat.history.history["loss"][-1] < 0.3 * qat.history.history["loss"][0]
    assert np.mean(qat.predict(x_test, verbose=0).argmax(-1) == y_test) > 0.8


@pytest.mark.parametrize("loss", ["kl", "mse"])
def test_quantize_aware_objective_equals_the_distillers_loss(trained_digits_model, digits, loss):
    """On float logits, the packed-target objective is the Distiller's loss on the same batch."""
    from keras_transfer.demo import small_student
    from keras_transfer.distill_qat import distillation_objective
    from keras_transfer.distill_qat import pack_targets

    (x_train, y_train), _ = digits
    x, y = x_train[:200], y_train[:200]
    keras.utils.set_random_seed(1)
    student = small_student((8, 8, 1), 10)
    distiller = kt.Distiller(
        trained_digits_model, student, temperature=3.0, alpha=0.4, distillation_loss=loss
    )
    distiller.compile("sgd")
    expected = distiller.evaluate(x, y, batch_size=200, verbose=0, return_dict=True)["loss"]
    packed = pack_targets(y, trained_digits_model.predict(x, verbose=0))
    objective = distillation_objective(3.0, 0.4, loss)
    got = float(np.mean(objective(packed, student.predict(x, verbose=0))))
    assert got == pytest.approx(expected, rel=1e-5)


def test_calibration_starts_activation_ranges_at_the_float_model_ranges(
    trained_digits_model, digits
):
    (x_train, _), _ = digits
    qat = quantize_aware(trained_digits_model, calibration_data=x_train[:300])
    logits = trained_digits_model.predict(x_train[:300], verbose=0)
    ranges = {
        v.name.split(":")[0]: float(v.numpy())
        for v in qat.non_trainable_weights
        if v.name.split(":")[0].endswith(
            ("activation_min", "activation_max", "layer_min", "layer_max")
        )
    }
    head = [name for name in ranges if name.endswith("post_activation_max")][-1]
    assert ranges[head] == pytest.approx(max(float(logits.max()), 0.0), rel=1e-4)
    (input_quantizer,) = [layer for layer in qat.layers if type(layer).__name__ == "QuantizeLayer"]
    input_range = {
        v.name.split(":")[0].rsplit("_", 1)[-1]: float(v.numpy())
        for v in input_quantizer.weights
        if v.name.split(":")[0].endswith(("_min", "_max"))
    }  # names get _1, _2 suffixes
    assert input_range == pytest.approx({"min": 0.0, "max": float(x_train[:300].max())})
    untouched = quantize_aware(trained_digits_model)
    assert {
        float(v.numpy())
        for v in untouched.non_trainable_weights
        if v.name.endswith("post_activation_max:0")
    } == {6.0}


def test_calibrated_qat_follows_the_float_model_closer_after_a_short_fit(
    trained_digits_model, digits, tmp_path
):
    """tfmot's [-6, 6] starting range clips logits; a short QAT fit cannot move it far."""
    import tf_keras

    (x_train, y_train), (x_test, y_test) = digits
    diffs = {}
    for name, calibration in (("default", None), ("calibrated", x_train[:500])):
        keras.utils.set_random_seed(0)
        qat = quantize_aware(trained_digits_model, calibration_data=calibration)
        qat.compile(
            tf_keras.optimizers.Adam(1e-4),
            tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        qat.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0)
        report = export_tflite(qat, tmp_path / f"{name}.tflite", quantization="int8")
        diffs[name] = compare(report.path, trained_digits_model, (x_test, y_test)).max_abs_diff
    assert diffs["calibrated"] < 0.5 * diffs["default"], diffs


def test_calibration_data_must_not_be_empty(trained_digits_model):
    with pytest.raises(ValueError, match="calibration_data is empty"):
        quantize_aware(trained_digits_model, calibration_data=np.zeros((0, 8, 8, 1), "float32"))
