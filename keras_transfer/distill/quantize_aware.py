"""Distillation into a quantization-aware (int8) student.

tfmot's fake-quant layers exist only for Keras 2 (`tf_keras`) models, so a QAT
student cannot sit inside the Keras 3 `Distiller`. `distill_quantize_aware`
keeps the Distiller's loss and checks and trains the QAT copy with tf_keras'
own `fit`: the teacher runs once over the inputs (cached outputs, as with
`Distiller(cache_teacher=True)`), its logits travel beside the labels in `y`,
and a per-example loss

    alpha * cross-entropy(label, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))

("mse": the mean squared logit difference instead of the KL term) is averaged
by tf_keras over the global batch, so the result is the same under
`tf.distribute.MirroredStrategy` when the call runs inside `strategy.scope()`,
and under `MultiWorkerMirroredStrategy` on several machines (up to tfmot's
replica-averaged activation ranges).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.distill.distiller import Distiller
from keras_transfer.distill.losses import kl_per_example
from keras_transfer.distill.losses import mse_per_example
from keras_transfer.quantize import quantize_aware

LOSSES = ("kl", "mse")


def distillation_objective(temperature, alpha, distillation_loss="kl"):
    """A tf_keras loss on packed targets `[label, teacher logits...]`, one value per example.

    Args:
        temperature: T > 0 of the KL term.
        alpha: weight of the cross-entropy on the label column.
        distillation_loss: "kl" or "mse".

    Returns:
        A function `(y_packed, student_logits) -> (batch,)` losses.

    Example:
    >>> loss = distillation_objective(4.0, 0.0)
    >>> packed = np.array([[0, 2.0, 0.0]], "float32"); student = np.array([[2.0, 0.0]], "float32")
    >>> float(loss(packed, student)[0])
    0.0
    """
    per_example_distillation = {
        "kl": lambda t, s: kl_per_example(t, s, temperature) * temperature**2,
        "mse": mse_per_example,
    }[distillation_loss]

    def objective(y_packed, student_logits):
        labels, teacher_logits = _unpack(y_packed)
        student_logits = tf.cast(student_logits, tf.float32)
        total = (1.0 - alpha) * per_example_distillation(teacher_logits, student_logits)
        if alpha > 0:
            total += alpha * tf.nn.sparse_softmax_cross_entropy_with_logits(labels, student_logits)
        return total

    objective.__name__ = f"distillation_{distillation_loss}"
    return objective


def label_accuracy(y_packed, student_logits):
    """Accuracy of the student's argmax against the label column of packed targets."""
    labels, _ = _unpack(y_packed)
    predicted = tf.argmax(student_logits, axis=-1, output_type=tf.int32)
    return tf.cast(tf.equal(predicted, labels), tf.float32)


def _unpack(y_packed):
    y_packed = tf.cast(y_packed, tf.float32)
    return tf.cast(y_packed[:, 0], tf.int32), y_packed[:, 1:]


def pack_targets(labels, teacher_logits):
    """`[label, teacher logits...]` rows; labels None give a zero column (alpha must be 0)."""
    teacher_logits = np.asarray(teacher_logits, dtype="float32")
    if labels is None:
        column = np.zeros((len(teacher_logits), 1), "float32")
    else:
        column = np.asarray(labels).reshape(-1, 1).astype("float32")
    return np.concatenate([column, teacher_logits], axis=1)


def _check_optimizer(optimizer):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            "optimizer must be a tf_keras optimizer or a name such as 'adam': the QAT student is "
            f"a tf_keras model, which a Keras 3 {type(optimizer).__name__} cannot train."
        )


def _check_callbacks(callbacks):
    for callback in callbacks or []:
        if isinstance(callback, keras.callbacks.Callback):
            raise TypeError(
                "callbacks must be tf_keras callbacks (e.g. tf_keras.callbacks.EarlyStopping): the "
                f"QAT student trains in tf_keras' fit, which cannot drive a Keras 3 "
                f"{type(callback).__name__}."
            )


def _check_labels(y, x, alpha):
    if y is None:
        if alpha > 0:
            raise ValueError(
                f"alpha={alpha} weighs a cross-entropy on labels, so y is needed; pass y, or "
                "alpha=0 to learn from the teacher alone."
            )
        return
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(
            f"y must hold one integer label per input: expected shape ({len(x)},), got {y.shape}."
        )


def distill_quantize_aware(
    teacher,
    student,
    x,
    y=None,
    temperature=1.0,
    alpha=0.1,
    distillation_loss="kl",
    teacher_outputs="logits",
    calibration_data=None,
    optimizer="adam",
    epochs=1,
    batch_size=128,
    validation_data=None,
    **fit_kwargs,
):
    """Trains a quantization-aware copy of `student` to follow `teacher` (and the labels).

    Args:
        teacher: as for `Distiller`: a Keras model, a `.keras` file, a SavedModel
            folder or a TF-Hub URL, giving logits (or probabilities with
            `teacher_outputs="probabilities"`).
        student: a built Keras 3 functional or Sequential float model giving
            logits, made of `quantize.SUPPORTED_LAYERS` (e.g. a student already
            distilled in float).
        x: input array (not augmented: the teacher runs on it once).
        y: integer labels, or None with `alpha=0` (unlabelled, e.g. target-domain data).
        temperature, alpha, distillation_loss: as for `Distiller` ("kl" or "mse").
        teacher_outputs: "logits" or "probabilities".
        calibration_data: inputs that start the activation ranges at the float
            student's (see `quantize_aware`); recommended for short runs.
        optimizer: a tf_keras optimizer or its name.
        epochs, batch_size, validation_data, **fit_kwargs: passed to tf_keras
            `fit` (`validation_data` is `(x_val, y_val)` or `(x_val, None)`).

    Returns:
        The trained tf_keras QAT model (its `history` holds the fit logs);
        `export_tflite(model, path, quantization="int8")` writes the int8 file.

    Example:
    >>> qat = distill_quantize_aware(teacher, student, x_train, y_train, epochs=2,
    ...                              calibration_data=x_train[:500])  # doctest: +SKIP
    >>> export_tflite(qat, "student_int8.tflite", quantization="int8")  # doctest: +SKIP
    """
    if distillation_loss not in LOSSES:
        raise ValueError(
            f"distillation_loss must be one of {LOSSES} for a quantization-aware student, got "
            f"{distillation_loss!r}."
        )
    _check_optimizer(optimizer)
    _check_callbacks(fit_kwargs.get("callbacks"))
    distiller = Distiller(
        teacher,
        student,
        temperature=temperature,
        alpha=alpha,
        distillation_loss=distillation_loss,
        teacher_outputs=teacher_outputs,
        cache_teacher=True,
    )
    x = np.asarray(x, dtype="float32")
    if len(x) == 0:
        raise ValueError("x is empty: distillation needs at least one input.")
    _check_labels(y, x, distiller.alpha)
    if validation_data is not None:
        x_val, y_val = validation_data
        x_val = np.asarray(x_val, dtype="float32")
        _check_labels(y_val, x_val, distiller.alpha)

    targets = pack_targets(y, distiller.teacher_targets(x)[0])
    if validation_data is not None:
        validation_data = (x_val, pack_targets(y_val, distiller.teacher_targets(x_val)[0]))
    qat = quantize_aware(student, calibration_data=calibration_data)
    qat.compile(
        optimizer=optimizer,
        loss=distillation_objective(distiller.temperature, distiller.alpha, distillation_loss),
        metrics=[label_accuracy] if y is not None else None,
    )
    qat.fit(
        x,
        targets,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=validation_data,
        **fit_kwargs,
    )
    return qat
