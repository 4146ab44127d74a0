"""SavedModel and TFLite export of a real trained model, checked in the LiteRT interpreter."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer import export_saved_model
from keras_transfer import export_tflite
from keras_transfer import tflite_predict
from keras_transfer.export import load_tflite


def test_saved_model_reloads_with_the_same_outputs(trained_digits_model, digits, tmp_path):
    _, (x_test, _) = digits
    report = export_saved_model(trained_digits_model, tmp_path / "served")
    assert report.format == "saved_model" and report.size_bytes > 0
    served = tf.saved_model.load(report.path)
    outputs = served.serve(tf.constant(x_test)).numpy()
    expected = trained_digits_model.predict(x_test, verbose=0)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    signature = served.signatures["serving_default"]
    (_, kwargs) = signature.structured_input_signature
    assert list(kwargs) == ["image"]


def test_single_input_given_as_a_list_is_served_on_a_plain_tensor(tmp_path):
    inputs = keras.Input((4,), name="x")
    model = keras.Model([inputs], keras.layers.Dense(2)(inputs))
    report = export_saved_model(model, tmp_path / "served")
    x = np.ones((3, 4), "float32")
    served = tf.saved_model.load(report.path)  # held: its variables die with it
    outputs = served.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=1e-6)


def test_float32_tflite_matches_keras(trained_digits_model, digits, tmp_path):
    _, (x_test, _) = digits
    report = export_tflite(trained_digits_model, tmp_path / "model.tflite")
    assert (report.quantization, report.input_dtype, report.output_dtype) == (
        "none",
        "float32",
        "float32",
    )
    outputs = tflite_predict(report.path, x_test)
    expected = trained_digits_model.predict(x_test, verbose=0)
    assert np.abs(outputs - expected).max() <= 1e-5


def agreement(a, b):
    return np.mean(np.argmax(a, -1) == np.argmax(b, -1))


def tensor_types(path):
    interpreter = load_tflite(path)
    return [np.dtype(d["dtype"]) for d in interpreter.get_tensor_details()]


def test_int8_tflite_is_integer_inside_and_agrees(trained_digits_model, digits, tmp_path):
    (x_train, _), (x_test, y_test) = digits
    report = export_tflite(
        trained_digits_model, tmp_path / "int8.tflite", "int8", representative_data=x_train
    )
    assert (report.input_dtype, report.output_dtype) == ("int8", "int8")
    assert report.input_quantization[0] > 0 and report.output_quantization[0] > 0
    interpreter = load_tflite(report.path)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    float_tensors = [t for t in tensor_types(report.path) if t.kind == "f"]
    assert not float_tensors, "a fully quantized model holds no float tensors"
    outputs = tflite_predict(report.path, x_test)
    expected = trained_digits_model.predict(x_test, verbose=0)
    assert agreement(outputs, expected) >= 0.98
    float_size = os.path.getsize(export_tflite(trained_digits_model, tmp_path / "f.tflite").path)
    assert report.size_bytes < 0.5 * float_size


def test_int8_with_float_io_keeps_float_tensors_at_the_edges(
    trained_digits_model, digits, tmp_path
):
    (x_train, _), (x_test, _) = digits
    report = export_tflite(
        trained_digits_model,
        tmp_path / "m.tflite",
        "int8",
        representative_data=(x_train, None),
        int8_io=False,
    )
    assert (report.input_dtype, report.output_dtype) == ("float32", "float32")
    expected = trained_digits_model.predict(x_test, verbose=0)
    assert agreement(tflite_predict(report.path, x_test), expected) >= 0.98


def test_int8_calibrates_from_a_tf_data_dataset(trained_digits_model, digits, tmp_path):
    (x_train, y_train), (x_test, _) = digits
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train)).batch(32)
    report = export_tflite(
        trained_digits_model, tmp_path / "m.tflite", "int8", representative_data=dataset
    )
    expected = trained_digits_model.predict(x_test, verbose=0)
    assert agreement(tflite_predict(report.path, x_test), expected) >= 0.98


@pytest.mark.parametrize("mode, weight_type", [("dynamic", "int8"), ("float16", "float16")])
def test_weight_quantized_modes_run_and_agree(
    trained_digits_model, digits, tmp_path, mode, weight_type
):
    _, (x_test, _) = digits
    report = export_tflite(trained_digits_model, tmp_path / f"{mode}.tflite", mode)
    assert report.input_dtype == "float32"
    assert np.dtype(weight_type) in tensor_types(report.path)
    expected = trained_digits_model.predict(x_test, verbose=0)
    outputs = tflite_predict(report.path, x_test)
    assert agreement(outputs, expected) >= 0.98
    assert np.abs(outputs - expected).max() < 0.5


def test_nothing_is_overwritten_without_permission(trained_digits_model, tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_tflite(trained_digits_model, target)
    assert target.read_bytes() == b"keep me"
    # overwrite=True replaces only what the toolkit writes: "keep me" is not a TFLite model.
    with pytest.raises(FileExistsError, match="not a tflite file"):
        export_tflite(trained_digits_model, target, overwrite=True)
    assert target.read_bytes() == b"keep me"
    target.unlink()
    export_tflite(trained_digits_model, target)
    first = target.read_bytes()
    export_tflite(trained_digits_model, target, quantization="float16", overwrite=True)
    assert load_tflite(target) is not None and target.read_bytes() != first

    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "note.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_saved_model(trained_digits_model, folder)
    with pytest.raises(FileExistsError, match="not a SavedModel"):
        export_saved_model(trained_digits_model, folder, overwrite=True)
    assert (folder / "note.txt").read_text() == "keep me"
    served = tmp_path / "served_model"
    export_saved_model(trained_digits_model, served)
    export_saved_model(trained_digits_model, served, overwrite=True)
    assert (served / "saved_model.pb").exists()


def not_convertible_to_builtin_ops():
    inputs = keras.Input((4, 4), name="matrix")
    singular_values = keras.layers.Lambda(lambda m: tf.linalg.svd(m, compute_uv=False))(inputs)
    return keras.Model(inputs, singular_values)


def test_failed_conversion_leaves_no_partial_file(tmp_path):
    target = tmp_path / "svd.tflite"
    with pytest.raises(Exception):
        export_tflite(not_convertible_to_builtin_ops(), target)
    assert os.listdir(tmp_path) == []


def test_failed_conversion_keeps_the_old_file(tmp_path):
    target = tmp_path / "svd.tflite"
    target.write_bytes(b"old")
    with pytest.raises(Exception):
        export_tflite(not_convertible_to_builtin_ops(), target, overwrite=True)
    assert os.listdir(tmp_path) == ["svd.tflite"]
    assert target.read_bytes() == b"old"


def test_bad_arguments_fail_before_any_work(trained_digits_model, tmp_path):
    with pytest.raises(ValueError, match="quantization must be one of"):
        export_tflite(trained_digits_model, tmp_path / "a.tflite", "int4")
    with pytest.raises(ValueError, match="needs representative_data"):
        export_tflite(trained_digits_model, tmp_path / "a.tflite", "int8")
    with pytest.raises(ValueError, match=r"shape \(n, 8, 8, 1\)"):
        export_tflite(
            trained_digits_model,
            tmp_path / "a.tflite",
            "int8",
            representative_data=np.zeros((5, 28, 28, 1)),
        )
    with pytest.raises(ValueError, match="empty dataset"):
        export_tflite(
            trained_digits_model,
            tmp_path / "a.tflite",
            "int8",
            representative_data=tf.data.Dataset.from_tensor_slices(np.zeros((0, 8, 8, 1))),
        )
    with pytest.raises(TypeError, match="model must be a keras.Model"):
        export_tflite("model.keras", tmp_path / "a.tflite")
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="must be built"):
        export_saved_model(unbuilt, tmp_path / "served")
    assert os.listdir(tmp_path) == []


def test_corrupt_or_missing_tflite_is_reported(tmp_path):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="is not a valid TFLite model"):
        tflite_predict(corrupt, np.zeros((1, 8, 8, 1)))
    with pytest.raises(FileNotFoundError, match="TFLite file not found"):
        tflite_predict(tmp_path / "missing.tflite", np.zeros((1, 8, 8, 1)))


def test_predict_checks_input_shape(trained_digits_model, tmp_path):
    report = export_tflite(trained_digits_model, tmp_path / "m.tflite")
    with pytest.raises(ValueError, match=r"x must have shape \(n, 8, 8, 1\)"):
        tflite_predict(report.path, np.zeros((2, 28, 28, 1)))


def test_predict_in_uneven_batches_equals_one_batch(trained_digits_model, digits, tmp_path):
    _, (x_test, _) = digits
    report = export_tflite(trained_digits_model, tmp_path / "m.tflite")
    whole = tflite_predict(report.path, x_test, batch_size=len(x_test))
    chunked = tflite_predict(report.path, x_test, batch_size=37)
    np.testing.assert_allclose(whole, chunked, atol=1e-6)


def test_report_reads_as_one_line(trained_digits_model, digits, tmp_path):
    (x_train, _), _ = digits
    report = export_tflite(trained_digits_model, tmp_path / "m.tflite", "int8", x_train)
    line = str(report)
    assert "\n" not in line
    assert "tflite [int8]" in line and "input int8 (scale" in line


def test_benchmark_reports_latency_with_and_without_default_delegates(
    trained_digits_model, tmp_path
):
    from keras_transfer import benchmark_tflite

    path = export_tflite(trained_digits_model, tmp_path / "m.tflite").path
    for delegates in (True, False):
        report = benchmark_tflite(path, runs=30, warmup=3, default_delegates=delegates)
        assert report.runs == 30 and report.default_delegates is delegates
        assert 0 < report.median_ms <= report.p90_ms
        assert ("builtin kernels only" in str(report)) is (not delegates)
    with pytest.raises(ValueError, match="runs must be >= 1"):
        benchmark_tflite(path, runs=0)
