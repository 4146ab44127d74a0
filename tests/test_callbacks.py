"""NonFiniteLoss names the loss term that went NaN, for each kind of model; training stops there."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transfer as kt
from keras_transfer import adapt
from keras_transfer.callbacks import NonFiniteLoss
from keras_transfer.multitask import task_batches


def nan_after(steps):
    """A loss term that is finite for `steps` calls of the step function, then NaN."""
    counter = tf.Variable(0.0, trainable=False)

    def term(*tensors):
        counter.assign_add(1.0)
        finite = tf.reduce_mean(tf.square(tensors[-1])) * 0.0 + 1.0
        return tf.where(counter > steps, tf.constant(float("nan")), finite)

    return term


class NaNDistillation(keras.distillation.LogitsDistillation):
    def __init__(self, steps):
        super().__init__(temperature=2.0)
        self.term = nan_after(steps)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return self.term(teacher_outputs, student_outputs)


@pytest.fixture(scope="module")
def digits_data():
    (x, y), _ = kt.load_digits()
    return x[:256], y[:256].astype("int32")


def small(seed=0, outputs=10):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(outputs)]
    )


def features_and_classifier():
    keras.utils.set_random_seed(0)
    features = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(16)]
    )
    return features, keras.Sequential([keras.Input((16,)), keras.layers.Dense(10)])


def fit_discrepancy(data):
    x, y = data
    model = adapt.DiscrepancyAdapter(*features_and_classifier(), discrepancy=nan_after(5))
    model.compile("adam")
    return model, lambda callback: model.fit(
        kt.domain_pairs((x, y), x[::-1], 32, seed=0), epochs=3, verbose=0, callbacks=[callback]
    )


def fit_task(data):
    x, y = data
    model = adapt.DANN(*features_and_classifier())
    term = nan_after(5)
    model.compile("adam", loss=lambda y_true, logits: term(logits))
    return model, lambda callback: model.fit(
        kt.domain_pairs((x, y), x[::-1], 32, seed=0), epochs=3, verbose=0, callbacks=[callback]
    )


def fit_distillation(data):
    x, y = data
    model = kt.Distiller(small(1), small(2), distillation_loss=NaNDistillation(5), alpha=0.5)
    model.compile("adam")
    return model, lambda callback: model.fit(
        x, y, batch_size=32, epochs=3, verbose=0, callbacks=[callback]
    )


def fit_head(data):
    x, y = data
    backbone = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(16)]
    )
    heads = {
        name: keras.Sequential([keras.Input((16,)), keras.layers.Dense(10)]) for name in ("a", "b")
    }
    model = kt.MultiTaskModel(backbone, heads)
    term = nan_after(5)
    model.compile("adam", loss={"b": lambda y_true, logits: term(logits)})
    return model, lambda callback: model.fit(
        task_batches({"a": (x, y), "b": (x, y)}, 32, seed=0),
        epochs=3,
        verbose=0,
        callbacks=[callback],
    )


@pytest.mark.parametrize(
    "make, term",
    [
        (fit_discrepancy, "discrepancy_loss"),
        (fit_task, "task_loss"),
        (fit_distillation, "distillation_loss"),
        (fit_head, "b_loss"),
    ],
    ids=["discrepancy", "task", "distillation", "multitask head"],
)
def test_training_stops_at_the_first_nan_and_names_the_term(digits_data, make, term):
    model, fit = make(digits_data)
    callback = NonFiniteLoss()
    with pytest.raises(FloatingPointError, match=term) as raised:
        fit(callback)
    assert callback.terms == [term]
    assert "epoch 1, batch" in str(raised.value)
    steps = int(str(raised.value).split("batch ")[1].split(":")[0])
    assert steps <= 7, "training went on after the term broke"


def test_without_raise_error_it_stops_and_keeps_the_message(digits_data):
    model, fit = fit_discrepancy(digits_data)
    callback = NonFiniteLoss(raise_error=False)
    history = fit(callback)
    assert len(history.history["loss"]) == 1 and "discrepancy_loss = nan" in callback.message


def test_a_non_finite_step_applies_no_gradient(digits_data, tmp_path):
    x, y = digits_data
    x = x.copy()
    x[64:96] = float("nan")  # the third batch: loss and gradients NaN
    teacher, student = small(0), small(1)
    distiller = kt.Distiller(teacher, student, alpha=0.5)
    distiller.compile(keras.optimizers.SGD(0.1))
    callback = NonFiniteLoss(raise_error=False)
    distiller.fit(x, y, batch_size=32, shuffle=False, verbose=0, callbacks=[callback])
    assert "nan" in callback.message
    assert all(np.isfinite(w).all() for w in student.get_weights()), "the NaN step was applied"
    kt.export_tflite(student, str(tmp_path / "student.tflite"))  # finite weights export
