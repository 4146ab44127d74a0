"""Parts shared by the adversarial adapters: the default domain discriminator and its loss."""

import keras
import tensorflow as tf


def default_discriminator(hidden_units=100, hidden_layers=1, dropout=0.0, name="discriminator"):
    """`hidden_layers` x Dense(hidden_units, relu) [+ Dropout] -> Dense(1).

    The defaults are the domain classifier of Ganin et al.'s digits; CDAN's is
    two layers of 500 with dropout 0.5. The first layer keeps the name
    "d_hidden" that files saved by the first release have.
    """
    layers = []
    for index in range(hidden_layers):
        suffix = "" if index == 0 else f"_{index + 1}"
        layers.append(keras.layers.Dense(hidden_units, activation="relu", name="d_hidden" + suffix))
        if dropout:
            layers.append(keras.layers.Dropout(dropout, name="d_dropout" + suffix))
    return keras.Sequential([*layers, keras.layers.Dense(1, name="d_logit")], name=name)


def check_discriminator(discriminator, features_shape):
    """Builds the discriminator on the feature shape; it must give one logit per sample."""
    if features_shape is None or any(d is None for d in features_shape):
        return  # checked at the first batch instead
    out = discriminator(tf.zeros((1,) + tuple(features_shape)))
    if tuple(out.shape[1:]) != (1,):
        raise ValueError(
            f"discriminator must output one logit per sample, shape (batch, 1); it gives "
            f"{tuple(out.shape)} on features of shape {(None,) + tuple(features_shape)}."
        )


def domain_classification_loss(domain_logits, source_count, sample_weight=None):
    """Binary cross-entropy of telling source (label 0) from target (1), and its accuracy.

    Args:
        domain_logits: (n, 1) or (n,) logits, the first `source_count` rows source samples.
        source_count: how many rows are source samples.
        sample_weight: optional (n,) weights of the rows in the mean loss (CDAN+E's); the
            caller normalises them.

    Returns:
        (mean loss, accuracy), scalars.

    Example:
    >>> loss, accuracy = domain_classification_loss(tf.constant([[-3.0], [3.0]]), 1)
    >>> round(float(loss), 4), float(accuracy)
    (0.0486, 1.0)
    """
    logits = tf.reshape(tf.cast(domain_logits, tf.float32), [-1])
    index = tf.range(tf.shape(logits)[0])
    domains = tf.cast(index >= tf.cast(source_count, index.dtype), tf.float32)
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=domains, logits=logits)
    if sample_weight is not None:
        losses = losses * tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    loss = tf.reduce_mean(losses)
    accuracy = tf.reduce_mean(
        tf.cast(tf.equal(tf.cast(logits > 0, tf.float32), domains), tf.float32)
    )
    return loss, accuracy
