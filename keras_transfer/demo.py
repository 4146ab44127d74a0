"""`keras-transfer demo`: the whole transfer chain on one screen.

A source model learns half of the classes; the other half is the target task,
with only a few labelled images per class. The demo adapts a copy of the
source network, without labels, to the source classes under uneven light
(MMD; see `demo_adaptation`), trains the target model from scratch as the
baseline, transfers the source model by fine-tuning,
distils the fine-tuned model into a small student on the unlabelled target
images, exports the student as SavedModel and TFLite (float32, int8
post-training and int8 quantization-aware), checks each exported file against
the Keras student on held-out target data, and writes a table (printed, JSON)
and figures (PNG).

Each stage is one function that returns a `StageResult`, so a new capability
joins the demo as one more function in `STAGES`' order.
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_transfer import datasets
from keras_transfer.demo_adaptation import run_adaptation_stage
from keras_transfer import export
from keras_transfer._files import atomic_file
from keras_transfer.distill import Distiller
from keras_transfer.evaluation import classification_report
from keras_transfer.evaluation import plot_confusion_matrix

DATASETS = ("digits", "fashion_mnist")


@dataclasses.dataclass(frozen=True)
class TransferTask:
    """Source and target splits of one dataset, target labels renumbered from 0."""

    name: str
    source_train: tuple
    source_test: tuple
    target_train: tuple
    target_test: tuple
    target_unlabelled: np.ndarray
    source_classes: tuple
    target_classes: tuple

    @property
    def input_shape(self):
        return self.source_train[0].shape[1:]


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """How much work each stage does; the defaults finish in about a minute on 2 cores."""

    labels_per_class: int = 10
    source_epochs: int = 30
    target_epochs: int = 150
    fine_tune_epochs: int = 75
    distill_epochs: int = 40
    qat_epochs: int = 5
    adapt_epochs: int = 30
    source_limit: int = None
    batch_size: int = 64
    seed: int = 0
    verbose: object = "auto"


@dataclasses.dataclass(frozen=True)
class StageResult:
    """One row of the demo table."""

    stage: str
    evaluated_on: str
    accuracy: float
    parameters: int = None
    file_bytes: int = None
    agreement: float = None
    seconds: float = None


def make_task(data="digits", labels_per_class=10, seed=0, source_limit=None, fashion_path=None):
    """Splits a dataset into a source task (classes of the first half) and a target task.

    Args:
        data: "digits" (bundled with scikit-learn) or "fashion_mnist".
        labels_per_class: labelled target training images kept per target class.
        seed: seed of the split and of the labelled subset.
        source_limit: keep at most this many source training images (None: all).
        fashion_path: optional folder with the Fashion-MNIST IDX files.

    Returns:
        A `TransferTask`.

    Example:
    >>> task = make_task("digits", labels_per_class=10)
    >>> task.target_classes
    (5, 6, 7, 8, 9)
    """
    if data not in DATASETS:
        raise ValueError(f"data must be one of {DATASETS}, got {data!r}.")
    if not isinstance(labels_per_class, int) or labels_per_class < 1:
        raise ValueError(f"labels_per_class must be a positive int, got {labels_per_class!r}.")
    if data == "digits":
        (x_train, y_train), (x_test, y_test) = datasets.load_digits(seed=seed)
    else:
        (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(fashion_path)
    source_classes, target_classes = tuple(range(5)), tuple(range(5, 10))
    rng = np.random.default_rng(seed)

    def subset(x, y, classes, per_class=None, limit=None):
        index = np.flatnonzero(np.isin(y, classes))
        if per_class is not None:
            index = np.concatenate(
                [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes]
            )
        if limit is not None and len(index) > limit:
            index = rng.choice(index, limit, replace=False)
        index = np.sort(index)
        return x[index], (y[index] - classes[0]).astype("int32")

    available = min(int(np.sum(y_train == c)) for c in target_classes)
    if labels_per_class > available:
        raise ValueError(
            f"labels_per_class={labels_per_class} exceeds the {available} training "
            f"images of the smallest target class in {data!r}."
        )
    return TransferTask(
        name=data,
        source_train=subset(x_train, y_train, source_classes, limit=source_limit),
        source_test=subset(x_test, y_test, source_classes),
        target_train=subset(x_train, y_train, target_classes, per_class=labels_per_class),
        target_test=subset(x_test, y_test, target_classes),
        target_unlabelled=subset(x_train, y_train, target_classes)[0],
        source_classes=source_classes,
        target_classes=target_classes,
    )


def small_cnn(input_shape, num_classes, name="cnn"):
    """A three-block CNN whose `features` layer feeds a logits layer named `head`.

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: number of logits.
        name: model name.

    Returns:
        A functional `keras.Model` from images to logits.

    Example:
    >>> model = small_cnn((8, 8, 1), 5)
    >>> model.output_shape
    (None, 5)
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool3")(x)
    x = keras.layers.Dense(64, activation="relu", name="features")(x)
    outputs = keras.layers.Dense(num_classes, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def small_student(input_shape, num_classes, name="student"):
    """A CNN about 7x smaller than `small_cnn`, made of int8-friendly layers.

    Example:
    >>> small_student((8, 8, 1), 5).count_params() < small_cnn((8, 8, 1), 5).count_params() / 5
    True
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="s_conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="s_pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="s_conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="s_pool2")(x)
    outputs = keras.layers.Dense(num_classes, name="s_head")(x)
    return keras.Model(inputs, outputs, name=name)


def accuracy(logits, labels):
    """Top-1 accuracy of scores or logits against integer labels."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def _compile(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _fit(model, data, epochs, settings):
    x, y = data
    return model.fit(
        x, y, epochs=epochs, batch_size=settings.batch_size, verbose=settings.verbose, shuffle=True
    )


def _evaluate_keras(model, data):
    x, y = data
    return accuracy(model.predict(x, batch_size=512, verbose=0), y)


def train_source(task, settings):
    """Stage 1: the source model, trained on all labelled source images."""
    keras.utils.set_random_seed(settings.seed)
    model = small_cnn(task.input_shape, len(task.source_classes), name="source")
    _compile(model, 3e-3)
    start = time.perf_counter()
    _fit(model, task.source_train, settings.source_epochs, settings)
    row = StageResult(
        stage="source model",
        evaluated_on="source test",
        accuracy=_evaluate_keras(model, task.source_test),
        parameters=model.count_params(),
        seconds=time.perf_counter() - start,
    )
    return model, row


def train_target_from_scratch(task, settings):
    """Stage 2, the baseline: the same network trained on the few target labels alone."""
    keras.utils.set_random_seed(settings.seed)
    model = small_cnn(task.input_shape, len(task.target_classes), name="scratch")
    _compile(model, 3e-3)
    start = time.perf_counter()
    _fit(model, task.target_train, settings.target_epochs, settings)
    row = StageResult(
        stage="target from scratch",
        evaluated_on="target test",
        accuracy=_evaluate_keras(model, task.target_test),
        parameters=model.count_params(),
        seconds=time.perf_counter() - start,
    )
    return model, row


def fine_tune_from_source(task, source_model, settings):
    """Stage 3, transfer: a new head on the source features, then all layers at a low rate.

    The backbone is cut at the pooled convolution features (`pool3`), which
    carry more than the source's class-specific `features` layer (measured on
    digits, 3 seeds). Phase 1 trains only the new head on the frozen backbone;
    phase 2 unfreezes everything at a third of the learning rate. Both phases
    together take as many steps as the from-scratch baseline.
    """
    keras.utils.set_random_seed(settings.seed)
    copy = keras.models.clone_model(source_model)
    copy.set_weights(source_model.get_weights())
    backbone = keras.Model(copy.inputs, copy.get_layer("pool3").output, name="backbone")
    head = keras.layers.Dense(len(task.target_classes), name="head")
    model = keras.Model(backbone.inputs, head(backbone.outputs[0]), name="fine_tuned")
    start = time.perf_counter()
    backbone.trainable = False
    _compile(model, 3e-3)
    _fit(model, task.target_train, settings.fine_tune_epochs, settings)
    backbone.trainable = True
    _compile(model, 1e-3)
    _fit(model, task.target_train, settings.fine_tune_epochs, settings)
    row = StageResult(
        stage="fine-tuned from source",
        evaluated_on="target test",
        accuracy=_evaluate_keras(model, task.target_test),
        parameters=model.count_params(),
        seconds=time.perf_counter() - start,
    )
    return model, row


def adapt_to_uneven_light(task, settings, out_dir):
    """Stage 2: unsupervised domain adaptation to the source classes under uneven light.

    See `keras_transfer.demo_adaptation`: half the source labels, the other
    half's images under a brightness ramp without labels; source-only vs
    MMD-adapted, both tested on the source test images under the same light.
    """
    result = run_adaptation_stage(task, settings, os.path.join(out_dir, "adaptation_embedding.png"),
                                  os.path.join(out_dir, "adaptation_curves.png"))
    rows = [
        StageResult(stage="uneven light, source only", evaluated_on="source test, uneven light",
                    accuracy=result.source_only_accuracy),
        StageResult(stage="uneven light, adapted (MMD, no labels)", evaluated_on="source test, uneven light",
                    accuracy=result.adapted_accuracy, seconds=result.seconds),
    ]
    return rows, result


def distill_student(task, teacher, settings):
    """Stage 4: a small student learns from the fine-tuned teacher on unlabelled target images.

    `alpha=0`: no label is used, which is the transfer case where the target
    domain has plenty of images but few labels.
    """
    keras.utils.set_random_seed(settings.seed)
    student = small_student(task.input_shape, len(task.target_classes))
    distiller = Distiller(teacher, student, temperature=4.0, alpha=0.0, cache_teacher=True)
    distiller.compile(keras.optimizers.Adam(3e-3))
    start = time.perf_counter()
    distiller.fit(
        task.target_unlabelled, epochs=settings.distill_epochs,
        batch_size=settings.batch_size, verbose=settings.verbose,
    )
    row = StageResult(
        stage="distilled student",
        evaluated_on="target test",
        accuracy=_evaluate_keras(student, task.target_test),
        parameters=student.count_params(),
        seconds=time.perf_counter() - start,
    )
    return student, row


def export_quantize_aware_stage(student, teacher, task, out_dir, settings):
    """Stage 8: quantization-aware fine-tuning on the teacher's labels, then int8 TFLite.

    Agreement is measured against the quantization-aware model the file was
    converted from: fine-tuning makes it a model of its own.
    """
    from keras_transfer.quantize import quantize_aware

    import tf_keras

    start = time.perf_counter()
    pseudo_labels = np.argmax(teacher.predict(task.target_unlabelled, verbose=0), axis=-1)
    qat = quantize_aware(student, calibration_data=task.target_unlabelled[:500])
    qat.compile(
        tf_keras.optimizers.Adam(1e-4),
        tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    qat.fit(task.target_unlabelled, pseudo_labels, epochs=settings.qat_epochs,
            batch_size=settings.batch_size, verbose=settings.verbose)
    report = export.export_tflite(qat, os.path.join(out_dir, "student_int8_qat.tflite"), "int8")
    parity = export.compare(report.path, qat, task.target_test)
    return report, StageResult(
        stage="TFLite int8 QAT",
        evaluated_on="target test",
        accuracy=parity.tflite_accuracy,
        file_bytes=report.size_bytes,
        agreement=parity.agreement,
        seconds=time.perf_counter() - start,
    )


def plot_deployed_confusion(task, tflite_path, out_dir):
    """The confusion matrix of the int8 file on the target test images, as a PNG."""
    x, y = task.target_test
    report = classification_report(export.tflite_predict(tflite_path, x), y,
                                   class_names=[str(c) for c in task.target_classes])
    return plot_confusion_matrix(report, os.path.join(out_dir, "confusion_int8.png"))


def export_saved_model_stage(model, task, out_dir):
    """Stage 5: a serving SavedModel, reloaded with TensorFlow and checked against Keras."""
    start = time.perf_counter()
    report = export.export_saved_model(model, os.path.join(out_dir, "saved_model"))
    served = tf.saved_model.load(report.path)
    x, y = task.target_test
    outputs = served.serve(tf.constant(x)).numpy()
    reference = model.predict(x, batch_size=512, verbose=0)
    return report, StageResult(
        stage="SavedModel",
        evaluated_on="target test",
        accuracy=accuracy(outputs, y),
        file_bytes=report.size_bytes,
        agreement=_agreement(outputs, reference),
        seconds=time.perf_counter() - start,
    )


def export_tflite_stage(model, task, out_dir, quantization):
    """Stages 6-7: a `.tflite` file run in the LiteRT interpreter and compared with Keras."""
    start = time.perf_counter()
    name = f"student_{'float32' if quantization == 'none' else quantization}.tflite"
    report = export.export_tflite(
        model,
        os.path.join(out_dir, name),
        quantization=quantization,
        representative_data=task.target_unlabelled if quantization == "int8" else None,
    )
    x, y = task.target_test
    outputs = export.tflite_predict(report.path, x)
    reference = model.predict(x, batch_size=512, verbose=0)
    return report, StageResult(
        stage=f"TFLite {quantization}",
        evaluated_on="target test",
        accuracy=accuracy(outputs, y),
        file_bytes=report.size_bytes,
        agreement=_agreement(outputs, reference),
        seconds=time.perf_counter() - start,
    )


def _agreement(outputs, reference):
    return float(np.mean(np.argmax(outputs, -1) == np.argmax(reference, -1)))


@dataclasses.dataclass
class DemoReport:
    """What a demo run measured and wrote."""

    data: str
    rows: list
    files: dict
    settings: DemoSettings
    adaptation: dict = dataclasses.field(default_factory=dict)

    def table(self):
        """The rows as a fixed-width text table."""
        header = ("stage", "evaluated on", "accuracy", "agreement", "parameters", "file", "seconds")
        lines = [header]
        for row in self.rows:
            lines.append(
                (
                    row.stage,
                    row.evaluated_on,
                    f"{row.accuracy:.3f}",
                    "" if row.agreement is None else f"{row.agreement:.3f}",
                    "" if row.parameters is None else f"{row.parameters:,}",
                    "" if row.file_bytes is None else f"{row.file_bytes / 1024:.1f} KiB",
                    "" if row.seconds is None else f"{row.seconds:.1f}",
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(text)

    def to_json(self):
        return {
            "data": self.data,
            "settings": dataclasses.asdict(self.settings),
            "rows": [dataclasses.asdict(row) for row in self.rows],
            "files": self.files,
            "adaptation": self.adaptation,
        }


def run_demo(data="digits", out="export", settings=None, overwrite=False, fashion_path=None):
    """Runs every stage and writes the models, the JSON report and its figures.

    Figures: `demo_report.png` (accuracy and size per stage) and
    `confusion_int8.png` (the int8 file's confusion matrix on the target test images).

    Args:
        data: "digits" (no download) or "fashion_mnist".
        out: folder for the run; the run writes into `out/demo-<data>/`.
        settings: a `DemoSettings`; the default suits `data`.
        overwrite: replace the files of an earlier run in the same folder.
        fashion_path: optional folder with the Fashion-MNIST IDX files.

    Returns:
        A `DemoReport`.

    Example:
    >>> report = run_demo("digits", out="export")  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
    """
    settings = settings or default_settings(data)
    run_dir = os.path.abspath(os.path.join(out, f"demo-{data}"))
    if os.path.exists(run_dir):
        if not overwrite:
            raise FileExistsError(
                f"{run_dir!r} holds an earlier demo run; pass overwrite=True "
                "(--overwrite) to replace it, or choose another out folder."
            )
        import shutil

        shutil.rmtree(run_dir)
    task = make_task(
        data, settings.labels_per_class, settings.seed, settings.source_limit, fashion_path
    )
    os.makedirs(run_dir)
    source_model, source_row = train_source(task, settings)
    shifted_rows, adaptation = adapt_to_uneven_light(task, settings, run_dir)
    _, scratch_row = train_target_from_scratch(task, settings)
    teacher, tuned_row = fine_tune_from_source(task, source_model, settings)
    student, student_row = distill_student(task, teacher, settings)
    files = {
        "teacher_keras": os.path.join(run_dir, "teacher.keras"),
        "student_keras": os.path.join(run_dir, "student.keras"),
    }
    teacher.save(files["teacher_keras"])
    student.save(files["student_keras"])
    saved, saved_row = export_saved_model_stage(student, task, run_dir)
    tflite_float, float_row = export_tflite_stage(student, task, run_dir, "none")
    tflite_int8, int8_row = export_tflite_stage(student, task, run_dir, "int8")
    tflite_qat, qat_row = export_quantize_aware_stage(student, teacher, task, run_dir, settings)
    rows = [
        source_row,
        *shifted_rows,
        scratch_row,
        dataclasses.replace(tuned_row, file_bytes=os.path.getsize(files["teacher_keras"])),
        dataclasses.replace(student_row, file_bytes=os.path.getsize(files["student_keras"])),
        saved_row,
        dataclasses.replace(float_row, stage="TFLite float32"),
        int8_row,
        qat_row,
    ]
    files.update({
        "saved_model": saved.path,
        "tflite_float32": tflite_float.path,
        "tflite_int8": tflite_int8.path,
        "tflite_int8_qat": tflite_qat.path,
        "json": os.path.join(run_dir, "demo_report.json"),
        "png": os.path.join(run_dir, "demo_report.png"),
        "confusion_png": plot_deployed_confusion(task, tflite_int8.path, run_dir),
        "adaptation_embedding_png": adaptation.embedding_png,
        "adaptation_curves_png": adaptation.curves_png,
    })
    report = DemoReport(data=data, rows=rows, files=files, settings=settings,
                        adaptation={"proxy_a_distance_source_only": adaptation.source_only_pad,
                                    "proxy_a_distance_adapted": adaptation.adapted_pad})
    _write_json(report.to_json(), report.files["json"])
    plot_report(report, report.files["png"])
    return report


def default_settings(data):
    """Settings that keep the demo short on 2 CPU cores for each dataset."""
    if data == "fashion_mnist":
        return DemoSettings(
            labels_per_class=10, source_epochs=3, target_epochs=150, fine_tune_epochs=75,
            distill_epochs=5, qat_epochs=1, adapt_epochs=3, source_limit=15000, batch_size=128,
        )
    return DemoSettings()


def _write_json(payload, path):
    with atomic_file(path) as temporary, open(temporary, "w") as f:
        json.dump(payload, f, indent=2)


def plot_report(report, path):
    """Draws accuracy and file size per stage side by side and saves a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [row.stage for row in report.rows]
    colours = ["#999999" if row.evaluated_on != "target test" else "#2a6f97" for row in report.rows]
    left.barh(names, [row.accuracy for row in report.rows], color=colours)
    left.set_xlim(0, 1)
    left.set_xlabel("accuracy (grey: source test, blue: target test)")
    left.invert_yaxis()
    for i, row in enumerate(report.rows):
        left.text(row.accuracy - 0.01, i, f"{row.accuracy:.3f}", va="center", ha="right",
                  color="white", fontweight="bold")
    sized = [row for row in report.rows if row.file_bytes]
    labels = [row.stage + (" (.keras)" if row.parameters else "") for row in sized]
    right.barh(labels, [row.file_bytes / 1024 for row in sized], color="#e07a5f")
    right.set_xlabel("file size (KiB)")
    right.invert_yaxis()
    figure.suptitle(
        f"keras-transfer demo on {report.data}: {report.settings.labels_per_class} "
        "labelled images per target class"
    )
    figure.tight_layout()
    staging = path + ".tmp.png"
    figure.savefig(staging, dpi=100)
    plt.close(figure)
    os.replace(staging, path)
