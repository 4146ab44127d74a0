"""Knowledge distillation: a teacher/student `keras.Model` with its own `train_step`.

Loss = alpha * task loss(y, student) + (1 - alpha) * distillation loss
       + hint_weight * mean of the hint terms.

The distillation loss is "kl" (Hinton et al. 2015: KL(softmax(t/T) || softmax(s/T))
scaled by T^2), "mse" (mean squared error between logits), or any
`keras.distillation.DistillationLoss` strategy (`LogitsDistillation`,
`FeatureDistillation`, or a subclass), so terms written for Keras' own
Distiller work here unchanged. Hints (FitNets, Romero et al. 2015) match a
student layer, through a learned adapter, to a teacher layer.

What this adds to `keras.distillation.Distiller`: teacher outputs cached once
for un-augmented array inputs (`cache_teacher=True`), teachers that output
probabilities, distillation on unlabelled data (`alpha=0`, no `y`), one
student forward pass per step even with hints, and losses averaged over the
global batch under `tf.distribute`.
"""

import os
import zlib

import keras
import numpy as np
import tensorflow as tf

from keras_transfer._checks import require_layer
from keras_transfer._custom_step import CustomStepModel
from keras_transfer._custom_step import StepTerms
from keras_transfer._training import ends_in_softmax
from keras_transfer._training import strategy_loss_unscaled

TEACHER_OUTPUTS = ("logits", "probabilities")
_CACHE_KEY = "teacher"
_LABELS_KEY = "labels"


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


def _checksum(arrays):
    value = 0
    for array in arrays:
        value = zlib.crc32(np.ascontiguousarray(array).view(np.uint8), value)
    return value


def _without_compile_state(model):
    # Inside a Distiller, the teacher never trains and the student is trained by the
    # Distiller's optimizer: their own compile state would only be rebuilt unbuilt on
    # load and fail to take the optimizer variables saved with them.
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    return config


def _load_teacher(path, student):
    path = os.fspath(path)
    if path.endswith(".keras"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"teacher file not found: {path!r}.")
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    return saved_model_teacher(path, input_shape=_input_shape(student))


def saved_model_teacher(handle, input_shape=None):
    """A frozen Keras model serving a TF2 SavedModel folder or TF-Hub module, for use as a teacher.

    The module is called through `HubLayer`: its `__call__` (TF-Hub reusable
    SavedModels), else the `serve` endpoint that `model.export()` writes, else
    the `serving_default` signature with a single output.

    Args:
        handle: the SavedModel folder or a TF-Hub URL.
        input_shape: needed only when the module's signature leaves it open.

    Returns:
        A `keras.Model` with a known input and output shape, so the Distiller
        checks it against the student before training.

    Example:
    >>> teacher = saved_model_teacher("export/teacher_saved_model")  # doctest: +SKIP
    """
    from keras_transfer.backbones import load_backbone

    path = os.fspath(handle)
    if not path.startswith(("http://", "https://", "gs://")) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(f"teacher must be a .keras file, a SavedModel folder with saved_model.pb or a TF-Hub URL; got {path!r}.")
    return load_backbone(path, input_shape=input_shape, trainable=False)


def _single_output(outputs):
    if isinstance(outputs, dict):
        (outputs,) = outputs.values()
    return outputs


def _final_dimension(model):
    try:
        return model.outputs[0].shape[-1]
    except (AttributeError, ValueError, IndexError, TypeError):
        return None


def _input_shape(model):
    try:
        return tuple(model.inputs[0].shape[1:])
    except (AttributeError, ValueError, IndexError, TypeError):
        return None


def _layer_output(model, name, role):
    try:
        return model.get_layer(name).output
    except ValueError as error:
        raise ValueError(f"hints name {role} layer {name!r}, which the {role} does not have.") from error


@keras.saving.register_keras_serializable(package="keras_transfer")
class Distiller(CustomStepModel):
    """Trains a student to match a frozen teacher (and the labels, by `alpha`).

    Args:
        teacher: a built Keras model (or layer) giving logits, or probabilities
            with `teacher_outputs="probabilities"`; or a `.keras` file (loaded in
            safe mode); or a TF2 SavedModel folder (e.g. from
            `export_saved_model`) or TF-Hub URL, served through `HubLayer`
            (see `saved_model_teacher`). It is frozen and run in inference mode
            (BatchNorm statistics stay as they are).
        student: a built Keras model giving logits; `distiller.student` is it.
        temperature: T > 0 for the "kl" loss.
        alpha: weight of the task loss in [0, 1]; 0 learns from the teacher
            alone and needs no labels.
        distillation_loss: "kl", "mse", a `keras.distillation.DistillationLoss`,
            or a list of these (summed).
        hints: optional list of `(teacher_layer, student_layer)` name pairs
            whose outputs are matched by MSE through a learned Dense adapter.
        hint_weight: weight of the mean hint term.
        teacher_outputs: "logits" or "probabilities" (converted to log-probabilities,
            which give the same softened distribution).
        cache_teacher: compute teacher outputs once per input array in `fit`
            instead of every step; only for inputs that are not augmented.

    Returns:
        A `keras.Model`: compile it with `compile(optimizer, loss=...,
        metrics=...)`, then `fit`, `evaluate`, `predict` (student logits).

    Example:
    >>> distiller = Distiller(teacher, student, temperature=4.0, alpha=0.1)  # doctest: +SKIP
    >>> distiller.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])  # doctest: +SKIP
    >>> distiller.fit(x_train, y_train, epochs=5)  # doctest: +SKIP
    >>> distiller.student.save("student.keras")  # doctest: +SKIP
    """

    def __init__(
        self,
        teacher,
        student,
        temperature=4.0,
        alpha=0.1,
        distillation_loss="kl",
        hints=None,
        hint_weight=1.0,
        teacher_outputs="logits",
        cache_teacher=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(teacher, (str, os.PathLike)):
            teacher = _load_teacher(teacher, student)
        self._check_arguments(teacher, student, temperature, alpha, teacher_outputs)
        self.teacher = teacher
        self.student = student
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self._strategies = self._parse_distillation_loss(distillation_loss)
        self.hints = [tuple(pair) for pair in (hints or [])]
        self.hint_weight = float(hint_weight)
        self.teacher_outputs = teacher_outputs
        self.cache_teacher = bool(cache_teacher)
        self.teacher.trainable = False
        self._build_extractors()
        self.loss_terms = tuple(name for name, used in (("task_loss", self.alpha > 0),
                                                        ("distillation_loss", self.alpha < 1),
                                                        ("hint_loss", bool(self.hints))) if used)
        self._cache = None
        self.built = True  # teacher, student and adapters are built; nothing waits for data

    # -- validation, before any work --------------------------------------------

    @staticmethod
    def _check_arguments(teacher, student, temperature, alpha, teacher_outputs):
        require_layer(teacher, "teacher")
        require_layer(student, "student")
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}.")
        if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}.")
        if teacher_outputs not in TEACHER_OUTPUTS:
            raise ValueError(f"teacher_outputs must be one of {TEACHER_OUTPUTS}, got {teacher_outputs!r}.")
        if teacher_outputs == "logits" and ends_in_softmax(teacher):
            raise ValueError(
                f"The teacher's last layer {teacher.layers[-1].name!r} applies softmax, so it "
                "outputs probabilities, not logits: pass teacher_outputs='probabilities'."
            )
        if ends_in_softmax(student):
            raise ValueError(
                f"The student's last layer {student.layers[-1].name!r} applies softmax; the "
                "student must output logits (drop the softmax, or add it after training)."
            )
        teacher_size, student_size = _final_dimension(teacher), _final_dimension(student)
        if teacher_size is not None and student_size is not None and teacher_size != student_size:
            raise ValueError(
                f"teacher and student must have the same number of outputs: teacher "
                f"{teacher_size}, student {student_size}."
            )
        teacher_input, student_input = _input_shape(teacher), _input_shape(student)
        if teacher_input and student_input and teacher_input != student_input:
            raise ValueError(
                f"teacher and student must take the same inputs: teacher {teacher_input}, "
                f"student {student_input}."
            )

    @staticmethod
    def _parse_distillation_loss(distillation_loss):
        items = distillation_loss if isinstance(distillation_loss, (list, tuple)) else [distillation_loss]
        if not items:
            raise ValueError("distillation_loss must name at least one loss.")
        strategies = []
        for item in items:
            if item in ("kl", "mse") or isinstance(item, keras.distillation.DistillationLoss):
                strategies.append(item)
            else:
                raise ValueError(
                    "distillation_loss must be 'kl', 'mse', a keras.distillation."
                    f"DistillationLoss, or a list of these; got {item!r}."
                )
        return strategies

    # -- the networks each step runs ---------------------------------------------

    def _build_extractors(self):
        """Models giving [logits, feature, ...] so one forward pass serves every term."""
        teacher_layers, student_layers = [], []
        for strategy in self._strategies:
            if isinstance(strategy, keras.distillation.DistillationLoss):
                strategy.validate_model_compatibility(self.teacher, self.student)
            teacher_layers.append(getattr(strategy, "teacher_layer_name", None))
            student_layers.append(getattr(strategy, "student_layer_name", None))
        teacher_layers += [t for t, _ in self.hints]
        student_layers += [s for _, s in self.hints]
        self._teacher_names = [None] + sorted({n for n in teacher_layers if n is not None})
        self._student_names = [None] + sorted({n for n in student_layers if n is not None})
        self._teacher_extractor = self._extractor(self.teacher, self._teacher_names, "teacher")
        self._student_extractor = self._extractor(self.student, self._student_names, "student")
        self._adapters = []
        for index, (teacher_layer, student_layer) in enumerate(self.hints):
            target = _layer_output(self.teacher, teacher_layer, "teacher").shape
            source = _layer_output(self.student, student_layer, "student").shape
            if len(target) != len(source) or tuple(target[1:-1]) != tuple(source[1:-1]):
                raise ValueError(
                    f"hint ({teacher_layer!r}, {student_layer!r}): the layers' outputs must "
                    f"agree in all but the last axis, got teacher {target} and student {source}."
                )
            adapter = keras.layers.Dense(target[-1], name=f"hint_adapter_{index}")
            adapter.build(source)
            self._adapters.append(adapter)

    @staticmethod
    def _extractor(model, names, role):
        if names == [None]:
            return None
        outputs = [model.outputs[0]] + [_layer_output(model, n, role) for n in names[1:]]
        return keras.Model(model.inputs, outputs, name=f"{model.name}_features")

    def _run(self, model, extractor, x, training):
        if extractor is None:
            return [_single_output(model(x, training=training))]
        return list(extractor(x, training=training))

    def _teacher_forward(self, x):
        outputs = self._run(self.teacher, self._teacher_extractor, x, training=False)
        if self.teacher_outputs == "probabilities":
            outputs[0] = tf.math.log(tf.clip_by_value(outputs[0], 1e-8, 1.0))
        return [tf.stop_gradient(o) for o in outputs]

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    # -- loss terms ---------------------------------------------------------------

    def _loss_terms(self, labels, teacher, student, sample_weight):
        teacher_by_name = dict(zip(self._teacher_names, teacher))
        student_by_name = dict(zip(self._student_names, student))
        terms = {}
        total = 0.0
        if self.alpha > 0:
            if labels is None:
                raise ValueError(
                    f"alpha={self.alpha} weighs a task loss, which needs labels y; pass y, "
                    "or alpha=0 to learn from the teacher alone."
                )
            terms["task_loss"] = self.task_loss_mean(labels, student[0], sample_weight)
            total += self.alpha * terms["task_loss"]
        if self.alpha < 1:
            distillation = 0.0
            for strategy in self._strategies:
                distillation += self._strategy_loss(
                    strategy, teacher_by_name, student_by_name, sample_weight
                )
            terms["distillation_loss"] = distillation
            total += (1.0 - self.alpha) * distillation
        if self.hints:
            hint_losses = [
                tf.reduce_mean(
                    tf.square(adapter(student_by_name[s]) - tf.cast(teacher_by_name[t], tf.float32))
                )
                for adapter, (t, s) in zip(self._adapters, self.hints)
            ]
            terms["hint_loss"] = tf.add_n(hint_losses) / len(hint_losses)
            total += self.hint_weight * terms["hint_loss"]
        terms["loss"] = total
        return terms

    def _strategy_loss(self, strategy, teacher_by_name, student_by_name, sample_weight):
        if strategy == "kl":
            return kl_distillation_loss(
                teacher_by_name[None], student_by_name[None], self.temperature, sample_weight
            )
        if strategy == "mse":
            return mse_distillation_loss(teacher_by_name[None], student_by_name[None], sample_weight)
        teacher_out = teacher_by_name[getattr(strategy, "teacher_layer_name", None)]
        student_out = student_by_name[getattr(strategy, "student_layer_name", None)]
        return strategy_loss_unscaled(strategy.compute_loss(teacher_out, student_out), strategy)

    # -- training and evaluation --------------------------------------------------

    def compile(self, optimizer="adam", loss=None, metrics=None, student_loss=None, **kwargs):
        """Configures training; metrics are computed on the student's outputs.

        Args:
            optimizer: a Keras optimizer or its name.
            loss: the task loss on the labels; default sparse categorical
                cross-entropy on logits.
            metrics: student metrics, e.g. `["accuracy"]`.
            student_loss: another name for `loss` (the first release's).
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        if student_loss is not None:
            if loss is not None:
                raise ValueError("Distiller.compile takes the task loss as loss=... or by its old name "
                                 "student_loss=..., not both.")
            loss = student_loss
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def _split_targets(self, y):
        if isinstance(y, dict) and _CACHE_KEY in y:
            return y.get(_LABELS_KEY), list(y[_CACHE_KEY])
        return y, None

    def compute_terms(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels, teacher = self._split_targets(y)
        if teacher is None:
            teacher = self._teacher_forward(x)
        student = self._run(self.student, self._student_extractor, x, training=training)
        terms = self._loss_terms(labels, teacher, student, sample_weight)
        return StepTerms(terms, labels, student[0], sample_weight)

    # -- cached teacher outputs ------------------------------------------------------

    def fit(self, x=None, y=None, validation_data=None, **kwargs):
        """`keras.Model.fit`; with `cache_teacher=True`, teacher outputs are computed once."""
        if self.cache_teacher:
            x, y = self._with_teacher_outputs(x, y, "x")
            if validation_data is not None:
                validation_data = self._with_teacher_outputs(*self._unpack(validation_data), "validation_data")
        return super().fit(x, y, validation_data=validation_data, **kwargs)

    @staticmethod
    def _unpack(validation_data):
        if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
            return validation_data
        return validation_data, None

    def _with_teacher_outputs(self, x, y, argument):
        if not isinstance(x, np.ndarray) and not tf.is_tensor(x):
            raise ValueError(
                f"cache_teacher=True needs {argument} as an array (the same inputs every epoch), "
                f"got {type(x).__name__}. For augmented or streamed data use cache_teacher=False."
            )
        outputs = self.teacher_targets(x)
        targets = {_CACHE_KEY: outputs}
        if y is not None:
            targets[_LABELS_KEY] = y
        return x, targets

    def teacher_targets(self, x, batch_size=256):
        """The teacher's outputs on `x` (logits first, then hint features), cached.

        The cache is keyed by the contents of `x` and of the teacher's weights,
        so new inputs or a changed teacher are computed afresh.

        Args:
            x: an input array.
            batch_size: examples per teacher call.

        Returns:
            A list of numpy arrays, reused while `x` is unchanged.
        """
        x = np.asarray(x)
        key = (x.shape, x.dtype.str, _checksum([x] + self.teacher.get_weights()))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        pieces = []
        forward = tf.function(self._teacher_forward)
        for start in range(0, len(x), batch_size):
            pieces.append([o.numpy() for o in forward(tf.convert_to_tensor(x[start : start + batch_size]))])
        outputs = [np.concatenate(parts) for parts in zip(*pieces)]
        self._cache = (key, outputs)
        return outputs

    # -- serialization ------------------------------------------------------------------

    _nested = ("teacher", "student")

    @staticmethod
    def _serialize_nested(model):
        return _without_compile_state(model)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "alpha": self.alpha,
            "distillation_loss": [
                s if isinstance(s, str) else keras.saving.serialize_keras_object(s) for s in self._strategies
            ],
            "hints": [list(pair) for pair in self.hints],
            "hint_weight": self.hint_weight,
            "teacher_outputs": self.teacher_outputs,
            "cache_teacher": self.cache_teacher,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["distillation_loss"] = [
            s if isinstance(s, str) else keras.saving.deserialize_keras_object(s)
            for s in config["distillation_loss"]
        ]
        return super().from_config(config)
