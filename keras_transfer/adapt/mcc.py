"""MCC: minimum class confusion on the target predictions (Jin et al. 2020)."""

import keras
import tensorflow as tf

from keras_transfer._checks import require_number
from keras_transfer._training import gather_replicas
from keras_transfer.adapt.adapter import Adapter


def class_confusion(logits, temperature=2.5):
    """MCC's loss: how much a batch's predictions confuse classes with one another.

    With p = softmax(logits / T) and each sample weighted by 1 + exp(-entropy(p))
    (normalised to mean 1, so confident samples count more), C = pᵀ diag(w) p is
    the classes' correlation over the batch; each row is normalised to sum 1,
    and the loss is the mean off-diagonal mass, (sum(C) - trace(C)) / classes.
    It is 0 when every sample is predicted with certainty.

    Args:
        logits: (batch, classes) class logits of target samples.
        temperature: T > 0; larger T smooths the predictions.

    Returns:
        A scalar tensor in [0, 1).

    Example:
    >>> certain = tf.constant([[20.0, 0.0], [0.0, 20.0]])
    >>> float(class_confusion(certain)) < 1e-3
    True
    """
    logits = tf.cast(logits, tf.float32)
    probabilities = tf.nn.softmax(logits / temperature, axis=-1)
    entropy = -tf.reduce_sum(probabilities * tf.math.log(probabilities + 1e-5), axis=-1)
    weights = 1.0 + tf.exp(-entropy)
    weights = tf.cast(tf.shape(logits)[0], tf.float32) * weights / tf.reduce_sum(weights)
    correlation = tf.matmul(probabilities * weights[:, None], probabilities, transpose_a=True)
    normalised = correlation / tf.reduce_sum(correlation, axis=1, keepdims=True)
    classes = tf.cast(tf.shape(logits)[1], tf.float32)
    return (tf.reduce_sum(normalised) - tf.linalg.trace(normalised)) / classes


@keras.saving.register_keras_serializable(package="keras_transfer")
class MCC(Adapter):
    """Minimum class confusion (Jin et al. 2020): the target predictions confuse no two classes.

    Loss = task loss on source labels + `confusion_weight` · `strength` ·
    `class_confusion(target logits, temperature)`. No discriminator and no
    feature alignment: only the classifier's target predictions. Under
    `tf.distribute` the confusion is measured on the target batch of all replicas.

    Args:
        backbone: Keras model from inputs to features.
        classifier: Keras model from features to class logits.
        temperature: T of the softened predictions (2.5 in TLlib's recipes).
        confusion_weight: weight of the confusion term (1 in TLlib's recipes).

    Example:
    >>> mcc = MCC(features, classifier)  # doctest: +SKIP
    >>> mcc.compile(keras.optimizers.SGD(0.01, momentum=0.9))  # doctest: +SKIP
    >>> mcc.fit(domain_pairs((x_s, y_s), x_t, 64), epochs=10)  # doctest: +SKIP
    """

    adaptation_terms = ("confusion_loss",)
    uses_target_logits = True

    def __init__(
        self, backbone=None, classifier=None, temperature=2.5, confusion_weight=1.0, **kwargs
    ):
        super().__init__(backbone, classifier, **kwargs)
        self.temperature = require_number(temperature, "temperature", above=True)
        self.confusion_weight = require_number(confusion_weight, "confusion_weight")

    def adaptation_loss(self, batch):
        confusion = class_confusion(gather_replicas(batch.target.logits), self.temperature)
        weight = self.confusion_weight * tf.convert_to_tensor(self.strength)
        return weight * confusion, {"confusion_loss": confusion}

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "confusion_weight": self.confusion_weight,
        }
