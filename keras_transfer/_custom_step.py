"""The one training step of keras-transfer's models: `CustomStepModel`.

A model whose loss is not Keras' `loss(y, y_pred)` (a Distiller, an Adapter,
MultiTaskModel) says only what differs: the names of its loss terms and
`compute_terms(data, training)`, as a Keras model overrides `compute_loss`
and leaves the loop to the Trainer. Everything else lives here once: the
trackers of the terms, `metrics`, `compile` with a default task loss, the
train and test steps, the regularization losses (`self.losses`: a student's
`kernel_regularizer`, `l2_sp`) added in both, the scaling for `tf.distribute`,
logs that run on several workers, and the compile arguments saved in `.keras`
files.
"""

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_transfer._training import MultiWorkerFit
from keras_transfer._training import keras_loss_mean
from keras_transfer._training import per_replica
from keras_transfer._training import step_logs


def _zero_unless(finite, gradient):
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        values = tf.where(finite, gradient.values, tf.zeros_like(gradient.values))
        return tf.IndexedSlices(values, gradient.indices, gradient.dense_shape)
    return tf.where(finite, gradient, tf.zeros_like(gradient))


class StepTerms(NamedTuple):
    """What `compute_terms` returns for one batch.

    Attributes:
        terms: `{name: scalar}`: "loss", the objective without the
            regularization losses, and the terms the model declares in
            `loss_terms`; each is this replica's mean over its share of the
            batch (the step scales it for `tf.distribute`).
        y: the labels the compiled metrics are measured against; None
            updates no metric.
        y_pred: the outputs they are measured on.
        sample_weight: the weights of the metrics, or None.
        term_weights: `{name: weight}` of a term in the epoch's mean where it
            is not the number of samples (e.g. a task's labelled samples).
    """

    terms: dict
    y: object = None
    y_pred: object = None
    sample_weight: object = None
    term_weights: dict = {}


class CustomStepModel(MultiWorkerFit, keras.Model):
    """Base of the models that define their loss from several terms.

    Subclasses set `loss_terms` (the names logged besides "loss", a class or
    instance attribute fixed before `compile`) and implement
    `compute_terms(data, training) -> StepTerms`. They read their task loss
    as `self.task_loss` (set by `compile`, default `default_loss()`), may
    override `update_metrics`, and `compile` arguments of their own through
    `_resolve_loss` / `_resolve_metrics` / `_compile_arguments`.

    Example:
    >>> class Plain(CustomStepModel):  # doctest: +SKIP
    ...     loss_terms = ()
    ...     def compute_terms(self, data, training):
    ...         x, y, w = keras.utils.unpack_x_y_sample_weight(data)
    ...         y_pred = self.net(x, training=training)
    ...         return StepTerms({"loss": self.task_loss_mean(y, y_pred, w)}, y, y_pred, w)
    """

    loss_terms = ()
    _nested = ()  # config entries holding nested models (a dict of them is one entry)
    _saved_names = {}  # config entry -> constructor argument, where a keyword was renamed

    def compute_terms(self, data, training):
        """This batch's loss terms (see `StepTerms`); the one hook of the step."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement compute_terms(data, training)."
        )

    def default_loss(self):
        """The task loss `compile` uses when given none: sparse categorical cross-entropy."""
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    # -- compile ---------------------------------------------------------------------------

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configures training.

        Args:
            optimizer: a Keras optimizer or its name.
            loss: the task loss (default: `default_loss()`).
            metrics: metrics of the outputs against the labels, e.g. `["accuracy"]`.
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        self.task_loss = self._resolve_loss(loss)
        names = ["loss", *self.loss_terms]
        if [tracker.name for tracker in getattr(self, "_trackers", [])] != names:
            self._trackers = [keras.metrics.Mean(name=name) for name in names]
        super().compile(optimizer=optimizer, metrics=self._resolve_metrics(metrics), **kwargs)

    def _resolve_loss(self, loss):
        return self.default_loss() if loss is None else keras.losses.get(loss)

    def _resolve_metrics(self, metrics):
        """What Keras compiles as metrics of (y, y_pred); a model keeping its own returns None."""
        return metrics

    def _compile_arguments(self):
        """The arguments of `compile` Keras does not save itself; they go into the `.keras` file."""
        return {"loss": self.task_loss}

    def get_compile_config(self):
        config = super().get_compile_config()
        if config:  # Keras gives {} for a model never compiled: nothing of ours to add
            config.update(
                {
                    key: keras.saving.serialize_keras_object(value)
                    for key, value in self._compile_arguments().items()
                }
            )
        return config

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        trackers = getattr(self, "_trackers", [])
        return trackers + [m for m in super().metrics if m.name != "loss" and m not in trackers]

    def task_loss_mean(self, y, y_pred, sample_weight=None):
        """The task loss's mean over this replica's batch (the step applies 1/replicas)."""
        return keras_loss_mean(self.task_loss, y, y_pred, sample_weight)

    # -- the step --------------------------------------------------------------------------

    def train_step(self, data):
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            step = self.compute_terms(data, training=True)
            loss = self._objective(step)
            scaled = self.optimizer.scale_loss(per_replica(loss))
        gradients = tape.gradient(scaled, variables)
        # A step whose loss is NaN or inf applies zero gradients: the weights stay finite
        # (NonFiniteLoss then stops training and names the term).
        finite = tf.math.is_finite(tf.cast(loss, tf.float32))
        gradients = [_zero_unless(finite, g) for g in gradients]
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._log(step, loss)

    def test_step(self, data):
        step = self.compute_terms(data, training=False)
        return self._log(step, self._objective(step))

    def _objective(self, step):
        """The declared loss plus the regularization losses of every layer, as Keras adds them."""
        regularization = [tf.cast(loss, tf.float32) for loss in self.losses]
        total = tf.cast(step.terms["loss"], tf.float32)
        return total + tf.add_n(regularization) if regularization else total

    def _log(self, step, loss):
        values = {**step.terms, "loss": loss}
        # Weighted by the samples they were measured on, as Keras weighs its loss, so an epoch's
        # figure is the mean over samples even when the last batch is smaller.
        samples = tf.shape(keras.tree.flatten(step.y_pred)[0])[0]
        for tracker in self._trackers:
            if tracker.name in values:
                tracker.update_state(
                    values[tracker.name], sample_weight=step.term_weights.get(tracker.name, samples)
                )
        if step.y is not None:
            self.update_metrics(step.y, step.y_pred, step.sample_weight)
        unmeasured = {tracker.name for tracker in self._trackers} - set(values)  # e.g. evaluate's
        return step_logs(
            self, {k: v for k, v in self.get_metrics_result().items() if k not in unmeasured}
        )

    def update_metrics(self, y, y_pred, sample_weight=None):
        """Updates the compiled metrics on this batch (overridden by models with their own)."""
        for metric in self.metrics[len(self._trackers) :]:
            metric.update_state(y, y_pred, sample_weight=sample_weight)

    # -- config ----------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config):
        """Rebuilds the model, deserializing its nested models (the entries named in `_nested`)."""
        config = dict(config)
        for key in cls._nested:
            value = config.get(key)
            if isinstance(value, dict) and "class_name" in value:
                config[key] = keras.saving.deserialize_keras_object(value)
            elif isinstance(value, dict):
                config[key] = {
                    name: keras.saving.deserialize_keras_object(item)
                    for name, item in value.items()
                }
        for saved, argument in cls._saved_names.items():
            if saved in config:
                config[argument] = config.pop(saved)
        return cls(**config)

    def get_config(self):
        config = super().get_config()
        for key in self._nested:
            value = getattr(self, key)
            if isinstance(value, dict):
                config[key] = {name: self._serialize_nested(item) for name, item in value.items()}
            else:
                config[key] = None if value is None else self._serialize_nested(value)
        return config

    @staticmethod
    def _serialize_nested(model):
        return keras.saving.serialize_keras_object(model)
