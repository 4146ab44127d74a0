"""The demo's training stages: the source model, the baseline, fine-tuning, adaptation,
distillation.
"""

import os
import time

import keras

from keras_transfer.demo.adaptation import run_adaptation_stage
from keras_transfer.demo.networks import small_cnn
from keras_transfer.demo.networks import small_student
from keras_transfer.demo.report import accuracy
from keras_transfer.demo.settings import StageResult
from keras_transfer.distill import Distiller


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


def _trained_small_cnn(task, settings, name, classes, train, test, epochs, stage, evaluated_on):
    """The demo's CNN trained from a fresh start on `train`, and its row tested on `test`."""
    keras.utils.set_random_seed(settings.seed)
    model = small_cnn(task.input_shape, len(classes), name=name)
    _compile(model, 3e-3)
    start = time.perf_counter()
    _fit(model, train, epochs, settings)
    row = StageResult(
        stage=stage,
        evaluated_on=evaluated_on,
        accuracy=_evaluate_keras(model, test),
        parameters=model.count_params(),
        seconds=time.perf_counter() - start,
    )
    return model, row


def train_source(task, settings):
    """Stage 1: the source model, trained on all labelled source images."""
    return _trained_small_cnn(
        task, settings, "source", task.source_classes, task.source_train, task.source_test,
        settings.source_epochs, "source model", "source test",
    )  # fmt: skip


def train_target_from_scratch(task, settings):
    """Stage 2, the baseline: the same network trained on the few target labels alone."""
    return _trained_small_cnn(
        task, settings, "scratch", task.target_classes, task.target_train, task.target_test,
        settings.target_epochs, "target from scratch", "target test",
    )  # fmt: skip


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
    """Unsupervised domain adaptation to the source classes under uneven light.

    See `keras_transfer.demo.adaptation`: half the source labels, the other
    half's images under a brightness ramp without labels; source-only vs
    MMD-adapted, both tested on the source test images under the same light.
    """
    result = run_adaptation_stage(
        task,
        settings,
        os.path.join(out_dir, "adaptation_embedding.png"),
        os.path.join(out_dir, "adaptation_curves.png"),
    )
    rows = [
        StageResult(
            stage="uneven light, source only",
            evaluated_on="source test, uneven light",
            accuracy=result.source_only_accuracy,
        ),
        StageResult(
            stage="uneven light, adapted (MMD, no labels)",
            evaluated_on="source test, uneven light",
            accuracy=result.adapted_accuracy,
            seconds=result.seconds,
        ),
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
        task.target_unlabelled,
        epochs=settings.distill_epochs,
        batch_size=settings.batch_size,
        verbose=settings.verbose,
    )
    row = StageResult(
        stage="distilled student",
        evaluated_on="target test",
        accuracy=_evaluate_keras(student, task.target_test),
        parameters=student.count_params(),
        seconds=time.perf_counter() - start,
    )
    return student, row
