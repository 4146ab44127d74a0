"""The Distiller: a teacher/student `keras.Model` trained by the toolkit's one step.

Loss = alpha * task loss(y, student) + (1 - alpha) * the sum of the
distillation strategies + hint_weight * the mean of the hint terms.

What it adds to `keras.distillation.Distiller`, whose strategies it takes:
one augmented (and mixed) view of each batch for both networks (`augment`,
`mixup`), teacher outputs cached once per array or per augmented view
(`cache_teacher=True`), unlabelled inputs beside the labelled
(`fit(unlabelled=...)`), teachers that output probabilities or come from a
file, distillation on unlabelled data (`alpha=0`, no `y`), one student
forward pass per step even with hints and feature strategies, the student's
regularization losses (`l2_sp`), and losses averaged over the global batch
under `tf.distribute`.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer._checks import require_layer
from keras_transfer._checks import require_number
from keras_transfer._custom_step import CustomStepModel
from keras_transfer._custom_step import StepTerms
from keras_transfer._training import ends_in_softmax
from keras_transfer._training import strategy_loss_unscaled
from keras_transfer.distill.losses import HintDistillation
from keras_transfer.distill.losses import WeightedDistillationLoss
from keras_transfer.distill.losses import distillation_strategies
from keras_transfer.distill.teachers import CachedTeacherFit
from keras_transfer.distill.teachers import TeacherCache
from keras_transfer.distill.teachers import _input_shape
from keras_transfer.distill.teachers import load_teacher
from keras_transfer.distill.views import blended_task_loss
from keras_transfer.distill.views import labelled_weight
from keras_transfer.distill.views import split_targets
from keras_transfer.distill.views import training_view
from keras_transfer.distill.views import view_settings

TEACHER_OUTPUTS = ("logits", "probabilities")


_SMALLEST_PROBABILITY = float(np.finfo(np.float32).tiny)


def check_teacher_and_student(teacher, student, temperature, alpha, teacher_outputs):
    require_layer(teacher, "teacher")
    require_layer(student, "student")
    if not student.built:  # its weights must exist before the step asks what to train
        raise ValueError(
            "student must be built, with its weights made: start it with keras.Input(shape) "
            "or call it once on a batch."
        )
    for role, model in (("teacher", teacher), ("student", student)):
        try:
            outputs = model.outputs
        except (AttributeError, ValueError):
            outputs = None
        if outputs is not None and len(outputs) != 1:
            raise ValueError(f"{role} must have one output (class logits); it has {len(outputs)}.")
    require_number(temperature, "temperature", above=True)
    try:
        require_number(alpha, "alpha", maximum=1.0)
    except ValueError:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}.") from None
    if teacher_outputs not in TEACHER_OUTPUTS:
        raise ValueError(
            f"teacher_outputs must be one of {TEACHER_OUTPUTS}, got {teacher_outputs!r}."
        )
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


def _without_compile_state(model):
    # Inside a Distiller, the teacher never trains and the student is trained by the
    # Distiller's optimizer: their own compile state would only be rebuilt unbuilt on
    # load and fail to take the optimizer variables saved with them.
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    return config


def _serialized(strategy):
    return strategy if isinstance(strategy, str) else keras.saving.serialize_keras_object(strategy)


def _deserialized(strategy):
    if isinstance(strategy, str):
        return strategy
    return keras.saving.deserialize_keras_object(strategy)


def _single_output(outputs):
    if isinstance(outputs, dict):
        (outputs,) = outputs.values()
    return outputs


def _final_dimension(model):
    try:
        return model.outputs[0].shape[-1]
    except (AttributeError, ValueError, IndexError, TypeError):
        return None


def _layer_output(model, name, role):
    try:
        return model.get_layer(name).output
    except ValueError as error:
        raise ValueError(
            f"hints name {role} layer {name!r}, which the {role} does not have."
        ) from error


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _layer_names(strategy):
    """The (teacher, student) layers a strategy reads; None for the models' outputs."""
    return getattr(strategy, "teacher_layer_name", None), getattr(
        strategy, "student_layer_name", None
    )


def _strategy_loss(strategy, teacher_outputs, student_outputs, sample_weight):
    """One strategy's loss on the outputs (by layer name) it reads."""
    teacher_layer, student_layer = _layer_names(strategy)
    pair = teacher_outputs[teacher_layer], student_outputs[student_layer]
    if isinstance(strategy, WeightedDistillationLoss):
        return strategy.compute_loss(*pair, sample_weight=sample_weight)
    return strategy_loss_unscaled(strategy.compute_loss(*pair), strategy)


def _layers_read(strategies):
    """The teacher's and the student's layer names the strategies read, after None (the output)."""
    layers = [_layer_names(s) for s in strategies]
    return (
        [None] + sorted({t for t, _ in layers if t is not None}),
        [None] + sorted({s for _, s in layers if s is not None}),
    )


def _extractor(model, names, role):
    """A model giving [output, layer outputs...] for the layer `names` after None, or None if there
    are none.
    """
    if names == [None]:
        return None
    outputs = [model.outputs[0]] + [_layer_output(model, n, role) for n in names[1:]]
    return keras.Model(model.inputs, outputs, name=f"{model.name}_features")


def _hint_adapter(teacher, student, index, teacher_layer, student_layer):
    target = _layer_output(teacher, teacher_layer, "teacher").shape
    source = _layer_output(student, student_layer, "student").shape
    if len(target) != len(source) or tuple(target[1:-1]) != tuple(source[1:-1]):
        raise ValueError(
            f"hint ({teacher_layer!r}, {student_layer!r}): the layers' outputs must "
            f"agree in all but the last axis, got teacher {target} and student {source}."
        )
    adapter = keras.layers.Dense(target[-1], name=f"hint_adapter_{index}")
    adapter.build(source)
    return adapter


@keras.saving.register_keras_serializable(package="keras_transfer")
class Distiller(CachedTeacherFit, CustomStepModel):
    """Trains a student to match a frozen teacher (and the labels, by `alpha`).

    Args:
        teacher: a built Keras model (or layer) giving logits (or probabilities: see
            `teacher_outputs`), a `.keras` file (safe mode), a SavedModel folder or a
            TF-Hub URL (`saved_model_teacher`); frozen, run in inference mode.
        student: a built Keras model giving logits; `distiller.student` is it.
        temperature: T > 0 for the "kl" loss. The default 1 was measured best for
            small students (Fashion-MNIST, digits: T=4 lost 2-5 points to the
            student alone where T=1 matched or beat it; see the README).
        alpha: weight of the task loss in [0, 1]; 0 learns from the teacher
            alone and needs no labels.
        distillation_loss: "kl", "mse", a `keras.distillation.DistillationLoss`,
            or a list of these (summed).
        hints: optional list of `(teacher_layer, student_layer)` name pairs
            whose outputs are matched by MSE through a learned Dense adapter.
        hint_weight: weight of the mean hint term.
        teacher_outputs: "logits" or "probabilities" (taken as log-probabilities).
        cache_teacher: compute teacher outputs once per input array in `fit`
            instead of every step (with `augment`: once per cached view).
        augment: optional Keras layer (e.g. a `keras.Sequential` of `RandomFlip`,
            `RandomTranslation`) applied to each training batch once, before
            both networks, so teacher and student see the same view.
        mixup: a > 0 blends each training input with another of its batch by a
            Beta(a, a) share, for both networks (the labels' loss is blended by
            the same share); 0 turns it off. Needs the teacher run every step.
        teacher_views: with `cache_teacher` and `augment`, how many augmented
            copies of the data the teacher labels once; each step draws from them.

    Returns:
        A `keras.Model` to compile, `fit` (see `fit(unlabelled=...)`), `evaluate`
        and `predict` (student logits).

    Example:
    >>> distiller = Distiller(teacher, student, temperature=4.0, alpha=0.1)  # doctest: +SKIP
    >>> distiller.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])  # doctest: +SKIP
    >>> distiller.fit(x_train, y_train, epochs=5)  # doctest: +SKIP
    >>> distiller.student.save("student.keras")  # doctest: +SKIP
    """

    _nested = ("teacher", "student", "augment")

    def __init__(
        self,
        teacher,
        student,
        temperature=1.0,
        alpha=0.1,
        distillation_loss="kl",
        hints=None,
        hint_weight=1.0,
        teacher_outputs="logits",
        cache_teacher=False,
        augment=None,
        mixup=0.0,
        teacher_views=4,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(teacher, (str, os.PathLike)):
            teacher = load_teacher(teacher, student)
        check_teacher_and_student(teacher, student, temperature, alpha, teacher_outputs)
        self.teacher = teacher
        self.student = student
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        # As given ("kl", "mse", strategy objects) for the config; resolved into strategies to sum.
        self._strategies = _as_list(distillation_loss)
        self._distillation = distillation_strategies(self._strategies, self.temperature)
        self.hints = [tuple(pair) for pair in (hints or [])]
        self.hint_weight = require_number(hint_weight, "hint_weight")
        self.teacher_outputs = teacher_outputs
        self.cache_teacher = bool(cache_teacher)
        self.augment, self.mixup, self.teacher_views = view_settings(
            augment, mixup, teacher_views, self.cache_teacher, _input_shape(student)
        )
        self._mixup_seed = keras.random.SeedGenerator(0, name="mixup_seed")
        self.teacher.trainable = False
        for strategy in self._distillation:
            strategy.validate_model_compatibility(self.teacher, self.student)
        self._adapters = [
            _hint_adapter(teacher, student, i, *pair) for i, pair in enumerate(self.hints)
        ]
        self._hints = [
            HintDistillation(t, s, adapter) for (t, s), adapter in zip(self.hints, self._adapters)
        ]
        self._teacher_names, self._student_names = _layers_read(self._distillation + self._hints)
        self._teacher_extractor = _extractor(self.teacher, self._teacher_names, "teacher")
        self._student_extractor = _extractor(self.student, self._student_names, "student")
        self.loss_terms = (
            ("task_loss",) * (self.alpha > 0)
            + ("distillation_loss",) * (self.alpha < 1)
            + ("hint_loss",) * bool(self.hints)
        )
        self._cache = TeacherCache(self._teacher_forward, self.teacher)
        self.built = True  # teacher, student and adapters are built; nothing waits for data

    # -- the networks each step runs -----------------------------------------------------

    def _run(self, model, extractor, x, training):
        if extractor is None:
            return [_single_output(model(x, training=training))]
        return list(extractor(x, training=training))

    def _teacher_forward(self, x):
        outputs = self._run(self.teacher, self._teacher_extractor, x, training=False)
        if self.teacher_outputs == "probabilities":
            # the smallest normal float32 keeps every ratio the probabilities still hold;
            # a larger floor (1e-8) flattened a confident teacher's dark knowledge
            outputs[0] = tf.math.log(tf.maximum(outputs[0], _SMALLEST_PROBABILITY))
        return [tf.stop_gradient(o) for o in outputs]

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def output_classes(self):
        """The student's number of outputs, or None where it is not known."""
        return _final_dimension(self.student)

    # -- the loss --------------------------------------------------------------------------

    def compile(self, optimizer="adam", loss=None, metrics=None, student_loss=None, **kwargs):
        """As `keras.Model.compile`: `loss` is the task loss (default: sparse categorical
        cross-entropy on logits; `student_loss` is its first-release name); metrics are the
        student's.
        """
        if student_loss is not None:
            if loss is not None:
                raise ValueError(
                    "Distiller.compile takes the task loss as loss=... or by its old name "
                    "student_loss=..., not both."
                )
            loss = student_loss
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compute_terms(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels, teacher, labelled, sample_weight = split_targets(y, sample_weight)
        partner = None
        if training and teacher is None:  # cached outputs come with the views they were made on
            x, partner = training_view(x, self.augment, self.mixup, self._mixup_seed)
        if teacher is None:
            teacher = self._teacher_forward(x)
        student = self._run(self.student, self._student_extractor, x, training=training)
        task_weight = labelled_weight(labelled, sample_weight)
        terms = self._loss_terms(labels, teacher, student, sample_weight, task_weight, partner)
        return StepTerms(terms, labels, student[0], task_weight)

    def _loss_terms(self, labels, teacher, student, sample_weight, task_weight, partner):
        outputs = dict(zip(self._teacher_names, teacher)), dict(zip(self._student_names, student))

        def strategy_loss(strategy):
            return _strategy_loss(strategy, *outputs, sample_weight)

        terms, total = {}, 0.0
        if self.alpha > 0:
            if labels is None:
                raise ValueError(
                    f"alpha={self.alpha} weighs a task loss, which needs labels y; pass y, "
                    "or alpha=0 to learn from the teacher alone."
                )
            terms["task_loss"] = blended_task_loss(
                self.task_loss_mean, labels, student[0], task_weight, partner
            )
            total += self.alpha * terms["task_loss"]
        if self.alpha < 1:
            terms["distillation_loss"] = tf.add_n([strategy_loss(s) for s in self._distillation])
            total += (1.0 - self.alpha) * terms["distillation_loss"]
        if self._hints:
            terms["hint_loss"] = tf.reduce_mean(tf.stack([strategy_loss(h) for h in self._hints]))
            total += self.hint_weight * terms["hint_loss"]
        terms["loss"] = total
        return terms

    # -- serialization -------------------------------------------------------------------------

    @staticmethod
    def _serialize_nested(model):
        return _without_compile_state(model)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "alpha": self.alpha,
            "distillation_loss": [_serialized(s) for s in self._strategies],
            "hints": [list(pair) for pair in self.hints],
            "hint_weight": self.hint_weight,
            "teacher_outputs": self.teacher_outputs,
            "cache_teacher": self.cache_teacher,
            "mixup": self.mixup,
            "teacher_views": self.teacher_views,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["distillation_loss"] = [_deserialized(s) for s in config["distillation_loss"]]
        return super().from_config(config)
