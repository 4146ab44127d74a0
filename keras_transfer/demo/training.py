"""The demo's training stages: the source model, fine-tuning and its baseline, distillation and
its baseline. (Adaptation without labels is in `adaptation.py`.)
"""

import math
import time

import keras
import numpy as np

from keras_transfer.demo.networks import small_cnn
from keras_transfer.demo.networks import small_student
from keras_transfer.demo.report import accuracy
from keras_transfer.demo.settings import StageResult
from keras_transfer.distill import Distiller
from keras_transfer.finetune import fine_tune

SOURCE_ONLY = "source only (no adaptation)"
SCRATCH = "target from scratch"
STUDENT_ALONE = "student trained alone"


def _compile(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def repeated(data, batch_size, steps=10):
    """The few labelled images repeated so that an epoch has at least `steps` batches: Keras'
    per-epoch overhead would otherwise cost more than the steps themselves."""
    x, y = data
    times = max(1, math.ceil(steps * batch_size / len(x)))
    return np.tile(x, (times,) + (1,) * (x.ndim - 1)), np.tile(y, times)


def evaluate(model, data):
    """Top-1 accuracy of a Keras model on `(x, y)`."""
    x, y = data
    return accuracy(model.predict(x, batch_size=512, verbose=0), y)


def _trained_alone(network, data, epochs, settings, callbacks):
    keras.utils.set_random_seed(settings.seed)
    model = network()
    _compile(model, 3e-3)
    model.fit(
        *data, epochs=epochs, batch_size=settings.batch_size, verbose=settings.verbose,
        shuffle=True, callbacks=list(callbacks),
    )  # fmt: skip
    return model


def train_source(task, settings, callbacks=()):
    """The source model on every labelled source image; rows on both domains' test images.

    Returns:
        `(model, [source-test row, target-test row])`: the second row, the source model on the
        shifted domain with no adaptation, is the baseline of adaptation.
    """
    start = time.perf_counter()
    model = _trained_alone(
        lambda: small_cnn(task.input_shape, len(task.classes), name="source"),
        task.source_train, settings.source_epochs, settings, callbacks,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    rows = [
        StageResult(
            "source model", "source test", evaluate(model, task.source_test),
            parameters=model.count_params(), seconds=seconds,
        ),
        StageResult(SOURCE_ONLY, "target test", evaluate(model, task.target_test)),
    ]  # fmt: skip
    return model, rows


def _trained_on_target_labels(task, settings, network, stage, callbacks):
    """`network` trained from a fresh start on the few target labels alone, and its row."""
    start = time.perf_counter()
    model = _trained_alone(
        network, repeated(task.target_train, settings.batch_size), settings.target_epochs,
        settings, callbacks,
    )  # fmt: skip
    return model, StageResult(
        stage, "target test", evaluate(model, task.target_test),
        parameters=model.count_params(), seconds=time.perf_counter() - start,
    )  # fmt: skip


def train_target_from_scratch(task, settings, callbacks=()):
    """The baseline of fine-tuning: the same network trained on the few target labels alone."""
    return _trained_on_target_labels(
        task, settings, lambda: small_cnn(task.input_shape, len(task.classes), name="scratch"),
        SCRATCH, callbacks,
    )  # fmt: skip


def fine_tune_on_target_labels(task, backbone, classifier, settings, callbacks=()):
    """Transfer: the adapted source network fine-tuned on the few target labels (the teacher).

    `keras_transfer.fine_tune`'s two phases on copies of `backbone` and
    `classifier`: the classifier on the frozen features, then everything at a
    third of the rate. Measured against the same network from scratch.
    """
    keras.utils.set_random_seed(settings.seed)
    copies = []
    for model in (backbone, classifier):
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        copies.append(copy)
    start = time.perf_counter()
    teacher, _ = fine_tune(
        *copies,
        repeated(task.target_train, settings.batch_size),
        head_epochs=settings.head_epochs,
        fine_tune_epochs=settings.fine_tune_epochs,
        learning_rate=3e-3,
        fine_tune_learning_rate=1e-3,
        batch_size=settings.batch_size,
        verbose=settings.verbose,
        callbacks=list(callbacks),
    )
    return teacher, StageResult(
        "fine-tuned (the teacher)", "target test", evaluate(teacher, task.target_test),
        baseline=SCRATCH, claim="beats", parameters=teacher.count_params(),
        seconds=time.perf_counter() - start,
    )  # fmt: skip


def train_student_alone(task, settings, callbacks=()):
    """The baseline of distillation: the student network trained on the few target labels."""
    return _trained_on_target_labels(
        task, settings,
        lambda: small_student(task.input_shape, len(task.classes), name="student_alone"),
        STUDENT_ALONE, callbacks,
    )  # fmt: skip


def distill_student(task, teacher, settings, callbacks=()):
    """The small student taught by the teacher on the unlabelled target images.

    `alpha=0`: no label is used; the teacher's outputs on the target domain's
    images, which are plentiful where labels are few, carry what it learnt.
    """
    keras.utils.set_random_seed(settings.seed)
    student = small_student(task.input_shape, len(task.classes))
    distiller = Distiller(teacher, student, temperature=4.0, alpha=0.0, cache_teacher=True)
    distiller.compile(keras.optimizers.Adam(3e-3))
    start = time.perf_counter()
    distiller.fit(
        task.target_unlabelled, epochs=settings.distill_epochs, batch_size=settings.batch_size,
        verbose=settings.verbose, callbacks=list(callbacks),
    )  # fmt: skip
    return student, StageResult(
        "distilled student", "target test", evaluate(student, task.target_test),
        baseline=STUDENT_ALONE, claim="beats", parameters=student.count_params(),
        seconds=time.perf_counter() - start,
    )  # fmt: skip
