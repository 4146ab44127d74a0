"""The `keras-transfer demo` main job, end to end on the bundled digits."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transfer as kt
from keras_transfer import demo
from keras_transfer import tflite_predict
from tests.conftest import REPO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = demo.DemoSettings(
    labels_per_class=5,
    source_epochs=5,
    adapt_epochs=3,
    target_epochs=2,
    head_epochs=1,
    fine_tune_epochs=1,
    distill_epochs=5,
    qat_epochs=1,
    verbose=0,
)
STAGES = [
    "source model",
    "source only (no adaptation)",
    "adapted without labels (MMD)",
    "target from scratch",
    "fine-tuned (the teacher)",
    "student trained alone",
    "distilled student",
    "SavedModel",
    "TFLite float32",
    "TFLite int8",
    "TFLite int8 QAT",
]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return demo.run_demo("digits", out=str(out), settings=SMALL), out


def test_make_task_shifts_the_target_domain_and_keeps_few_labels():
    task = demo.make_task("digits", labels_per_class=7, seed=0)
    x_source, x_target = task.source_train[0], task.target_unlabelled
    assert len(x_target) > 9 * len(task.target_train[0])
    assert np.bincount(task.target_train[1]).tolist() == [7] * 10
    assert set(np.unique(task.source_train[1])) == set(range(10)) == set(task.classes)
    assert task.input_shape == (8, 8, 1)
    # the two domains split the training images between them
    (x_train, _), _ = kt.load_digits(seed=0)
    assert len(x_source) + len(x_target) == len(x_train) and abs(len(x_source) - len(x_target)) <= 1
    # the target domain is lit unevenly: brighter at the bottom than the clean test images
    x_test, x_shifted = task.source_test[0], task.target_test[0]
    np.testing.assert_array_equal(task.source_test[1], task.target_test[1])
    assert np.all(x_shifted >= x_test) and x_shifted[:, -1].mean() > x_test[:, -1].mean() + 0.2
    assert x_target[:, -1].mean() > x_source[:, -1].mean() + 0.2
    again = demo.make_task("digits", labels_per_class=7, seed=0)
    np.testing.assert_array_equal(task.target_train[0], again.target_train[0])


def test_make_task_rejects_bad_arguments():
    with pytest.raises(ValueError, match="data must be one of"):
        demo.make_task("imagenet")
    with pytest.raises(ValueError, match="labels_per_class must be a positive int"):
        demo.make_task("digits", labels_per_class=0)
    with pytest.raises(ValueError, match="exceeds the"):
        demo.make_task("digits", labels_per_class=1000)


def test_fine_tuning_starts_from_the_adapted_weights_and_leaves_them():
    task = demo.make_task("digits", labels_per_class=5, seed=0)
    source, _ = demo.train_source(task, demo.DemoSettings(source_epochs=3, verbose=0))
    backbone, classifier = demo.adaptation.split_at_features(source)
    before = [w.copy() for w in source.get_weights()]
    settings = demo.DemoSettings(head_epochs=0, fine_tune_epochs=1, verbose=0)
    tuned, row = demo.fine_tune_on_target_labels(task, backbone, classifier, settings)
    for got, want in zip(source.get_weights(), before):
        np.testing.assert_array_equal(got, want)  # the adapted network is not touched
    conv_source = source.get_layer("conv1").get_weights()[0]
    conv_tuned = tuned.get_layer("features").get_layer("conv1").get_weights()[0]
    assert 0 < np.abs(conv_tuned - conv_source).max() < 0.05  # ten small steps away from it
    assert row.baseline == "target from scratch" and row.claim == "beats"


def test_stage_progress_redraws_in_a_terminal_and_prints_one_line_when_piped():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    x = np.zeros((64, 4), "float32")
    for stream, live_lines in ((io.StringIO(), 0), (Terminal(), 1)):
        progress = demo.StageProgress(stream)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        progress.begin(2, 10, "scratch")
        model.fit(x, x[:, 0], batch_size=4, epochs=2, verbose=0, callbacks=[progress])
        progress.end(3.0)
        text = stream.getvalue()
        assert text.endswith("\n") and "\x1b" not in text
        assert text.split("\r")[-1].rstrip() == "[3/10] scratch  3.0 s"
        assert text.count("\n") == 1
        assert ("step 30/32  ETA" in text) == bool(live_lines)  # the step counter, live only


def test_run_writes_every_file_it_names(small_run):
    report, out = small_run
    for kind, path in report.files.items():
        assert os.path.exists(path), kind
        assert os.path.commonpath([path, str(out)]) == str(out)
    for figure in ("png", "confusion_png", "adaptation_embedding_png", "adaptation_curves_png"):
        with open(report.files[figure], "rb") as f:
            assert f.read(8) == PNG_SIGNATURE
        assert os.path.getsize(report.files[figure]) > 10_000


def test_json_holds_the_table(small_run):
    report, _ = small_run
    with open(report.files["json"]) as f:
        payload = json.load(f)
    stages = [row["stage"] for row in payload["rows"]]
    assert stages == STAGES
    assert payload["seed"] == 0 and payload["versions"]["keras_transfer"] == kt.__version__
    # every row measured against a baseline says which, what it must show, and whether it does
    orderings = {o["stage"]: o for o in payload["orderings"]}
    assert set(orderings) == {row.stage for row in report.rows if row.baseline}
    assert orderings["distilled student"]["baseline"] == "student trained alone"
    for ordering in orderings.values():
        gain = ordering["accuracy"] - ordering["baseline_accuracy"]
        assert ordering["gain"] == pytest.approx(gain)
        if ordering["claim"] == "beats":
            assert ordering["holds"] == (gain > 0)
    assert payload["settings"]["labels_per_class"] == 5
    assert set(payload["adaptation"]) == {
        "proxy_a_distance_source_only",
        "proxy_a_distance_adapted",
    }
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in payload["rows"])
    table = report.table()
    for stage in stages:
        assert stage in table


def test_exported_files_predict_like_the_keras_model(small_run):
    report, _ = small_run
    task = demo.make_task("digits", labels_per_class=5, seed=0)
    x, y = task.target_test
    model = keras.saving.load_model(report.files["student_keras"], safe_mode=True)
    teacher = keras.saving.load_model(report.files["teacher_keras"], safe_mode=True)
    assert model.count_params() < teacher.count_params() / 5
    reference = model.predict(x, verbose=0)
    served = tf.saved_model.load(report.files["saved_model"])
    np.testing.assert_allclose(served.serve(tf.constant(x)).numpy(), reference, atol=1e-5)
    float_outputs = tflite_predict(report.files["tflite_float32"], x)
    assert np.abs(float_outputs - reference).max() <= 1e-5
    int8_outputs = tflite_predict(report.files["tflite_int8"], x)
    assert np.mean(int8_outputs.argmax(-1) == reference.argmax(-1)) >= 0.95
    qat_outputs = tflite_predict(report.files["tflite_int8_qat"], x)
    rows = {row.stage: row for row in report.rows}
    assert rows["TFLite int8 QAT"].agreement >= 0.95  # with the QAT model it came from
    assert rows["TFLite float32"].accuracy == pytest.approx(demo.accuracy(float_outputs, y))
    assert rows["TFLite int8 QAT"].accuracy == pytest.approx(demo.accuracy(qat_outputs, y))
    # The 8x8 student has ~1.4K weights, so the flatbuffer's fixed overhead dominates its size.
    assert rows["TFLite int8"].file_bytes < 0.7 * rows["TFLite float32"].file_bytes


def test_overwrite_knows_every_file_a_run_writes(small_run):
    """run_demo(overwrite=True) removes a folder holding only RUN_FILES: the list must stay true."""
    from keras_transfer.demo.run import RUN_FILES

    report, _ = small_run
    folder = os.path.dirname(report.files["json"])
    assert set(os.listdir(folder)) <= RUN_FILES
    assert {os.path.basename(path) for path in report.files.values()} <= RUN_FILES


def test_a_second_run_does_not_overwrite_the_first(small_run):
    report, out = small_run
    stamp = os.path.getmtime(report.files["json"])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        demo.run_demo("digits", out=str(out), settings=SMALL)
    assert os.path.getmtime(report.files["json"]) == stamp


@pytest.mark.slow
def test_cli_demo_with_default_settings(tmp_path):
    """The README's main job, as a user runs it: the console command, default data."""
    env = {**os.environ, "PYTHONPATH": REPO, "KERAS_BACKEND": "tensorflow"}
    command = [
        sys.executable,
        "-m",
        "keras_transfer.cli",
        "demo",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TFLite int8" in result.stdout
    # One screen: a line per stage, the table, the files; no terminal codes in piped output.
    lines = result.stdout.splitlines()
    assert len(lines) <= 40 and "\x1b" not in result.stdout, result.stdout
    assert sum(line.startswith("[") and "/10] " in line for line in lines) == 10
    # and nothing else on the screen: TensorFlow's and LiteRT's notices stay off stderr
    assert len(lines) + len(result.stderr.splitlines()) <= 40, result.stderr
    run_dir = tmp_path / "demo-digits"
    for name in (
        "teacher.keras",
        "student.keras",
        "student_float32.tflite",
        "student_int8.tflite",
        "student_int8_qat.tflite",
        "demo_report.json",
        "demo_report.png",
        "confusion_int8.png",
        "adaptation_embedding.png",
        "adaptation_curves.png",
        "saved_model/saved_model.pb",
    ):
        assert (run_dir / name).exists(), name
    payload = json.loads((run_dir / "demo_report.json").read_text())
    by_stage = {row["stage"]: row for row in payload["rows"]}
    assert by_stage["source model"]["accuracy"] > 0.85  # the source task is really learnt
    # Each stage beats (or matches) its baseline on the default seed: adapted without labels >
    # source only; fine-tuned > the same network from scratch on the labels; distilled > the
    # student alone on them; int8 at most 0.5 points below the float student, agreement >= 0.99;
    # QAT >= post-training int8.
    claims = {o["stage"]: (o["claim"], o["baseline"], o["holds"]) for o in payload["orderings"]}
    assert claims == {
        "adapted without labels (MMD)": ("beats", "source only (no adaptation)", True),
        "fine-tuned (the teacher)": ("beats", "target from scratch", True),
        "distilled student": ("beats", "student trained alone", True),
        "SavedModel": ("matches", "distilled student", True),
        "TFLite float32": ("matches", "distilled student", True),
        "TFLite int8": ("matches", "distilled student", True),
        "TFLite int8 QAT": ("at least", "TFLite int8", True),
    }, claims
    int8, student = by_stage["TFLite int8"], by_stage["distilled student"]
    assert int8["accuracy"] >= student["accuracy"] - 0.005 and int8["agreement"] >= 0.99
    # adaptation brings the domains' features closer
    adaptation = payload["adaptation"]
    assert adaptation["proxy_a_distance_adapted"] < adaptation["proxy_a_distance_source_only"]
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 2
    assert "--overwrite" in again.stderr and "Traceback" not in again.stderr
