"""load_backbone from keras.applications names, weights files, Keras models, .keras files and
SavedModels.
"""

import keras
import numpy as np
import pytest

import keras_transfer as kt


def test_application_by_name_gives_pooled_features_and_respects_trainable():
    backbone = kt.load_backbone("mobilenet_v3_small", input_shape=(32, 32, 3))
    assert backbone.output.shape == (None, 576)
    assert backbone.trainable_weights == []
    features = backbone(np.random.default_rng(0).random((2, 32, 32, 3), dtype="float32") * 255)
    assert features.shape == (2, 576)
    assert kt.load_backbone(
        "MobileNetV3Small", input_shape=(32, 32, 3), trainable=True
    ).trainable_weights


def test_application_loads_a_local_weights_file(tmp_path):
    keras.utils.set_random_seed(0)
    first = kt.load_backbone("mobilenet_v3_small", input_shape=(32, 32, 3))
    path = str(tmp_path / "small.weights.h5")
    first.save_weights(path)
    keras.utils.set_random_seed(1)
    second = kt.load_backbone("mobilenet_v3_small", input_shape=(32, 32, 3), weights=path)
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype="float32") * 255
    np.testing.assert_allclose(second.predict(x, verbose=0), first.predict(x, verbose=0), atol=1e-5)


def test_keras_model_is_cut_at_a_named_or_indexed_layer(trained_digits_model, digits, tmp_path):
    _, (x_test, _) = digits
    names = [layer.name for layer in trained_digits_model.layers]
    cut = names[-2]
    by_name = kt.load_backbone(trained_digits_model, output_layer=cut)
    by_index = kt.load_backbone(trained_digits_model, output_layer=-2)
    want = keras.Model(
        trained_digits_model.inputs, trained_digits_model.get_layer(cut).output
    ).predict(x_test, verbose=0)
    np.testing.assert_allclose(by_name.predict(x_test, verbose=0), want, atol=1e-6)
    np.testing.assert_allclose(by_index.predict(x_test, verbose=0), want, atol=1e-6)
    assert by_name.trainable_weights == []
    assert len(trained_digits_model.trainable_weights) == len(trained_digits_model.weights), (
        "freezing the backbone leaves the model it was cut from as it was"
    )
    path = str(tmp_path / "source.keras")
    trained_digits_model.save(path)
    from_file = kt.load_backbone(path, output_layer=cut)
    np.testing.assert_allclose(from_file.predict(x_test, verbose=0), want, atol=1e-6)


def test_saved_model_folder_becomes_a_backbone_with_the_signature_input_shape(
    trained_digits_model, digits, tmp_path
):
    _, (x_test, _) = digits
    path = str(tmp_path / "exported")
    trained_digits_model.export(path, verbose=False)
    backbone = kt.load_backbone(path, trainable=True)
    assert tuple(backbone.input.shape[1:]) == (8, 8, 1)
    np.testing.assert_allclose(
        backbone.predict(x_test, verbose=0),
        trained_digits_model.predict(x_test, verbose=0),
        atol=1e-5,
    )
    assert len(backbone.trainable_weights) == len(trained_digits_model.trainable_weights)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: kt.load_backbone("alexnet"),
            ValueError,
            "neither a known keras.applications name",
        ),
        (
            lambda: kt.load_backbone("resnet50", input_shape=(8, 8, 1)),
            ValueError,
            r"input_shape=\(8, 8, 1\) cannot be taken by ResNet50",
        ),
        (
            lambda: kt.load_backbone(
                "mobilenet_v3_small", input_shape=(32, 32, 3), weights="missing.weights.h5"
            ),
            FileNotFoundError,
            "weights file not found",
        ),
        (lambda: kt.load_backbone(42), TypeError, "spec must be"),
        (lambda: kt.load_backbone("missing.keras"), FileNotFoundError, "no such .keras file"),
    ],
)
def test_bad_specs_fail_before_any_work(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_bad_cuts_of_a_keras_model(trained_digits_model):
    with pytest.raises(ValueError, match="output_layer='nope' is not a layer"):
        kt.load_backbone(trained_digits_model, output_layer="nope")
    with pytest.raises(ValueError, match="output_layer=99 is out of range"):
        kt.load_backbone(trained_digits_model, output_layer=99)
    with pytest.raises(ValueError, match=r"input_shape=\(28, 28, 1\) does not fit"):
        kt.load_backbone(trained_digits_model, input_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="weights='imagenet' applies to keras.applications names"):
        kt.load_backbone(trained_digits_model, weights="imagenet")
