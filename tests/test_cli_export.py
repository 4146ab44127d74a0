"""`keras-transfer export` / `evaluate`, and the TensorFlow-free edge runner."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_transfer import tflite_predict
from keras_transfer.cli import main
from tests.conftest import REPO

RUNNER = os.path.join(REPO, "export", "run_tflite.py")


@pytest.fixture(scope="module")
def files(trained_digits_model, digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (x_train, _), (x_test, y_test) = digits
    model_path = str(folder / "student.keras")
    trained_digits_model.save(model_path)
    calibration = str(folder / "calibration.npz")
    np.savez(calibration, x=x_train[:200])
    test = str(folder / "test.npz")
    np.savez(test, x=x_test, y=y_test)
    return folder, model_path, calibration, test


def test_export_int8_then_evaluate_against_keras(files, capsys):
    folder, model_path, calibration, test = files
    out = str(folder / "int8")
    code = main(
        [
            "export",
            model_path,
            "--format",
            "tflite",
            "--quantize",
            "int8",
            "--calibration",
            calibration,
            "--out",
            out,
        ]
    )
    assert code == 0
    tflite = os.path.join(out, "student_int8.tflite")
    assert "input int8" in capsys.readouterr().out
    assert main(["evaluate", tflite, "--data", test, "--keras", model_path, "--runs", "5"]) == 0
    printed = capsys.readouterr().out
    agreement = float(printed.split("top-1 agreement ")[1].split(",")[0])
    assert agreement >= 0.98
    assert "median" in printed


def test_export_saved_model_and_float_tflite(files, capsys):
    folder, model_path, _, test = files
    out = str(folder / "float")
    assert main(["export", model_path, "--format", "saved_model", "--out", out]) == 0
    assert os.path.isfile(os.path.join(out, "student_saved_model", "saved_model.pb"))
    assert main(["export", model_path, "--out", out]) == 0
    x = np.load(test)["x"]
    model = keras.saving.load_model(model_path)
    outputs = tflite_predict(os.path.join(out, "student.tflite"), x)
    assert np.abs(outputs - model.predict(x, verbose=0)).max() <= 1e-5


def test_export_refuses_to_overwrite(files, capsys):
    folder, model_path, _, _ = files
    out = str(folder / "twice")
    assert main(["export", model_path, "--out", out]) == 0
    assert main(["export", model_path, "--out", out]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main(["export", model_path, "--out", out, "--overwrite"]) == 0


def test_int8_without_calibration_is_refused(files, capsys):
    folder, model_path, _, _ = files
    assert main(["export", model_path, "--quantize", "int8", "--out", str(folder / "x")]) == 2
    assert "needs representative_data" in capsys.readouterr().err
    assert not os.path.exists(folder / "x" / "student_int8.tflite")


def test_code_in_a_keras_file_needs_unsafe(tmp_path, capsys):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    assert main(["export", path, "--out", str(tmp_path / "out")]) == 2
    assert "--unsafe" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out" / "lambda.tflite")
    assert main(["export", path, "--out", str(tmp_path / "out"), "--unsafe"]) == 0
    doubled = tflite_predict(tmp_path / "out" / "lambda.tflite", np.ones((2, 4)))
    np.testing.assert_allclose(doubled, 2.0)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["export", "{tmp}/missing.keras"], "MODEL file not found"),
        (["export", "{tmp}/corrupt.keras"], "not a valid .keras archive"),
        (["export", "{tmp}/model.h5"], "must be a .keras file"),
        (
            ["evaluate", "{tmp}/corrupt.tflite", "--data", "{tmp}/data.npz"],
            "not a valid TFLite model",
        ),
        (
            ["evaluate", "{tmp}/corrupt.tflite", "--data", "{tmp}/missing.npz"],
            "--data file not found",
        ),
        (
            ["evaluate", "{tmp}/corrupt.tflite", "--data", "{tmp}/corrupt.npz"],
            "not a readable .npz",
        ),
        (
            ["evaluate", "{tmp}/corrupt.tflite", "--data", "{tmp}/data.npz", "--key", "images"],
            "has no array 'images'",
        ),
    ],
)
def test_bad_files_get_clear_errors(tmp_path, capsys, arguments, message):
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip")
    (tmp_path / "model.h5").write_bytes(b"")
    (tmp_path / "corrupt.tflite").write_bytes(b"\x00" * 32)
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated")
    np.savez(tmp_path / "data.npz", x=np.zeros((2, 8, 8, 1), "float32"))
    code = main([a.format(tmp=tmp_path) for a in arguments])
    assert code == 2
    assert message in capsys.readouterr().err


BLOCK_TENSORFLOW = (
    "import runpy, sys\n"
    "for name in ('tensorflow', 'keras', 'tf_keras', 'keras_transfer', 'jax', 'torch'):\n"
    "    sys.modules[name] = None  # any import of these now raises ImportError\n"
    "sys.argv = ['run_tflite.py'] + sys.argv[1:]\n"
    "runpy.run_path({runner!r}, run_name='__main__')\n"
)


def run_edge(*arguments):
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TENSORFLOW.format(runner=RUNNER), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_edge_runner_works_without_tensorflow(files):
    folder, model_path, calibration, test = files
    out = str(folder / "edge")
    assert (
        main(
            ["export", model_path, "--quantize", "int8", "--calibration", calibration, "--out", out]
        )
        == 0
    )
    tflite = os.path.join(out, "student_int8.tflite")
    result = run_edge(tflite, test, "--runs", "20")
    assert result.returncode == 0, result.stderr
    edge_accuracy = float(result.stdout.split("accuracy: ")[1].split()[0])
    data = np.load(test)
    library_accuracy = np.mean(tflite_predict(tflite, data["x"]).argmax(-1) == data["y"])
    assert edge_accuracy == pytest.approx(library_accuracy, abs=5e-5)  # printed to 4 places
    assert "median latency" in result.stdout

    npy = str(folder / "inputs.npy")
    np.save(npy, data["x"][:5])
    result = run_edge(tflite, npy, "--runs", "3")
    assert result.returncode == 0, result.stderr
    assert "examples: 5" in result.stdout


def test_edge_runner_errors(tmp_path, files):
    folder, _, _, test = files
    (tmp_path / "corrupt.tflite").write_bytes(b"\x00" * 32)
    result = run_edge(str(tmp_path / "corrupt.tflite"), test)
    assert result.returncode != 0 and "not a valid TFLite model" in result.stderr
    result = run_edge(str(tmp_path / "missing.tflite"), test)
    assert result.returncode != 0 and "MODEL file not found" in result.stderr


def test_evaluate_reads_column_labels_as_labels(files, capsys):
    """y saved as (n, 1) gives the accuracy that (n,) gives, not a broadcast (n, n) comparison."""
    folder, model_path, _, test = files
    out = str(folder / "column")
    assert main(["export", model_path, "--out", out]) == 0
    tflite = os.path.join(out, "student.tflite")
    with np.load(test) as archive:
        x, y = archive["x"], archive["y"]
    column = str(folder / "column.npz")
    np.savez(column, x=x, y=y[:, None])
    capsys.readouterr()
    accuracies = []
    for data in (test, column):
        assert main(["evaluate", tflite, "--data", data, "--runs", "2"]) == 0
        accuracies.append(capsys.readouterr().out.split("accuracy ")[1].split()[0])
    assert accuracies[0] == accuracies[1] and float(accuracies[0]) > 0.5
