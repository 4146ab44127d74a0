"""From a folder of real images to a `.tflite` that MediaPipe Tasks runs: folders, training,
metadata, the CLI, resuming a killed run."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.export import tflite_predict
from keras_transfer.export.metadata import add_classifier_metadata
from keras_transfer.export.metadata import read_classifier_metadata
from keras_transfer.images import predict_images
from keras_transfer.images import read_image_folder
from keras_transfer.images import read_unlabelled_folder
from keras_transfer.images import split_folder
from keras_transfer.images.run import train_from_folder
from tests.conftest import shared_path

CLASSES = [f"digit_{i}" for i in range(10)]


def _write_png(path, pixels):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(tf.constant(pixels)))


def write_digit_folder(root, digits, per_class=60):
    """The scikit-learn digits as grey PNGs, one sub-folder per class; returns (x, y) written."""
    (x, y), _ = digits
    pixels = np.round(x * 255).astype(np.uint8)
    chosen = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
    for i in chosen:
        _write_png(os.path.join(root, CLASSES[y[i]], f"{i:04d}.png"), pixels[i])
    return pixels[chosen], y[chosen]


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory, digits):
    root = str(tmp_path_factory.mktemp("digits") / "photos")
    pixels, labels = write_digit_folder(root, digits)
    return root, pixels, labels


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, digit_folder):
    """One `train_from_folder` over the digit folder with its defaults, written to `out`."""
    out = str(tmp_path_factory.mktemp("run") / "out")
    return train_from_folder(digit_folder[0], out=out, epochs=25), out


def test_a_folder_reads_as_its_classes_pixels_and_a_stratified_split(digit_folder):
    root, pixels, labels = digit_folder
    folder = read_image_folder(root)
    assert folder.class_names == tuple(CLASSES)
    assert folder.images.shape == (600, 8, 8, 1)  # grey detected, the images' own size
    np.testing.assert_array_equal(np.bincount(folder.labels), np.bincount(labels))
    for path, image, label in zip(folder.files, folder.images, folder.labels):
        assert os.path.basename(os.path.dirname(path)) == CLASSES[label]
        decoded = tf.io.decode_png(tf.io.read_file(path)).numpy()
        np.testing.assert_array_equal(image, decoded)  # same size: no resampling
    parts = split_folder(folder, 0.1, 0.2, seed=3)
    files = [set(p.files) for p in parts.values()]
    assert sum(map(len, files)) == 600 and not (files[0] & files[1] or files[1] & files[2])
    np.testing.assert_array_equal(np.bincount(parts["test"].labels), [12] * 10)
    np.testing.assert_array_equal(np.bincount(parts["validation"].labels), [6] * 10)
    again = split_folder(folder, 0.1, 0.2, seed=3)
    assert again["test"].files == parts["test"].files
    assert split_folder(folder, 0.1, 0.2, seed=4)["test"].files != parts["test"].files


def test_colour_jpegs_resize_and_unlabelled_folders_read(tmp_path):
    x, _ = np.load(os.path.join(shared_path("mnist_m"), "mnist_m_test.npz")).values()
    for i in range(6):
        folder = tmp_path / "photos" / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        tf.io.write_file(str(folder / f"{i}.jpg"), tf.io.encode_jpeg(tf.constant(x[i])))
        _write_png(str(tmp_path / "street" / "day" / f"{i}.png"), x[100 + i])
    folder = read_image_folder(tmp_path / "photos", image_size=(16, 24))
    assert folder.images.shape == (6, 16, 24, 3) and folder.class_names == ("even", "odd")
    assert read_unlabelled_folder(tmp_path / "street", None, "rgb").images.shape == (6, 32, 32, 3)
    street = read_unlabelled_folder(tmp_path / "street", (16, 24), "rgb")
    assert street.labels is None and street.images.shape == (6, 16, 24, 3)
    expected = tf.image.resize(x[100:106], (16, 24)).numpy()
    assert np.abs(street.images.astype(float) - expected).max() <= 0.5 + 1e-6


def test_bad_files_stop_the_read_naming_the_file_or_are_skipped_with_a_count(tmp_path):
    good = np.full((8, 8, 1), 200, np.uint8)
    for label in ("a", "b"):
        for i in range(3):
            _write_png(str(tmp_path / label / f"{i}.png"), good)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "c").mkdir()
    with pytest.raises(ValueError, match="class folder .*c.* holds no image"):
        read_image_folder(tmp_path)
    folder = read_image_folder(tmp_path, on_bad_file="skip")
    assert folder.class_names == ("a", "b") and len(folder.files) == 6
    assert sorted(os.path.basename(p) for p, _ in folder.skipped) == [
        "broken.png",
        "c",
        "notes.txt",
    ]
    (tmp_path / "c").rmdir()
    with pytest.raises(ValueError, match="notes.txt.*not an image file"):
        read_image_folder(tmp_path)
    (tmp_path / "a" / "notes.txt").unlink()
    with pytest.raises(ValueError, match="broken.png.*cannot be decoded"):
        read_image_folder(tmp_path)
    (tmp_path / "b" / "broken.png").unlink()
    _write_png(str(tmp_path / "loose.png"), good)
    with pytest.raises(ValueError, match="files with no class: \\['loose.png'\\]"):
        read_image_folder(tmp_path)
    _write_png(str(tmp_path / "single" / "only" / "0.png"), good)
    with pytest.raises(ValueError, match="at least two class sub-folders .*only"):
        read_image_folder(tmp_path / "single")


def test_metadata_names_the_classes_and_leaves_the_model_as_it_was(tmp_path, trained_run):
    run, out = trained_run
    path = os.path.join(out, "model.tflite")
    meta = read_classifier_metadata(path)
    assert meta.labels == tuple(CLASSES) and meta.color_space == "rgb"
    assert meta.mean == (0.0, 0.0, 0.0) and meta.std == (1.0, 1.0, 1.0)
    with open(os.path.join(out, "labels.txt")) as f:
        assert f.read().split() == CLASSES
    # Writing again replaces the metadata (one entry, new labels) and the model still runs alike.
    again = str(tmp_path / "renamed.tflite")
    add_classifier_metadata(path, [c.upper() for c in CLASSES], path=again, std=255.0)
    x = np.repeat(run.parts["test"].images.astype("float32"), 3, axis=-1)
    np.testing.assert_array_equal(tflite_predict(again, x), tflite_predict(path, x))
    renamed = read_classifier_metadata(again)
    assert renamed.labels[0] == "DIGIT_0" and renamed.std == (255.0,) * 3
    with pytest.raises(ValueError, match="labels has 3 names but .* gives 10 scores"):
        add_classifier_metadata(path, ["a", "b", "c"], path=str(tmp_path / "x.tflite"))
    assert not os.path.exists(tmp_path / "x.tflite")


def test_a_folder_becomes_a_model_an_int8_file_and_a_report(trained_run):
    run, out = trained_run
    report = run.report
    assert report["images"] == {"train": 480, "validation": 60, "test": 60}
    assert report["keras_accuracy"]["test"] >= 0.85  # chance is 0.10
    assert report["tflite"]["agreement_with_keras"] >= 0.95
    assert report["tflite"]["accuracy"] >= 0.85
    assert report["first_epoch"]["train"] == 0
    for name in ("model.keras", "model.tflite", "labels.txt", "report.json", "report.md"):
        assert os.path.isfile(os.path.join(out, name)), name
    for name in ("confusion_matrix.png", "training_curves.png"):
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "report.json")) as f:
        assert json.load(f)["tflite"]["accuracy"] == report["tflite"]["accuracy"]
    assert "| digit_3 |" in open(os.path.join(out, "report.md")).read()


def test_predict_names_the_class_of_held_out_images_from_either_file(trained_run):
    run, out = trained_run
    test = run.parts["test"]
    files = list(test.files[:10])
    from_tflite = predict_images(os.path.join(out, "model.tflite"), files, top_k=2)
    from_keras = predict_images(os.path.join(out, "model.keras"), files, top_k=2)
    names = [CLASSES[label] for label in test.labels[:10]]
    right = sum(top[0][0] == name for top, name in zip(from_tflite, names))
    assert right >= 8
    assert [t[0][0] for t in from_tflite] == [k[0][0] for k in from_keras]
    assert all(1 >= top[0][1] >= top[1][1] >= 0 for top in from_tflite + from_keras)


def test_the_cli_predicts_with_labels_from_the_metadata(trained_run):
    run, out = trained_run
    image = run.parts["test"].files[0]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_transfer.cli",
            "predict",
            os.path.join(out, "model.tflite"),
            image,
            "--top-k",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    label = CLASSES[run.parts["test"].labels[0]]
    assert result.stdout.strip().startswith(f"{image}: {label} ")


def test_mediapipe_tasks_runs_the_exported_file_as_litert_does(trained_run):
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core import base_options
    except ImportError as error:
        pytest.skip(f"mediapipe is not installed ({error}); README's test command installs it")
    run, out = trained_run
    path = os.path.join(out, "model.tflite")
    images = np.repeat(run.parts["test"].images[:20], 3, axis=-1)  # grey as RGB, as a camera
    expected = tflite_predict(path, images.astype("float32"))
    options = vision.ImageClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=path), max_results=10
    )
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image, scores in zip(images, expected):
            result = classifier.classify(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
            )
            categories = result.classifications[0].categories
            assert categories[0].category_name == CLASSES[int(np.argmax(scores))]
            got = {c.category_name: c.score for c in categories}
            np.testing.assert_allclose([got[c] for c in CLASSES], scores, atol=1e-6)


def test_a_killed_train_continues_from_its_last_epoch(tmp_path, digit_folder):
    out = str(tmp_path / "out")
    command = [
        sys.executable,
        "-m",
        "keras_transfer.cli",
        "train",
        digit_folder[0],
        "--out",
        out,
        "--epochs",
        "60",
        "--quiet",
    ]
    backup = os.path.join(out, ".keras-transfer", "backup", "train")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not glob.glob(os.path.join(backup, "**", "*"), recursive=True):
        time.sleep(0.5)
    time.sleep(3)  # a few more epochs
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not os.path.exists(os.path.join(out, "report.json")), "finished before the kill"
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    assert report["first_epoch"]["train"] > 0  # it went on from the backup, not from epoch 0
    assert report["keras_accuracy"]["test"] >= 0.85


def test_an_out_folder_that_is_not_a_run_is_refused_untouched(tmp_path, digit_folder):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="not a keras-transfer run"):
        train_from_folder(digit_folder[0], out=str(out), epochs=1)
    assert os.listdir(out) == ["holiday.jpg"] and (out / "holiday.jpg").read_bytes() == b"keep"


def test_a_distilled_quantization_aware_student_exports_as_int8(tmp_path, digit_folder):
    run = train_from_folder(
        digit_folder[0],
        out=str(tmp_path / "out"),
        student="compact_cnn",
        qat=True,
        epochs=10,
        distill_epochs=5,
        qat_epochs=1,
    )
    teacher = keras.saving.load_model(run.files["teacher"])
    assert run.model.count_params() < teacher.count_params() / 2
    assert list(run.report["epochs_run"]) == ["train", "distil", "quantization-aware training"]
    assert (
        run.report["tflite"]["accuracy"] >= 0.7
        and run.report["tflite"]["agreement_with_keras"] >= 0.97
    )
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=run.files["tflite"])
    kinds = {d["dtype"].__name__ for d in interpreter.get_tensor_details()}
    assert "int8" in kinds  # integer body, float32 image in and scores out
    assert read_classifier_metadata(run.files["tflite"]).labels == tuple(CLASSES)


def test_folding_the_pixel_scaling_into_the_first_convolution_keeps_the_outputs(rng):
    from keras_transfer.images import compact_cnn
    from keras_transfer.images.classifier import pixels_folded

    model = compact_cnn((12, 12, 3), 4)
    folded = pixels_folded(model)
    assert "pixels" not in [layer.name for layer in folded.layers]
    x = rng.uniform(0, 255, (8, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_a_backbone_from_a_keras_file_is_fine_tuned_in_two_phases(tmp_path, digit_folder, digits):
    """A tiny backbone pretrained here and saved as `.keras` stands in for downloaded weights."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="b_conv")(inputs)
    x = keras.layers.Flatten(name="b_flat")(x)
    backbone = keras.Model(inputs, x, name="tiny_backbone")
    (x_digits, y_digits), _ = digits
    pretraining = keras.Sequential([backbone, keras.layers.Dense(10)])
    pretraining.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pretraining.fit(x_digits[y_digits < 5], y_digits[y_digits < 5], epochs=5, verbose=0)
    path = str(tmp_path / "tiny_backbone.keras")
    backbone.save(path)
    out = str(tmp_path / "out")
    run = train_from_folder(digit_folder[0], out=out, backbone=path, epochs=3, fine_tune_epochs=2)
    assert list(run.report["epochs_run"]) == ["train head", "fine-tune"]
    stages = os.path.join(out, ".keras-transfer", "stages")
    after_head = keras.saving.load_model(os.path.join(stages, "train_head.keras"))
    after_tuning = keras.saving.load_model(os.path.join(stages, "fine-tune.keras"))
    original = backbone.get_layer("b_conv").get_weights()[0]

    def kernel(model):
        nested = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        return nested.get_layer("b_conv").get_weights()[0]

    np.testing.assert_array_equal(kernel(after_head), original)  # frozen while the head learns
    assert not np.allclose(kernel(after_tuning), original)  # then trained
    assert run.report["keras_accuracy"]["test"] > 0.6  # chance is 0.1


def test_unlabelled_photos_adapt_the_model_by_adabn(tmp_path, digit_folder, digits):
    from keras_transfer.datasets import uneven_light

    _, (x_test, _) = digits
    lit = np.round(uneven_light(x_test[:200], seed=0) * 255).astype(np.uint8)
    for i, pixels in enumerate(lit):
        _write_png(str(tmp_path / "street" / f"{i}.png"), pixels)
    out = str(tmp_path / "out")
    run = train_from_folder(digit_folder[0], out=out, unlabelled=str(tmp_path / "street"), epochs=3)
    stages = os.path.join(out, ".keras-transfer", "stages")
    trained = keras.saving.load_model(os.path.join(stages, "train.keras"))
    adapted = keras.saving.load_model(os.path.join(stages, "adapt.keras"))
    for before, after in zip(trained.layers, adapted.layers):
        names = [w.path for w in before.weights]
        for name, a, b in zip(names, before.get_weights(), after.get_weights()):
            if "moving" in name:
                assert not np.allclose(a, b), name  # the street photos' statistics
            else:
                np.testing.assert_array_equal(a, b)  # nothing else moves
    assert run.files["model"] and keras.saving.load_model(run.files["model"]).count_params()
