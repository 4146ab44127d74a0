"""`train_from_folder`: a folder of images in, a trained model, its `.tflite` and a report out."""

import dataclasses
import json
import os
import shutil
import time

import numpy as np

from keras_transfer._files import atomic_file
from keras_transfer.images.classifier import stage_names
from keras_transfer.images.classifier import train_image_classifier
from keras_transfer.images.folders import read_image_folder
from keras_transfer.images.folders import read_unlabelled_folder
from keras_transfer.images.folders import split_folder

WORK = ".keras-transfer"  # inside `out`: the settings, finished stages and backups of a run
SETTINGS = "settings.json"
QUANTIZATIONS = ("int8", "float16", "dynamic", "none")


@dataclasses.dataclass
class FolderRun:
    """What `train_from_folder` made.

    Attributes:
        model: the final Keras model (logits out).
        class_names: the class of each output.
        parts: `{"train", "validation", "test"}` `ImageFolder`s.
        histories: `{stage: History}` of the stages that trained in this call.
        report: accuracy per split and per class, and the `.tflite`'s own figures.
        files: `{name: path}` of everything written to `out`.
    """

    model: object
    class_names: tuple
    parts: dict
    histories: dict
    report: dict
    files: dict


def _check_out(out, settings, overwrite):
    """Makes `out`; refuses a folder that is not an earlier run of the same settings."""
    work = os.path.join(out, WORK)
    recorded = os.path.join(work, SETTINGS)
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.isfile(recorded):
            raise FileExistsError(
                f"out={out!r} holds files that are not a keras-transfer run; nothing there is "
                "touched. Choose an empty or new folder."
            )
        with open(recorded) as f:
            earlier = json.load(f)
        if earlier != settings and not overwrite:
            changed = sorted(
                k for k in set(earlier) | set(settings) if earlier.get(k) != settings.get(k)
            )
            raise FileExistsError(
                f"out={out!r} holds a run with other settings ({', '.join(changed)} differ); "
                "rerun with the same settings to continue it, choose another folder, or pass "
                "overwrite=True (--overwrite) to start it again."
            )
        if earlier != settings:
            shutil.rmtree(work)  # our own work folder only; the outputs are replaced one by one
    os.makedirs(work, exist_ok=True)
    _write_text(recorded, json.dumps(settings, indent=1, sort_keys=True), "json")
    return work


def _write_text(path, text, kind="text"):
    """`text` into `path`, through a temporary file renamed into place."""
    with atomic_file(path, kind=kind) as temporary, open(temporary, "w") as f:
        f.write(text)


def _color(folder):
    return "grayscale" if folder.images.shape[-1] == 1 else "rgb"


def _accuracy(scores, labels):
    return float(np.mean(np.argmax(scores, -1) == labels)) if len(labels) else None


def evaluate_run(model, tflite_path, parts, class_names, latency_runs=50):
    """Accuracy per split, the per-class report on test, and the `.tflite`'s own figures.

    Returns:
        `(report dict, ClassificationReport of the test split)`.
    """
    from keras_transfer.evaluation import classification_report
    from keras_transfer.export import benchmark_tflite
    from keras_transfer.export import load_tflite
    from keras_transfer.export import tflite_predict

    report = {"images": {name: len(part.files) for name, part in parts.items()}}
    test_name = next(n for n in ("test", "validation", "train") if len(parts[n].files))
    report["evaluated_on"] = test_name
    outputs = {}
    for name, part in parts.items():
        if len(part.files):
            outputs[name] = model.predict(part.images.astype("float32"), verbose=0)
    report["keras_accuracy"] = {n: _accuracy(o, parts[n].labels) for n, o in outputs.items()}
    test = parts[test_name]
    per_class = classification_report(outputs[test_name], test.labels, list(class_names))
    report["per_class"] = {
        name: {"precision": p, "recall": r, "f1": f, "support": s}
        for name, p, r, f, s in zip(
            class_names, per_class.precision, per_class.recall, per_class.f1, per_class.support
        )
    }
    if tflite_path is not None:
        rgb = load_tflite(tflite_path).get_input_details()[0]["shape"][-1] == 3
        file_scores = {}
        for name in outputs:
            if name == "train" and name != test_name:
                continue
            images = parts[name].images.astype("float32")
            if rgb and images.shape[-1] == 1:
                images = np.repeat(images, 3, axis=-1)  # a grey model exported to take RGB
            file_scores[name] = tflite_predict(tflite_path, images)
        report["tflite_accuracy"] = {
            n: _accuracy(scores, parts[n].labels) for n, scores in file_scores.items()
        }
        latency = benchmark_tflite(tflite_path, runs=latency_runs, warmup=5)
        report["tflite"] = {
            "file": os.path.basename(tflite_path),
            "accuracy": report["tflite_accuracy"][test_name],
            "agreement_with_keras": float(
                np.mean(np.argmax(file_scores[test_name], -1) == np.argmax(outputs[test_name], -1))
            ),
            "size_bytes": os.path.getsize(tflite_path),
            "latency_median_ms": latency.median_ms,
            "latency_p90_ms": latency.p90_ms,
        }
    return report, per_class


def markdown_report(report):
    """The report as Markdown: accuracy per split, the `.tflite`, then per class."""
    lines = [f"# {report.get('title', 'Image classifier')}", ""]
    lines += ["| split | images | Keras accuracy | .tflite accuracy |", "|---|---:|---:|---:|"]
    for name, count in report["images"].items():
        cells = [
            "" if value is None else f"{value:.4f}"
            for value in (
                report["keras_accuracy"].get(name),
                report.get("tflite_accuracy", {}).get(name),
            )
        ]
        lines.append(f"| {name} | {count} | {cells[0]} | {cells[1]} |")
    if "tflite" in report:
        t = report["tflite"]
        lines += [
            "",
            f"`{t['file']}` on the {report['evaluated_on']} split: accuracy {t['accuracy']:.4f}, "
            f"top-1 agreement with the Keras model {t['agreement_with_keras']:.4f}, "
            f"{t['size_bytes'] / 1024:.1f} KiB, median latency {t['latency_median_ms']:.3f} ms "
            f"(p90 {t['latency_p90_ms']:.3f} ms, one thread).",
        ]
    lines += ["", f"Per class ({report['evaluated_on']} split):", ""]
    lines += ["| class | precision | recall | F1 | images |", "|---|---:|---:|---:|---:|"]
    for name, row in report["per_class"].items():
        lines.append(
            f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | "
            f"{row['support']} |"
        )
    if report.get("stages"):
        lines += ["", "Stages: " + ", ".join(f"{s} {t:.0f} s" for s, t in report["stages"].items())]
    return "\n".join(lines) + "\n"


def train_from_folder(
    directory,
    out=None,
    unlabelled=None,
    backbone=None,
    weights=None,
    student=None,
    quantization="int8",
    qat=False,
    image_size=None,
    color_mode="auto",
    validation_split=0.1,
    test_split=0.1,
    on_bad_file="error",
    test_directory=None,
    seed=0,
    overwrite=False,
    progress=None,
    **training,
):
    """One call from a folder of labelled images to a classifier, its `.tflite` and a report.

    Reads and checks every image (`read_image_folder`), splits train / validation
    / test by `seed`, trains (`train_image_classifier`: the stages of
    `stage_names`), exports the final model with labels and normalisation as
    TFLite metadata (`export_image_classifier`), and evaluates the Keras model on
    every split and the `.tflite` file itself on the test split. With `out`, a
    rerun of the same call continues a killed one from its last finished epoch.

    Args:
        directory: one sub-folder of images per class.
        out: a folder for `model.keras`, `teacher.keras` (when distilled),
            `model.tflite`, `labels.txt`, `report.json`, `report.md`,
            `confusion_matrix.png` and `training_curves.png`; None writes nothing
            (and exports no `.tflite`). A folder that is not an earlier run is refused.
        unlabelled: a folder of unlabelled images from where the model will run:
            the model adapts to them (and a student learns from them).
        backbone, weights, student, qat: as in `train_image_classifier`.
        quantization: of the `.tflite`: "int8", "float16", "dynamic" or "none".
        image_size, color_mode, on_bad_file: as in `read_image_folder`.
        validation_split, test_split: shares of each class held out.
        test_directory: another labelled folder to report accuracy on (e.g. photos
            taken where the model will run), with the same class sub-folders.
        seed: the split's and the training's seed.
        overwrite: start again in an `out` that holds a run with other settings.
        progress: a `StageProgress` told where each stage begins and ends.
        **training: more `train_image_classifier` arguments (`epochs`, `batch_size`, ...).

    Returns:
        A `FolderRun`.

    Example:
    >>> run = train_from_folder("photos/", out="phone_model")  # doctest: +SKIP
    >>> run.report["tflite"]["accuracy"]  # doctest: +SKIP
    """
    from keras_transfer.images.deploy import export_image_classifier

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}; got {quantization!r}.")
    if qat and quantization != "int8":
        raise ValueError(f"qat=True exports int8; got quantization={quantization!r}.")
    settings = dict(
        directory=os.path.abspath(directory),
        unlabelled=unlabelled and os.path.abspath(unlabelled),
        backbone=backbone,
        weights=weights,
        student=student,
        quantization=quantization,
        qat=qat,
        image_size=image_size and list(image_size),
        color_mode=color_mode,
        validation_split=validation_split,
        test_split=test_split,
        seed=seed,
        on_bad_file=on_bad_file,
        test_directory=test_directory and os.path.abspath(test_directory),
        **training,
    )
    work = _check_out(os.fspath(out), settings, overwrite) if out is not None else None
    names = ["read images", *stage_names(backbone, unlabelled, student, qat), "export", "evaluate"]
    if progress is not None:
        progress.plan(names)
    times = {}

    def begin(name):
        times[name] = time.perf_counter()
        if progress is not None:
            progress.begin(names.index(name), len(names), name)

    def end(name):
        times[name] = time.perf_counter() - times[name]
        if progress is not None:
            progress.end(times[name])

    begin("read images")
    folder = read_image_folder(directory, image_size, color_mode, on_bad_file)
    parts = split_folder(folder, validation_split, test_split, seed)
    target = None
    if unlabelled is not None:
        target = read_unlabelled_folder(
            unlabelled, folder.images.shape[1:3], _color(folder), on_bad_file
        )
    if test_directory is not None:
        extra = read_image_folder(
            test_directory,
            folder.images.shape[1:3],
            color_mode=_color(folder),
            on_bad_file=on_bad_file,
        )
        if extra.class_names != folder.class_names:
            raise ValueError(
                f"test_directory {test_directory!r} has classes {list(extra.class_names)}; "
                f"the training folder has {list(folder.class_names)}."
            )
        name = os.path.basename(os.path.normpath(test_directory))
        parts[name if name not in parts else f"folder {name}"] = extra
    end("read images")
    started = time.perf_counter()
    model, histories = train_image_classifier(
        parts["train"],
        parts["validation"],
        backbone=backbone,
        weights=weights,
        unlabelled=target,
        student=student,
        qat=qat,
        seed=seed,
        work_dir=work,
        progress=progress,
        **training,
    )
    times["training stages"] = time.perf_counter() - started
    files, tflite_path = {}, None
    if out is not None:
        begin("export")
        tflite_path = os.path.join(out, "model.tflite")
        # int8 ranges from the images the model will see: the unlabelled ones when it adapted.
        calibration = (parts["train"] if target is None else target).images
        calibration = calibration[np.random.default_rng(seed).permutation(len(calibration))[:300]]
        calibration = calibration.astype("float32")
        export_image_classifier(
            model, tflite_path, folder.class_names, quantization, calibration, overwrite=True
        )
        files["tflite"] = tflite_path
        end("export")
    begin("evaluate")
    report, per_class = evaluate_run(model, tflite_path, parts, folder.class_names)
    end("evaluate")
    report.update(
        title=f"Image classifier: {os.path.basename(os.path.abspath(directory))}",
        class_names=list(folder.class_names),
        skipped_files=[{"path": p, "reason": r} for p, r in folder.skipped],
        stages={n: round(t, 2) for n, t in times.items()},
        # The epochs each stage trained in this call: a resumed stage starts past 0.
        first_epoch={n: h.epoch[0] for n, h in histories.items() if h.epoch},
        epochs_run={n: len(h.epoch) for n, h in histories.items()},
        settings=settings,
    )
    if out is not None:
        files.update(_write_outputs(out, model, work, report, per_class, histories, folder))
    return FolderRun(model, folder.class_names, parts, histories, report, files)


def _write_outputs(out, model, work, report, per_class, histories, folder):
    from keras_transfer.evaluation import plot_confusion_matrix
    from keras_transfer.evaluation import plot_history

    files = {}
    for name, kind, text in (
        ("labels.txt", "text", "\n".join(folder.class_names) + "\n"),
        ("report.json", "json", json.dumps(report, indent=1)),
        ("report.md", "text", markdown_report(report)),
    ):
        _write_text(os.path.join(out, name), text, kind)
        files[name] = os.path.join(out, name)
    teacher = [
        os.path.join(work, "stages", f"{name}.keras")
        for name in ("train", "fine-tune", "adapt")
        if os.path.isfile(os.path.join(work, "stages", f"{name}.keras"))
    ]
    if report["settings"].get("student") and teacher:
        with atomic_file(os.path.join(out, "teacher.keras"), ".keras", True, "keras") as temporary:
            shutil.copyfile(teacher[-1], temporary)
        files["teacher"] = os.path.join(out, "teacher.keras")
    if not type(model).__module__.startswith("tf_keras"):  # a QAT model has only its .tflite
        with atomic_file(os.path.join(out, "model.keras"), ".keras", True, "keras") as temporary:
            model.save(temporary)
        files["model"] = os.path.join(out, "model.keras")
    files["confusion_matrix"] = plot_confusion_matrix(
        per_class, os.path.join(out, "confusion_matrix.png"), overwrite=True
    )
    merged = {}
    for stage, history in histories.items():
        for key, values in history.history.items():
            merged[f"{stage}: {key}"] = values
    if merged:
        files["training_curves"] = plot_history(
            merged, os.path.join(out, "training_curves.png"), overwrite=True
        )
    return files
