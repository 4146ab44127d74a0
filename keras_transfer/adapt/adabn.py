"""AdaBN: a deployed model's BatchNorm statistics recomputed on the target (Li et al. 2017)."""

from keras_transfer.adapt.batchnorm import copy_model
from keras_transfer.adapt.batchnorm import set_target_statistics
from keras_transfer.adapt.batchnorm import target_batches


def adabn(model, x_target, batch_size=256):
    """A copy of `model` whose BatchNormalization layers normalise with the target's statistics.

    No training and no labels: every moving mean and variance becomes the
    mean and variance of that layer's inputs over the unlabelled target
    images; every other weight is the model's. The model itself is unchanged.

    Args:
        model: a Functional or Sequential Keras model with BatchNormalization
            layers, or a `.keras` file of one (loaded in safe mode).
        x_target: unlabelled target inputs, an array or a `tf.data.Dataset`
            of input batches.
        batch_size: batch size over an array.

    Returns:
        A new Keras model of the same architecture, ready to save or export.

    Example:
    >>> adapted = adabn("source_model.keras", x_target)  # doctest: +SKIP
    >>> adapted.predict(x_target).argmax(-1)  # doctest: +SKIP
    """
    adapted = copy_model(model)
    return set_target_statistics(adapted, target_batches(x_target, batch_size, adapted))
