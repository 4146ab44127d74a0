"""Parts shared by the test-time adapters (AdaBN, TENT, SHOT): a deployed model in, a copy out.

`copy_model` makes the copy a method adapts, so the user's model is never
changed; `batch_moments_probe` runs that copy with every BatchNormalization
normalising by the batch's own moments (and summing them), Dropout and the
rest in inference mode; `set_target_statistics` makes the copy's moving
statistics the target's.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer._checks import require_batched
from keras_transfer._checks import require_keras_archive
from keras_transfer._checks import require_number
from keras_transfer._checks import warn_about_images


def load_plain_model(model, argument="model"):
    """`model`, or the model in a `.keras` file (safe mode); a Functional or Sequential one."""
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{argument} file not found: {path!r}.")
        model = keras.saving.load_model(require_keras_archive(path, argument), safe_mode=True)
    from keras.src.models.functional import Functional

    if not isinstance(model, (keras.Sequential, Functional)):
        raise TypeError(
            f"{argument} must be a Functional or Sequential keras.Model or a .keras file of one "
            f"(a copy of it is adapted); got {type(model).__name__}. For an adapter pass "
            "keras.Sequential([adapter.backbone, adapter.classifier])."
        )
    if not model.built or not model.inputs:
        raise ValueError(f"{argument} must be built (called on data or given an Input) first.")
    return model


def batch_norm_layers(model):
    """Every BatchNormalization layer in `model`, nested models included, in order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(batch_norm_layers(layer))
    return found


def copy_model(model, argument="model", needs_batch_norm=True):
    """A copy of a Functional or Sequential model (nested ones too) with its weights; with
    `needs_batch_norm`, it must hold a BatchNormalization layer."""
    model = load_plain_model(model, argument)
    if needs_batch_norm and not batch_norm_layers(model):
        raise ValueError(
            f"{argument} has no BatchNormalization layer: test-time adaptation by BatchNorm "
            "statistics has nothing to adapt."
        )
    copy = keras.models.clone_model(model, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


class BatchMoments(keras.layers.Layer):
    """A BatchNormalization layer run on each batch's own moments, which it also sums.

    Internal to the test-time adapters, never saved: it wraps a layer it shares
    with the model being adapted, which a file cannot hold.

    It normalises with the wrapped layer's scale and offset (trainable, if it
    is) and the batch's mean and variance whatever `training` is, the way a
    BatchNorm layer trains, even when the wrapped one is frozen; `mean()` and
    `variance()` are the population moments of everything it has seen.

    Args:
        layer: the BatchNormalization layer (shared, not copied).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(name=kwargs.pop("name", f"{layer.name}_moments"), **kwargs)
        self.layer = layer

    def build(self, input_shape):
        channels = (input_shape[self.layer.axis],)
        # float64 sums: E[x^2] - E[x]^2 from float32 loses the variance when |mean| >> std
        add = lambda shape: self.add_weight(  # noqa: E731
            shape=shape, initializer="zeros", trainable=False, dtype="float64", autocast=False
        )
        self.total, self.total_square, self.count = add(channels), add(channels), add(())

    def _axes(self, rank):
        return [i for i in range(rank) if i != self.layer.axis % rank]

    def call(self, inputs, training=None, mask=None):
        x = tf.cast(inputs, tf.float32)
        axes = self._axes(len(x.shape))
        mean, variance = tf.nn.moments(x, axes, keepdims=True)
        n = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float32)
        mean64, variance64, n64 = (tf.cast(v, tf.float64) for v in (mean, variance, n))
        self.total.assign_add(tf.reshape(mean64, [-1]) * n64)
        self.total_square.assign_add(tf.reshape(variance64 + tf.square(mean64), [-1]) * n64)
        self.count.assign_add(n64)
        shape = mean.shape
        gamma = self.layer.gamma if self.layer.scale else None
        beta = self.layer.beta if self.layer.center else None
        reshape = lambda v: None if v is None else tf.reshape(tf.cast(v, tf.float32), shape)  # noqa: E731
        out = tf.nn.batch_normalization(
            x, mean, variance, reshape(beta), reshape(gamma), self.layer.epsilon
        )
        return tf.cast(out, inputs.dtype)

    def mean(self):
        return tf.cast(self.total / self.count, tf.float32)

    def variance(self):
        mean = self.total / self.count
        return tf.cast(
            tf.maximum(self.total_square / self.count - tf.square(mean), 0.0), tf.float32
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}


def batch_moments_probe(model):
    """(probe, moments): `model` with each BatchNormalization wrapped in `BatchMoments`, every
    other layer shared with it, so training the probe trains `model`."""
    moments = []

    def wrap(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            moments.append(BatchMoments(layer))
            return moments[-1]
        return layer

    probe = keras.models.clone_model(model, clone_function=wrap, recursive=True)
    if len({id(m.layer) for m in moments}) != len(batch_norm_layers(model)):
        raise ValueError(
            "model holds BatchNormalization layers inside a subclassed nested model, which "
            "cannot be adapted by copy; build it from Functional or Sequential parts."
        )
    return probe, moments


def target_batches(x_target, batch_size, model, argument="x_target"):
    """The target inputs as a dataset of batches: an array, or a `tf.data.Dataset` of inputs,
    checked against `model`'s input."""
    batch_size = require_number(batch_size, "batch_size", above=True, integer=True)
    if isinstance(x_target, tf.data.Dataset):
        spec = x_target.element_spec
        if isinstance(spec, tuple):
            raise ValueError(
                f"{argument} must yield inputs only (no labels: the target is unlabelled); "
                f"it yields a tuple {spec}."
            )
        return require_batched(x_target, model, argument)
    x = np.asarray(x_target)
    if x.dtype == object or x.ndim < 2 or len(x) == 0:
        raise ValueError(
            f"{argument} must be a non-empty array of target inputs (samples first) or a "
            f"tf.data.Dataset of them; got shape {x.shape} and dtype {x.dtype}."
        )
    return tf.data.Dataset.from_tensor_slices(require_target_inputs(x, model, argument)).batch(
        int(batch_size)
    )


def require_target_inputs(x, model, argument="x_target"):
    """`x` as float32 if it is finite and shaped as `model`'s input (warning on 0-255 images)."""
    x = x.astype("float32")
    expected = getattr(model, "inputs", None) and tuple(model.inputs[0].shape[1:])
    if expected and (
        len(expected) != x.ndim - 1
        or any(e is not None and e != got for e, got in zip(expected, x.shape[1:]))
    ):
        raise ValueError(
            f"{argument} holds inputs shaped {x.shape[1:]}; the model takes {expected}."
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{argument} holds NaN or inf values; adaptation needs finite inputs.")
    warn_about_images(x, argument, model)
    return x


def set_target_statistics(model, batches):
    """Sets every BatchNormalization moving mean and variance in `model` to the population
    moments of its inputs over `batches` (each BatchNorm normalising on batch moments)."""
    probe, moments = batch_moments_probe(model)
    run = tf.function(lambda x: probe(x, training=False))
    for batch in batches:
        run(batch)
    for moment in moments:
        moment.layer.moving_mean.assign(tf.cast(moment.mean(), moment.layer.moving_mean.dtype))
        moment.layer.moving_variance.assign(
            tf.cast(moment.variance(), moment.layer.moving_variance.dtype)
        )
    return model
