"""Distillation terms: plain functions and the `keras.distillation.DistillationLoss` strategies they
make.

"kl" (Hinton et al. 2015), "mse" on logits and FitNets hints (Romero et al.
2015) are strategies like Keras' own `LogitsDistillation` and
`FeatureDistillation`, so the Distiller sums a list of strategies. Ours also
take per-example `sample_weight`.
"""

import keras
import numpy as np  # noqa: F401  (doctest examples)
import tensorflow as tf

from keras_transfer._checks import require_number


def kl_distillation_loss(teacher_logits, student_logits, temperature, sample_weight=None):
    """KL(softmax(t/T) || softmax(s/T)) * T^2, averaged over the batch (Hinton et al. 2015).

    Args:
        teacher_logits: (batch, classes) teacher logits.
        student_logits: (batch, classes) student logits.
        temperature: softening temperature T > 0.
        sample_weight: optional (batch,) weights of a weighted mean.

    Returns:
        A scalar tensor.

    Example:
    >>> t = np.array([[2.0, 0.0]], "float32"); s = np.array([[0.0, 0.0]], "float32")
    >>> round(float(kl_distillation_loss(t, s, 1.0)), 4)
    0.3278
    """
    per_example = kl_per_example(teacher_logits, student_logits, temperature)
    return _weighted_mean(per_example, sample_weight) * temperature**2


def kl_per_example(teacher_logits, student_logits, temperature):
    """KL(softmax(t/T) || softmax(s/T)) of each example, shape (batch,), not scaled by T^2."""
    teacher = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    student = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    return tf.reduce_sum(tf.exp(teacher) * (teacher - student), axis=-1)


def mse_distillation_loss(teacher_logits, student_logits, sample_weight=None):
    """Mean squared error between teacher and student logits (the high-temperature limit).

    Example:
    >>> float(mse_distillation_loss(np.ones((2, 3), "float32"), np.zeros((2, 3), "float32")))
    1.0
    """
    return _weighted_mean(mse_per_example(teacher_logits, student_logits), sample_weight)


def mse_per_example(teacher_logits, student_logits):
    """Mean squared logit difference of each example, shape (batch,)."""
    difference = tf.cast(student_logits, tf.float32) - tf.cast(teacher_logits, tf.float32)
    return tf.reduce_mean(tf.square(difference), axis=-1)


def _weighted_mean(per_example, sample_weight):
    if sample_weight is None:
        return tf.reduce_mean(per_example)
    weight = tf.cast(tf.reshape(sample_weight, [-1]), per_example.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(per_example * weight), tf.reduce_sum(weight))


class WeightedDistillationLoss(keras.distillation.DistillationLoss):
    """A distillation strategy whose loss takes per-example weights (`sample_weight`)."""

    teacher_layer_name = None
    student_layer_name = None

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_transfer")
class KLDistillation(WeightedDistillationLoss):
    """KL(softmax(t/T) || softmax(s/T)) · T² on the logits (`kl_distillation_loss`).

    Args:
        temperature: the softening temperature T > 0.

    Example:
    >>> t = np.array([[2.0, 0.0]], "float32"); s = np.array([[0.0, 0.0]], "float32")
    >>> round(float(KLDistillation(1.0).compute_loss(t, s)), 4)
    0.3278
    """

    def __init__(self, temperature=1.0):
        self.temperature = require_number(temperature, "temperature", above=True)

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        return kl_distillation_loss(
            teacher_outputs, student_outputs, self.temperature, sample_weight
        )

    def get_config(self):
        return {"temperature": self.temperature}


@keras.saving.register_keras_serializable(package="keras_transfer")
class MSEDistillation(WeightedDistillationLoss):
    """Mean squared difference of the logits (`mse_distillation_loss`), the high-temperature limit.

    Example:
    >>> teacher, student = np.ones((2, 3), "float32"), np.zeros((2, 3), "float32")
    >>> float(MSEDistillation().compute_loss(teacher, student))
    1.0
    """

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        return mse_distillation_loss(teacher_outputs, student_outputs, sample_weight)


class HintDistillation(WeightedDistillationLoss):
    """FitNets hint: MSE of a teacher layer's output and a student layer's, through an adapter.

    The adapter (a Dense layer to the teacher layer's width) is trained with
    the student; the Distiller that makes the hint owns it.

    Args:
        teacher_layer_name, student_layer_name: the layers whose outputs are matched.
        adapter: the layer from the student output's width to the teacher's.
    """

    def __init__(self, teacher_layer_name, student_layer_name, adapter):
        self.teacher_layer_name = teacher_layer_name
        self.student_layer_name = student_layer_name
        self.adapter = adapter

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        return tf.reduce_mean(
            tf.square(self.adapter(student_outputs) - tf.cast(teacher_outputs, tf.float32))
        )


def distillation_strategies(distillation_loss, temperature):
    """The strategies a `distillation_loss` argument names: "kl", "mse", DistillationLoss objects or
    a list.
    """
    items = (
        distillation_loss if isinstance(distillation_loss, (list, tuple)) else [distillation_loss]
    )
    if not items:
        raise ValueError("distillation_loss must name at least one loss.")
    strategies = []
    for item in items:
        if isinstance(item, keras.distillation.DistillationLoss):
            strategies.append(item)
        elif isinstance(item, str) and item in ("kl", "mse"):
            strategies.append(KLDistillation(temperature) if item == "kl" else MSEDistillation())
        else:
            raise ValueError(
                "distillation_loss must be 'kl', 'mse', a keras.distillation."
                f"DistillationLoss, or a list of these; got {item!r}."
            )
    return strategies
