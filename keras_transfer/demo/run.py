"""`run_demo` walks `STAGES`, one function per stage, over a `DemoRun` holding what they made."""

import dataclasses
import os
import shutil
import time

from keras_transfer.demo.adaptation import run_adaptation_stage
from keras_transfer.demo.exports import export_quantize_aware_stage
from keras_transfer.demo.exports import export_saved_model_stage
from keras_transfer.demo.exports import export_tflite_stage
from keras_transfer.demo.exports import plot_deployed_confusion
from keras_transfer.demo.report import DemoReport
from keras_transfer.demo.report import plot_report
from keras_transfer.demo.report import write_json
from keras_transfer.demo.settings import DemoSettings
from keras_transfer.demo.settings import StageResult
from keras_transfer.demo.settings import default_settings
from keras_transfer.demo.task import make_task
from keras_transfer.demo.training import SOURCE_ONLY
from keras_transfer.demo.training import distill_student
from keras_transfer.demo.training import fine_tune_on_target_labels
from keras_transfer.demo.training import train_source
from keras_transfer.demo.training import train_student_alone
from keras_transfer.demo.training import train_target_from_scratch


@dataclasses.dataclass
class DemoRun:
    """What the stages share: the task, the settings, the folder, and what earlier stages made."""

    task: object
    settings: DemoSettings
    folder: str
    callbacks: tuple = ()
    models: dict = dataclasses.field(default_factory=dict)
    rows: list = dataclasses.field(default_factory=list)
    files: dict = dataclasses.field(default_factory=dict)
    adaptation: dict = dataclasses.field(default_factory=dict)

    def path(self, name):
        return os.path.join(self.folder, name)


def source_stage(run):
    """The source model on every labelled source image, tested on both domains."""
    run.models["source"], rows = train_source(run.task, run.settings, run.callbacks)
    run.rows.extend(rows)


def adaptation_stage(run):
    """The source network adapted to the target domain by MMD, without a target label."""
    result = run_adaptation_stage(
        run.task, run.settings, run.models["source"], run.path("adaptation_embedding.png"),
        run.path("adaptation_curves.png"), run.callbacks,
    )  # fmt: skip
    run.models["adapted"] = (result.backbone, result.classifier)
    run.rows.append(
        StageResult(
            "adapted without labels (MMD)", "target test", result.adapted_accuracy,
            baseline=SOURCE_ONLY, claim="beats", seconds=result.seconds,
        )
    )  # fmt: skip
    run.files.update(
        adaptation_embedding_png=result.embedding_png, adaptation_curves_png=result.curves_png
    )
    run.adaptation.update(
        proxy_a_distance_source_only=result.source_only_pad,
        proxy_a_distance_adapted=result.adapted_pad,
    )


def scratch_stage(run):
    """The baseline of fine-tuning: the same network on the few target labels alone."""
    run.rows.append(train_target_from_scratch(run.task, run.settings, run.callbacks)[1])


def fine_tune_stage(run):
    """Transfer: the adapted network fine-tuned on the few target labels; the teacher, saved."""
    run.models["teacher"], row = fine_tune_on_target_labels(
        run.task, *run.models["adapted"], run.settings, run.callbacks
    )
    run.rows.append(_saved(run, "teacher", row))


def student_alone_stage(run):
    """The baseline of distillation: the student network on the few target labels alone."""
    run.rows.append(train_student_alone(run.task, run.settings, run.callbacks)[1])


def distill_stage(run):
    """The small student distilled from the teacher on unlabelled target images, saved."""
    run.models["student"], row = distill_student(
        run.task, run.models["teacher"], run.settings, run.callbacks
    )
    run.rows.append(_saved(run, "student", row))


def _saved(run, name, row):
    path = run.files[f"{name}_keras"] = run.path(f"{name}.keras")
    run.models[name].save(path)
    return dataclasses.replace(row, file_bytes=os.path.getsize(path))


def saved_model_stage(run):
    """The student as a serving SavedModel, reloaded by TensorFlow and checked against Keras."""
    report, row = export_saved_model_stage(run.models["student"], run.task, run.folder)
    run.files["saved_model"] = report.path
    run.rows.append(row)


def tflite_float32_stage(run):
    """The student as a float32 .tflite file, run in LiteRT and checked against Keras."""
    report, row = export_tflite_stage(run.models["student"], run.task, run.folder, "none")
    run.files["tflite_float32"] = report.path
    run.rows.append(dataclasses.replace(row, stage="TFLite float32"))


def tflite_int8_stage(run):
    """The student quantized to int8 after training, its confusion matrix drawn."""
    report, row = export_tflite_stage(run.models["student"], run.task, run.folder, "int8")
    run.files["tflite_int8"] = report.path
    run.files["confusion_png"] = plot_deployed_confusion(run.task, report.path, run.folder)
    run.rows.append(row)


def quantize_aware_stage(run):
    """The student fine-tuned quantization-aware on the teacher's labels, then int8."""
    report, row = export_quantize_aware_stage(
        run.models["student"], run.models["teacher"], run.task, run.folder, run.settings
    )
    run.files["tflite_int8_qat"] = report.path
    run.rows.append(row)


STAGES = (
    source_stage,
    adaptation_stage,
    scratch_stage,
    fine_tune_stage,
    student_alone_stage,
    distill_stage,
    saved_model_stage,
    tflite_float32_stage,
    tflite_int8_stage,
    quantize_aware_stage,
)


def stage_name(stage):
    """A stage function's name as the progress line shows it: `fine_tune_stage` -> "fine tune"."""
    return stage.__name__.removesuffix("_stage").replace("_", " ")


# What a run writes in its folder; `overwrite=True` removes a folder that holds nothing else.
RUN_FILES = frozenset({
    "teacher.keras", "student.keras", "saved_model", "student_float32.tflite",
    "student_int8.tflite", "student_int8_qat.tflite", "demo_report.json", "demo_report.png",
    "confusion_int8.png", "adaptation_embedding.png", "adaptation_curves.png",
})  # fmt: skip


def _remove_earlier_run(folder):
    """Removes an earlier run's folder; refuses one that holds anything the demo did not write."""
    if os.path.islink(folder) or not os.path.isdir(folder):
        raise FileExistsError(f"{folder!r} is not a demo run's folder; it is left as it is.")
    staging = tuple(f".{name}.tmp-" for name in RUN_FILES)
    foreign = sorted(
        n for n in os.listdir(folder) if n not in RUN_FILES and not n.startswith(staging)
    )
    if foreign:
        raise FileExistsError(
            f"{folder!r} holds files the demo did not write ({foreign[:5]}); overwrite=True "
            "replaces only an earlier demo run, so it is left as it is. Choose another out folder."
        )
    shutil.rmtree(folder)


def run_demo(
    data="digits", out="export", settings=None, overwrite=False, fashion_path=None, progress=None
):
    """Runs every stage of `STAGES` and writes the models, the JSON report and its figures.

    Figures: `demo_report.png` (accuracy and size per stage) and
    `confusion_int8.png` (the int8 file's confusion matrix on the target test images).

    Args:
        data: "digits" (no download) or "fashion_mnist".
        out: folder for the run; the run writes into `out/demo-<data>/`.
        settings: a `DemoSettings`; the default suits `data`.
        overwrite: replace an earlier run in the same folder (a folder holding files the
            demo did not write is never replaced).
        fashion_path: optional folder with the Fashion-MNIST IDX files.
        progress: optional `StageProgress` (or any Keras callback with `begin(index, count,
            name)` and `end(seconds)`): told of each stage, and given to its `fit` calls.

    Returns:
        A `DemoReport`.

    Example:
    >>> report = run_demo("digits", out="export")  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
    """
    settings = settings or default_settings(data)
    folder = os.path.abspath(os.path.join(out, f"demo-{data}"))
    if os.path.lexists(folder):
        if not overwrite:
            raise FileExistsError(
                f"{folder!r} holds an earlier demo run; pass overwrite=True "
                "(--overwrite) to replace it, or choose another out folder."
            )
        _remove_earlier_run(folder)
    began = time.perf_counter()
    task = make_task(
        data, settings.labels_per_class, settings.seed, settings.images_per_domain, fashion_path
    )
    os.makedirs(folder)
    run = DemoRun(task, settings, folder, callbacks=() if progress is None else (progress,))
    for index, stage in enumerate(STAGES):
        start = time.perf_counter()
        if progress is not None:
            progress.begin(index, len(STAGES), stage_name(stage))
        stage(run)
        if progress is not None:
            progress.end(time.perf_counter() - start)
    run.files.update(json=run.path("demo_report.json"), png=run.path("demo_report.png"))
    report = DemoReport(
        data=data, rows=run.rows, files=run.files, settings=settings, adaptation=run.adaptation,
        seconds=time.perf_counter() - began,
    )  # fmt: skip
    write_json(report.to_json(), report.files["json"])
    plot_report(report, report.files["png"])
    return report
