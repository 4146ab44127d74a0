"""TENT: test-time entropy minimisation over BatchNorm scale and offset (Wang et al. 2021)."""

import keras
import tensorflow as tf

from keras_transfer._checks import require_number
from keras_transfer._training import ends_in_softmax
from keras_transfer.adapt.batchnorm import batch_moments_probe
from keras_transfer.adapt.batchnorm import copy_model
from keras_transfer.adapt.batchnorm import set_target_statistics
from keras_transfer.adapt.batchnorm import target_batches


def prediction_entropy(outputs, from_logits=True):
    """Mean Shannon entropy (nats) of a batch's class predictions.

    Args:
        outputs: (batch, classes) logits, or probabilities with `from_logits=False`.
        from_logits: whether `outputs` are logits.

    Returns:
        A scalar tensor.

    Example:
    >>> round(float(prediction_entropy(tf.zeros((3, 4)))), 4)  # uniform: log 4
    1.3863
    """
    outputs = tf.cast(outputs, tf.float32)
    if from_logits:
        log_p = tf.nn.log_softmax(outputs, axis=-1)
    else:
        log_p = tf.math.log(tf.maximum(outputs, 1e-12))
    return -tf.reduce_mean(tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1))


def tent(model, x_target, epochs=1, batch_size=128, learning_rate=1e-3):
    """A copy of `model` adapted to unlabelled target data by TENT.

    Each BatchNormalization layer normalises each target batch by its own
    moments, and only the BatchNorm scales and offsets are trained, by Adam,
    to make the predictions confident (minimum mean entropy); every other
    weight stays the model's. The copy's moving statistics are then the
    target's (as `adabn` sets them), so it predicts one image at a time.
    The model itself is unchanged.

    Args:
        model: a Functional or Sequential Keras model with BatchNormalization
            layers, or a `.keras` file of one (loaded in safe mode). Its
            outputs are logits, or probabilities if it ends in a softmax.
        x_target: unlabelled target inputs, an array or a `tf.data.Dataset`
            of input batches.
        epochs: passes over the target (the paper's online setting is one).
        batch_size: batch size over an array (the paper's is 128).
        learning_rate: Adam's (the paper's 1e-3).

    Returns:
        A new Keras model of the same architecture, ready to save or export.

    Example:
    >>> adapted = tent("source_model.keras", x_target)  # doctest: +SKIP
    """
    epochs = require_number(epochs, "epochs", above=True, integer=True)
    learning_rate = require_number(learning_rate, "learning_rate", above=True)
    adapted = copy_model(model)
    batches = target_batches(x_target, batch_size, adapted)
    probe, moments = batch_moments_probe(adapted)
    scales_and_offsets = [
        variable
        for moment in moments
        for variable in (
            moment.layer.gamma if moment.layer.scale else None,
            moment.layer.beta if moment.layer.center else None,
        )
        if variable is not None
    ]
    optimizer = keras.optimizers.Adam(learning_rate)
    from_logits = not ends_in_softmax(adapted)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch([variable.value for variable in scales_and_offsets])
            entropy = prediction_entropy(probe(x, training=False), from_logits)
        gradients = tape.gradient(entropy, [variable.value for variable in scales_and_offsets])
        optimizer.apply(gradients, scales_and_offsets)
        return entropy

    for _ in range(int(epochs)):
        for batch in batches:
            if int(tf.shape(batch)[0]) > 1:  # one sample has no batch variance to adapt
                step(batch)
    set_target_statistics(adapted, batches)
    return adapted
