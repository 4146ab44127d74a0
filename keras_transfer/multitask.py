"""Multi-task learning: one shared backbone, named heads, batches drawn from several datasets.

A batch is `(x, {task: y}, {task: mask})`: the mask marks which samples carry a
label for that task (1) and which do not (0). A task with no labelled sample in
a batch contributes no loss and no gradient. `task_batches` builds such batches
from one labelled dataset per task; a batch of images labelled for every task
can be given as plain `(x, {task: y})`.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_transfer._checks import require_finite
from keras_transfer._checks import require_labels
from keras_transfer._checks import require_layer
from keras_transfer._checks import require_number
from keras_transfer._custom_step import CustomStepModel
from keras_transfer._custom_step import StepTerms
from keras_transfer._training import global_sum
from keras_transfer._training import replica_count

SAMPLING = ("round_robin", "proportional")


def task_batches(tasks, batch_size=32, sampling="round_robin", seed=None):
    """Batches from one labelled dataset per task, for `MultiTaskModel.fit`.

    Each batch holds samples of one task; its labels for the other tasks are
    zeros with mask 0. An epoch has as many batches as all tasks together
    (`sum(n_task // batch_size)`), so every sample is seen about once per epoch.

    Args:
        tasks: `{name: (x, y)}`; the inputs of all tasks share one shape past
            the batch axis (the backbone's input); labels are class indices
            or one-hot rows.
        batch_size: samples per batch.
        sampling: "round_robin" (tasks take turns) or "proportional" (each
            batch's task drawn with probability proportional to its size).
        seed: shuffle and sampling seed, or None; samples and (with
            "proportional") the task order are drawn anew each epoch.

    Returns:
        A `tf.data.Dataset` of `(x, {task: y}, {task: mask})` batches.

    Example:
    >>> x = np.zeros((64, 8, 8, 1), "float32")
    >>> tasks = {"a": (x, np.zeros(64, "int32")), "b": (x, np.ones(64, "int32"))}
    >>> batches = task_batches(tasks, 32, seed=0)
    >>> _, labels, masks = next(iter(batches))
    >>> sorted(labels), [float(masks["a"][0]), float(masks["b"][0])]
    (['a', 'b'], [1.0, 0.0])
    """
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}; got {sampling!r}.")
    require_number(batch_size, "batch_size", minimum=1, integer=True)
    arrays = _check_tasks(tasks, batch_size)
    templates = {name: (y.shape[1:], y.dtype) for name, (_, y) in arrays.items()}
    streams = []
    for index, (name, (x, y)) in enumerate(arrays.items()):
        stream = tf.data.Dataset.from_tensor_slices((x, y))
        stream = stream.shuffle(
            len(x), seed=None if seed is None else seed + index, reshuffle_each_iteration=True
        )
        streams.append(
            stream.repeat()
            .batch(batch_size, drop_remainder=True)
            .map(_labelled_for(name, templates))
        )
    steps = sum(len(x) // batch_size for x, _ in arrays.values())
    if sampling == "round_robin":
        order = tf.data.Dataset.range(len(streams)).repeat()
        batches = tf.data.Dataset.choose_from_datasets(streams, order)
    else:
        sizes = np.array([len(x) for x, _ in arrays.values()], "float64")
        batches = tf.data.Dataset.sample_from_datasets(
            streams, weights=list(sizes / sizes.sum()), seed=seed, rerandomize_each_iteration=True
        )
    return batches.take(steps).prefetch(tf.data.AUTOTUNE)


def _check_tasks(tasks, batch_size):
    if not isinstance(tasks, dict) or not tasks:
        raise ValueError(
            f"tasks must be a non-empty dict {{name: (x, y)}}; got {type(tasks).__name__}."
        )
    arrays, input_shape = {}, None
    for name, data in tasks.items():
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise ValueError(f"tasks[{name!r}] must be a pair (x, y) of arrays.")
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(
                f"tasks[{name!r}] inputs must be a non-empty batch of samples; got shape {x.shape}."
            )
        y = require_labels(y, len(x), f"tasks[{name!r}] labels")
        if len(x) < batch_size:
            raise ValueError(
                f"tasks[{name!r}] has {len(x)} samples, fewer than batch_size={batch_size}."
            )
        if input_shape is not None and x.shape[1:] != input_shape:
            raise ValueError(
                f"tasks[{name!r}] inputs have shape {x.shape[1:]} per sample, other tasks "
                f"{input_shape}; the shared backbone needs one input shape."
            )
        input_shape = x.shape[1:]
        require_finite(x, f"tasks[{name!r}] inputs")
        y = y.astype("int32") if np.issubdtype(y.dtype, np.integer) else y.astype("float32")
        arrays[name] = (x.astype("float32"), y)
    return arrays


def _labelled_for(task, templates):
    def attach(x, y):
        size = tf.shape(x)[0]
        labels, masks = {}, {}
        for name, (shape, dtype) in templates.items():
            present = name == task
            labels[name] = (
                y
                if present
                else tf.zeros(
                    tf.concat([[size], tf.constant(shape, tf.int32, [len(shape)])], 0), dtype
                )
            )
            masks[name] = tf.fill([size], 1.0 if present else 0.0)
        return x, labels, masks

    return attach


def _accuracy_for(loss):
    if isinstance(loss, keras.losses.CategoricalCrossentropy):
        return keras.metrics.CategoricalAccuracy
    if isinstance(loss, keras.losses.BinaryCrossentropy):
        return keras.metrics.BinaryAccuracy
    return keras.metrics.SparseCategoricalAccuracy


@keras.saving.register_keras_serializable(package="keras_transfer")
class MultiTaskModel(CustomStepModel):
    """A shared backbone with one head per task, trained on batches that label some tasks.

    Loss = sum over tasks of `loss_weights[task]` · the task's mean loss over
    the samples labelled for it in the batch (mask 1); a task without such a
    sample adds nothing. Logs show `loss`, `<task>_loss` and each task's
    metrics (`<task>_accuracy`, ...), counted on its labelled samples only.

    Args:
        backbone: Keras model from inputs to shared features.
        heads: `{task name: Keras model from features to that task's outputs}`.
        loss_weights: `{task name: weight}`; tasks left out weigh 1.

    Example:
    >>> heads = {"digit": digit_head, "parity": parity_head}  # doctest: +SKIP
    >>> model = MultiTaskModel(backbone, heads)  # doctest: +SKIP
    >>> model.compile("adam", metrics=["accuracy"])  # doctest: +SKIP
    >>> batches = task_batches({"digit": (x1, y1), "parity": (x2, y2)}, 32)  # doctest: +SKIP
    >>> model.fit(batches, epochs=5)  # doctest: +SKIP
    >>> digit_model = model.head_model("digit")  # inputs -> digit logits  # doctest: +SKIP
    """

    def __init__(self, backbone, heads, loss_weights=None, **kwargs):
        super().__init__(**kwargs)
        require_layer(backbone, "backbone")
        if not isinstance(heads, dict) or not heads:
            raise ValueError(
                "heads must be a non-empty dict {task name: head model}; "
                f"got {type(heads).__name__}."
            )
        for name, head in heads.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"head names must be identifiers (they name logs); got {name!r}.")
            require_layer(head, f"heads[{name!r}]")
        unknown = sorted(set(loss_weights or {}) - set(heads))
        if unknown:
            raise ValueError(
                f"loss_weights names tasks {unknown} that have no head; heads: {sorted(heads)}."
            )
        self.backbone = backbone
        self.heads = dict(heads)
        self.task_names = list(heads)
        self.loss_weights = {
            name: float((loss_weights or {}).get(name, 1.0)) for name in self.task_names
        }
        self.loss_terms = tuple(f"{name}_loss" for name in self.task_names)
        self.built = backbone.built and all(head.built for head in self.heads.values())
        self._task_metrics = {name: [] for name in self.task_names}

    def call(self, inputs, training=False):
        features = self.backbone(inputs, training=training)
        return {name: self.heads[name](features, training=training) for name in self.task_names}

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configures training.

        Args:
            optimizer: any Keras optimizer.
            loss: one loss for every head, or `{task: loss}`; default sparse
                categorical cross-entropy on logits.
            metrics: a list for every head, or `{task: [metrics]}`; "accuracy"
                picks the accuracy that fits the task's loss.
            **kwargs: passed to `keras.Model.compile`.
        """
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def _resolve_loss(self, loss):
        self._loss_argument = loss
        resolve = super()._resolve_loss
        return {name: resolve(value) for name, value in self._per_task(loss, "loss").items()}

    def _resolve_metrics(self, metrics):
        self._metrics_argument = metrics
        self._task_metrics = {
            name: [self._make_metric(name, m) for m in (value or [])]
            for name, value in self._per_task(metrics, "metrics").items()
        }
        return None  # each task's metrics count its labelled samples only: update_metrics

    def _per_task(self, value, argument):
        if not isinstance(value, dict):
            return {name: value for name in self.task_names}
        unknown = sorted(set(value) - set(self.task_names))
        if unknown:
            raise ValueError(
                f"{argument} names tasks {unknown} that have no head; heads: {self.task_names}."
            )
        return {name: value.get(name) for name in self.task_names}

    def _make_metric(self, task, metric):
        if isinstance(metric, str) and metric in ("accuracy", "acc"):
            return _accuracy_for(self.task_loss[task])(name=f"{task}_accuracy")
        metric = keras.metrics.get(metric)
        if isinstance(metric, keras.metrics.Metric):
            config = metric.get_config()
            config["name"] = f"{task}_{metric.name}"
            return type(metric).from_config(config)
        return keras.metrics.MeanMetricWrapper(metric, name=f"{task}_{metric.__name__}")

    def _compile_arguments(self):
        return {"loss": self._loss_argument, "metrics": self._metrics_argument}

    @property
    def metrics(self):
        return getattr(self, "_trackers", []) + [
            m for name in self.task_names for m in self._task_metrics[name]
        ]

    def _labels_and_masks(self, data):
        x, y, masks = keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(y, dict):
            raise ValueError(
                f"MultiTaskModel needs labels as a dict {{task: y}}; got {type(y).__name__}. "
                "task_batches() builds such batches."
            )
        unknown = sorted(set(y) - set(self.task_names))
        if unknown:
            raise ValueError(
                f"labels name tasks {unknown} that have no head; heads: {self.task_names}."
            )
        masks = dict(masks or {})
        size = tf.shape(tf.nest.flatten(x)[0])[0]
        for name in self.task_names:
            if name not in y:
                masks[name] = tf.zeros([size])
            elif name not in masks:
                masks[name] = tf.ones([size])
        return (
            x,
            y,
            {name: tf.cast(tf.reshape(masks[name], [-1]), "float32") for name in self.task_names},
        )

    def compute_terms(self, data, training):
        """Each task's masked mean loss over the global batch, and the weighted total."""
        x, y, masks = self._labels_and_masks(data)
        outputs = self(x, training=training)
        # The step divides every term by the replica count; a task's term is this replica's share
        # of the mean over all replicas' labelled samples, times that count.
        replicas = tf.cast(replica_count(), tf.float32)
        terms, weights, total = {}, {}, tf.constant(0.0)
        for name in self.task_names:
            key = f"{name}_loss"
            if name not in y:
                terms[key], weights[key] = tf.constant(0.0), tf.constant(0.0)
                continue
            labelled = global_sum(tf.reduce_sum(masks[name]))
            per_sample = self._per_sample_loss(name, y[name], outputs[name])
            terms[key] = (
                tf.math.divide_no_nan(tf.reduce_sum(per_sample * masks[name]), labelled) * replicas
            )
            weights[key] = labelled / replicas
            total = total + self.loss_weights[name] * terms[key]
        return StepTerms({"loss": total, **terms}, y, outputs, masks, weights)

    def update_metrics(self, y, y_pred, sample_weight=None):
        for name in self.task_names:
            if name in y:
                for metric in self._task_metrics[name]:
                    metric.update_state(y[name], y_pred[name], sample_weight=sample_weight[name])

    def _per_sample_loss(self, name, y_true, y_pred):
        loss = self.task_loss[name]
        values = (
            loss.call(y_true, y_pred)
            if isinstance(loss, keras.losses.Loss)
            else loss(y_true, y_pred)
        )
        values = tf.cast(values, "float32")
        if values.shape.rank == 0:  # a loss function that averaged already
            values = tf.fill(tf.shape(y_pred)[:1], values)
        return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=-1)

    def head_model(self, task):
        """A plain Keras model from inputs to one task's outputs (sharing this model's weights).

        Save it, export it to TFLite or serve it like any Keras model; use
        `keras.models.clone_model` + `set_weights` for an independent copy.
        """
        if task not in self.heads:
            raise ValueError(f"task must be one of {self.task_names}; got {task!r}.")
        inputs = getattr(self.backbone, "inputs", None)
        if not inputs:
            raise ValueError(
                "head_model needs a backbone with known inputs (a functional model or a "
                "Sequential with keras.Input); build it on an Input first."
            )
        shape = tuple(inputs[0].shape[1:])
        x = keras.Input(shape, name="inputs")
        return keras.Model(x, self.heads[task](self.backbone(x)), name=f"{task}_model")

    _nested = ("backbone", "heads")

    def get_config(self):
        return {**super().get_config(), "loss_weights": self.loss_weights}
