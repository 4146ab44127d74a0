"""The Distiller on real digits: loss formulas, gradients, caching, Keras strategies, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer import Distiller
from keras_transfer import kl_distillation_loss
from keras_transfer import mse_distillation_loss


def numpy_kl(teacher_logits, student_logits, temperature):
    def softmax(z):
        z = z / temperature
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p, q = softmax(teacher_logits), softmax(student_logits)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), -1)) * temperature**2)


def test_kl_loss_matches_the_formula_by_hand():
    teacher = np.array([[2.0, 0.0]], "float32")
    student = np.array([[0.0, 0.0]], "float32")
    # p = softmax([2, 0]) = [e^2, 1] / (e^2 + 1); q = [1/2, 1/2];
    # KL = sum p log(p / q) = 0.3799 at T = 1, and T^2 * KL at T = 2 on halved logits.
    p = np.array([np.e**2, 1.0]) / (np.e**2 + 1)
    by_hand = float(np.sum(p * np.log(p / 0.5)))
    assert float(kl_distillation_loss(teacher, student, 1.0)) == pytest.approx(by_hand, abs=1e-6)
    p2 = np.array([np.e, 1.0]) / (np.e + 1)
    by_hand_t2 = 4.0 * float(np.sum(p2 * np.log(p2 / 0.5)))
    assert float(kl_distillation_loss(teacher, student, 2.0)) == pytest.approx(by_hand_t2, abs=1e-6)


def test_kl_and_mse_match_numpy_on_random_logits(rng):
    teacher = rng.normal(size=(16, 10)).astype("float32") * 3
    student = rng.normal(size=(16, 10)).astype("float32") * 3
    for temperature in (1.0, 4.0, 10.0):
        got = float(kl_distillation_loss(teacher, student, temperature))
        assert got == pytest.approx(numpy_kl(teacher, student, temperature), rel=1e-5)
    assert float(kl_distillation_loss(teacher, teacher, 4.0)) == pytest.approx(0.0, abs=1e-6)
    mse = float(mse_distillation_loss(teacher, student))
    assert mse == pytest.approx(float(np.mean((teacher - student) ** 2)), rel=1e-6)
    weights = rng.uniform(size=16).astype("float32")
    weighted = float(kl_distillation_loss(teacher, student, 2.0, sample_weight=weights))
    per_example = [numpy_kl(teacher[i : i + 1], student[i : i + 1], 2.0) for i in range(16)]
    assert weighted == pytest.approx(np.sum(weights * per_example) / weights.sum(), rel=1e-5)


def test_keras_logits_distillation_with_kl_instance_agrees(rng):
    teacher = rng.normal(size=(32, 10)).astype("float32") * 2
    student = rng.normal(size=(32, 10)).astype("float32") * 2
    strategy = keras.distillation.LogitsDistillation(
        temperature=3.0, loss=keras.losses.KLDivergence()
    )
    keras_value = float(strategy.compute_loss(teacher, student))
    assert keras_value == pytest.approx(
        float(kl_distillation_loss(teacher, student, 3.0)), rel=1e-4
    )


# --- models ------------------------------------------------------------------------


def make_teacher(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", name="t_conv1")(inputs)
    x = keras.layers.BatchNormalization(name="t_bn")(x)
    x = keras.layers.ReLU(name="t_relu")(x)
    x = keras.layers.MaxPooling2D(2, name="t_pool")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="t_conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="t_gap")(x)
    x = keras.layers.Dense(64, activation="relu", name="t_features")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="t_logits")(x), name="teacher")


def make_student(seed=1):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="s_conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="s_pool")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="s_conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="s_gap")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="s_logits")(x), name="student")


@pytest.fixture(scope="module")
def teacher(digits):
    (x_train, y_train), _ = digits
    model = make_teacher()
    model.compile(
        keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x_train, y_train, epochs=30, batch_size=64, verbose=0)
    return model


def snapshot(model):
    return [v.numpy().copy() for v in model.variables]


def test_teacher_is_accurate_enough_to_teach(teacher, digits):
    _, (x_test, y_test) = digits
    assert np.mean(teacher.predict(x_test, verbose=0).argmax(-1) == y_test) > 0.9


def test_training_moves_every_student_variable_and_no_teacher_variable(teacher, digits):
    (x_train, y_train), _ = digits
    teacher_before = snapshot(teacher)  # includes BatchNorm moving statistics
    student = make_student()
    student_before = snapshot(student)
    distiller = Distiller(teacher, student, hints=[("t_conv2", "s_conv2")])
    distiller.compile(keras.optimizers.Adam(1e-3))
    distiller.fit(x_train[:256], y_train[:256], epochs=1, batch_size=64, verbose=0)
    for before, after in zip(teacher_before, snapshot(teacher)):
        np.testing.assert_array_equal(before, after)
    for variable, before in zip(student.variables, student_before):
        assert not np.array_equal(variable.numpy(), before), variable.path
    trained = {id(v) for v in distiller.trainable_variables}
    assert trained == {id(v) for v in student.trainable_variables} | {
        id(v) for adapter in distiller._adapters for v in adapter.trainable_variables
    }


def test_gradients_of_the_loss_reach_exactly_the_student(teacher, digits):
    (x_train, y_train), _ = digits
    distiller = Distiller(teacher, make_student(), alpha=0.3)
    distiller.compile("adam")
    x, y = tf.constant(x_train[:64]), tf.constant(y_train[:64])
    with tf.GradientTape() as tape:
        targets = distiller._teacher_forward(x)
        outputs = distiller._run(distiller.student, distiller._student_extractor, x, training=True)
        loss = distiller._loss_terms(y, targets, outputs, None, None, None)["loss"]
    everything = teacher.trainable_weights + distiller.student.trainable_weights
    teacher.trainable = True  # expose the teacher's weights to the tape's question
    gradients = tape.gradient(loss, teacher.weights + distiller.student.weights)
    teacher.trainable = False
    assert everything  # the student has weights to train
    for weight, gradient in zip(teacher.weights, gradients[: len(teacher.weights)]):
        assert gradient is None, weight.path
    for weight, gradient in zip(distiller.student.weights, gradients[len(teacher.weights) :]):
        assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0, weight.path


def test_alpha_one_trains_exactly_like_the_plain_student(teacher, digits):
    (x_train, y_train), _ = digits
    plain = make_student()
    plain.compile(
        keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    plain_history = plain.fit(x_train, y_train, epochs=2, batch_size=64, shuffle=False, verbose=0)
    distiller = Distiller(teacher, make_student(), alpha=1.0)
    distiller.compile(keras.optimizers.Adam(1e-3))
    history = distiller.fit(x_train, y_train, epochs=2, batch_size=64, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], plain_history.history["loss"], rtol=1e-5)
    for got, want in zip(distiller.student.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_distillation_loss_falls_and_the_student_learns(teacher, digits):
    (x_train, y_train), (x_test, y_test) = digits
    distiller = Distiller(teacher, make_student(), temperature=4.0, alpha=0.1)
    distiller.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    history = distiller.fit(x_train, y_train, epochs=12, batch_size=32, verbose=0)
    losses = history.history["distillation_loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert set(history.history) == {"loss", "task_loss", "distillation_loss", "accuracy"}
    results = distiller.evaluate(x_test, y_test, verbose=0, return_dict=True)
    manual = np.mean(distiller.student.predict(x_test, verbose=0).argmax(-1) == y_test)
    assert results["accuracy"] == pytest.approx(manual, abs=1e-6)
    assert manual > 0.6


def test_unlabelled_data_teaches_the_student_alone(teacher, digits):
    (x_train, _), (x_test, y_test) = digits
    distiller = Distiller(teacher, make_student(), alpha=0.0)
    distiller.compile(keras.optimizers.Adam(3e-3))
    history = distiller.fit(x_train, epochs=12, batch_size=32, verbose=0)
    assert set(history.history) == {"loss", "distillation_loss"}
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    accuracy = np.mean(distiller.predict(x_test, verbose=0).argmax(-1) == y_test)
    assert accuracy > 0.6, "labels were never seen: all of this came from the teacher"


def test_cached_teacher_gives_the_same_training_and_skips_the_teacher(teacher, digits):
    (x_train, y_train), _ = digits
    x, y = x_train[:320], y_train[:320]
    results = {}
    for cache in (False, True):
        distiller = Distiller(teacher, make_student(), cache_teacher=cache)
        distiller.compile(keras.optimizers.Adam(1e-3))
        history = distiller.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0)
        results[cache] = (history.history["loss"], distiller.student.get_weights())
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
    for cached, fresh in zip(results[True][1], results[False][1]):
        np.testing.assert_allclose(cached, fresh, atol=1e-5)


class CountingTeacher(keras.layers.Layer):
    """Wraps a teacher and counts its calls (run eagerly, every call is counted)."""

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.calls = 0

    def call(self, x, training=False):
        self.calls += 1
        return self.model(x, training=training)


def test_cache_hit_does_not_run_the_teacher_per_step(teacher, digits):
    (x_train, y_train), _ = digits
    x, y = x_train[:256], y_train[:256]
    counting = CountingTeacher(teacher)
    distiller = Distiller(counting, make_student(), cache_teacher=True)
    distiller.compile(keras.optimizers.Adam(1e-3), run_eagerly=True)
    distiller.fit(x, y, epochs=3, batch_size=32, verbose=0)  # 24 steps
    first = counting.calls
    assert first <= 2  # one tf.function trace per batch shape while filling the cache
    distiller.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert counting.calls == first, "the second fit on the same inputs reuses the cache"
    teacher_weights = teacher.get_weights()
    teacher.set_weights([w * 0.5 for w in teacher_weights])
    distiller.fit(x, y, epochs=1, batch_size=32, verbose=0)
    teacher.set_weights(teacher_weights)
    assert counting.calls > first, "a changed teacher invalidates the cache"


def test_teacher_giving_probabilities_distils_like_its_logits(teacher, digits, rng):
    (x_train, y_train), _ = digits
    probabilities = keras.Model(
        teacher.inputs, keras.layers.Softmax(name="probabilities")(teacher.outputs[0])
    )
    logits_distiller = Distiller(teacher, make_student(), alpha=0.0)
    probability_distiller = Distiller(
        probabilities, make_student(), alpha=0.0, teacher_outputs="probabilities"
    )
    for distiller in (logits_distiller, probability_distiller):
        distiller.compile("adam")
    a = logits_distiller.evaluate(x_train[:128], verbose=0, return_dict=True)
    b = probability_distiller.evaluate(x_train[:128], verbose=0, return_dict=True)
    assert a["distillation_loss"] == pytest.approx(b["distillation_loss"], rel=1e-4)


def test_keras_strategies_plug_in(teacher, digits):
    (x_train, y_train), _ = digits
    x = x_train[:128]
    ours = Distiller(teacher, make_student(), temperature=3.0, alpha=0.0)
    theirs = Distiller(
        teacher,
        make_student(),
        alpha=0.0,
        distillation_loss=keras.distillation.LogitsDistillation(
            3.0, loss=keras.losses.KLDivergence()
        ),
    )
    for distiller in (ours, theirs):
        distiller.compile("adam")
    a = ours.evaluate(x, verbose=0, return_dict=True)["distillation_loss"]
    b = theirs.evaluate(x, verbose=0, return_dict=True)["distillation_loss"]
    assert a == pytest.approx(b, rel=1e-4)

    features = keras.distillation.FeatureDistillation(
        loss="mse", teacher_layer_name="t_logits", student_layer_name="s_logits"
    )
    student = make_student()
    with_features = Distiller(teacher, student, alpha=0.5, distillation_loss=["kl", features])
    with_features.compile(keras.optimizers.Adam(3e-3))
    history = with_features.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    assert history.history["distillation_loss"][-1] < history.history["distillation_loss"][0]


def test_hints_train_their_adapter(teacher, digits):
    (x_train, y_train), _ = digits
    distiller = Distiller(teacher, make_student(), hints=[("t_conv2", "s_conv2")], hint_weight=2.0)
    distiller.compile(keras.optimizers.Adam(3e-3))
    adapter_before = distiller._adapters[0].get_weights()[0].copy()
    history = distiller.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    assert history.history["hint_loss"][-1] < history.history["hint_loss"][0]
    assert not np.array_equal(distiller._adapters[0].get_weights()[0], adapter_before)


def test_distiller_and_student_round_trip_through_keras_files(teacher, digits, tmp_path):
    (x_train, y_train), (x_test, _) = digits
    distiller = Distiller(
        teacher, make_student(), temperature=2.5, alpha=0.2, hints=[("t_conv2", "s_conv2")]
    )
    distiller.compile(keras.optimizers.Adam(1e-3))
    distiller.fit(x_train[:256], y_train[:256], epochs=1, verbose=0)
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, Distiller)
    assert (loaded.temperature, loaded.alpha, loaded.hints) == (2.5, 0.2, [("t_conv2", "s_conv2")])
    np.testing.assert_allclose(
        loaded.predict(x_test, verbose=0), distiller.predict(x_test, verbose=0), atol=1e-6
    )
    np.testing.assert_allclose(
        loaded._adapters[0].get_weights()[0], distiller._adapters[0].get_weights()[0]
    )
    # The compile state comes back too: training resumes with the saved optimizer.
    assert int(loaded.optimizer.iterations) == int(distiller.optimizer.iterations) > 0
    for mine, theirs in zip(loaded.optimizer.variables, distiller.optimizer.variables):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs))
    loaded.fit(x_train[:64], y_train[:64], epochs=1, verbose=0)
    student_path = str(tmp_path / "student.keras")
    distiller.student.save(student_path)
    student = keras.saving.load_model(student_path, safe_mode=True)
    assert not isinstance(student, Distiller)
    np.testing.assert_allclose(
        student.predict(x_test, verbose=0), distiller.predict(x_test, verbose=0), atol=1e-6
    )


def test_config_round_trip_keeps_keras_strategies(teacher):
    strategy = keras.distillation.LogitsDistillation(2.0, loss=keras.losses.KLDivergence())
    distiller = Distiller(teacher, make_student(), distillation_loss=["mse", strategy])
    clone = Distiller.from_config(distiller.get_config())
    assert clone._strategies[0] == "mse"
    assert isinstance(clone._strategies[1], keras.distillation.LogitsDistillation)
    assert clone._strategies[1].temperature == 2.0


# --- bad input ------------------------------------------------------------------------


def softmax_head(model):
    return keras.Model(
        model.inputs, keras.layers.Activation("softmax", name="probs")(model.outputs[0])
    )


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda t: Distiller(
                t,
                keras.Sequential(
                    [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(7)]
                ),
            ),
            ValueError,
            "same number of outputs: teacher 10, student 7",
        ),
        (lambda t: Distiller(t, make_student(), temperature=0), ValueError, "temperature must be"),
        (
            lambda t: Distiller(t, make_student(), alpha=1.5),
            ValueError,
            r"alpha must be a number in \[0, 1\]",
        ),
        (
            lambda t: Distiller(softmax_head(t), make_student()),
            ValueError,
            "teacher_outputs='probabilities'",
        ),
        (
            lambda t: Distiller(t, softmax_head(make_student())),
            ValueError,
            "student must output logits",
        ),
        (
            lambda t: Distiller(t, make_student(), distillation_loss="cosine"),
            ValueError,
            "distillation_loss must be",
        ),
        (
            lambda t: Distiller(t, make_student(), hints=[("t_conv2", "nope")]),
            ValueError,
            "student layer 'nope'",
        ),
        (
            lambda t: Distiller(t, make_student(), hints=[("t_conv1", "s_conv2")]),
            ValueError,
            "agree in all but the last axis",
        ),
        (
            lambda t: Distiller(t, make_student(), teacher_outputs="soft"),
            ValueError,
            "teacher_outputs must be",
        ),
        (lambda t: Distiller(42, make_student()), TypeError, "teacher must be a Keras model"),
        (
            lambda t: Distiller("missing/teacher.keras", make_student()),
            FileNotFoundError,
            "teacher file not found",
        ),
        (
            lambda t: Distiller(
                t,
                keras.Sequential(
                    [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
                ),
            ),
            ValueError,
            "same inputs",
        ),
    ],
)
def test_bad_construction_fails_before_training(teacher, make, error, message):
    with pytest.raises(error, match=message):
        make(teacher)


def test_bad_fit_arguments_fail_clearly(teacher, digits):
    (x_train, y_train), _ = digits
    distiller = Distiller(teacher, make_student(), alpha=0.5)
    distiller.compile("adam")
    with pytest.raises(ValueError, match="needs labels y"):
        distiller.fit(x_train[:64], epochs=1, verbose=0)
    cached = Distiller(teacher, make_student(), cache_teacher=True)
    cached.compile("adam")
    dataset = tf.data.Dataset.from_tensor_slices((x_train[:64], y_train[:64])).batch(32)
    with pytest.raises(ValueError, match="cache_teacher=True needs x as an array"):
        cached.fit(dataset, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="student_loss="):
        distiller.compile("adam", loss="mse", student_loss="mse")


# --- teachers from elsewhere --------------------------------------------------------


def test_saved_model_folder_teaches_like_the_keras_teacher(teacher, digits, tmp_path):
    from keras_transfer import export_saved_model

    (x_train, y_train), _ = digits
    folder = export_saved_model(teacher, tmp_path / "teacher").path
    from_folder = Distiller(folder, make_student(), alpha=0.2)
    from_model = Distiller(teacher, make_student(), alpha=0.2)
    for distiller in (from_folder, from_model):
        distiller.compile(keras.optimizers.Adam(3e-3))
    a = from_folder.evaluate(x_train[:256], y_train[:256], verbose=0, return_dict=True)
    b = from_model.evaluate(x_train[:256], y_train[:256], verbose=0, return_dict=True)
    assert a["distillation_loss"] == pytest.approx(b["distillation_loss"], rel=1e-4)
    served_variables = [v.numpy().copy() for v in from_folder.teacher.weights]
    history = from_folder.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    assert history.history["distillation_loss"][-1] < history.history["distillation_loss"][0]
    for before, variable in zip(served_variables, from_folder.teacher.weights):
        np.testing.assert_array_equal(before, variable.numpy())


def test_missing_saved_model_teacher_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="SavedModel folder"):
        Distiller(str(tmp_path / "nowhere"), make_student())


def test_hub_style_module_teacher_is_checked_before_training(digits, tmp_path):
    """A TF-Hub-style SavedModel (`__call__` with a training argument) as teacher."""
    import tensorflow as tf

    from tests.test_hub import HubStyleModule

    module = HubStyleModule()
    for training in (True, False):
        module.__call__.get_concrete_function(
            tf.TensorSpec([None, 8, 8, 1], tf.float32), training=training
        )
    folder = str(tmp_path / "hub_teacher")
    tf.saved_model.save(module, folder)
    with pytest.raises(ValueError, match="16"):
        Distiller(folder, make_student())  # 16 teacher outputs against 10 student classes
    (x_train, _), _ = digits
    student = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(16)]
    )
    distiller = Distiller(folder, student, alpha=0.0)
    distiller.compile(keras.optimizers.Adam(1e-2))
    history = distiller.fit(x_train, epochs=3, batch_size=64, verbose=0)
    assert history.history["distillation_loss"][-1] < history.history["distillation_loss"][0]
    np.testing.assert_array_equal(distiller.teacher.weights[0].numpy(), module.kernel.numpy())


# --- regularization losses count in the Distiller's step ----------------------------------


def kernels(model):
    return [v.numpy().copy() for v in model.trainable_variables if "kernel" in v.path]


def test_a_student_regularizer_shapes_the_distilled_weights(teacher, digits):
    """The Distiller's loss adds the student's `losses`, as Keras' own fit() does."""
    (x_train, y_train), _ = digits
    plain, regularized = make_student(), make_student()
    for layer in regularized.layers:
        if hasattr(layer, "kernel_regularizer"):
            layer.kernel.regularizer = keras.regularizers.L2(10.0)
    np.testing.assert_array_equal(kernels(plain)[0], kernels(regularized)[0])
    norms = {}
    for name, student in (("plain", plain), ("regularized", regularized)):
        distiller = Distiller(teacher, student, alpha=0.3)
        distiller.compile(keras.optimizers.Adam(1e-3))
        distiller.fit(
            x_train[:512], y_train[:512], epochs=3, batch_size=64, shuffle=False, verbose=0
        )
        norms[name] = sum(float(np.sum(k**2)) for k in kernels(student))
    # Measured: 25.6 without, 19.0 with (before the shared step the two were bit-identical).
    assert norms["regularized"] < 0.85 * norms["plain"], norms


def test_l2_sp_pulls_a_distilled_student_towards_its_start(teacher, digits):
    from keras_transfer import l2_sp

    (x_train, y_train), _ = digits
    distances = {}
    for pull in (0.0, 1.0):
        student = make_student()
        start = kernels(student)
        if pull:
            l2_sp(student, student, sp_weight=pull, l2_weight=0.0)
        distiller = Distiller(teacher, student, alpha=0.3)
        distiller.compile(keras.optimizers.Adam(3e-3))
        distiller.fit(
            x_train[:512], y_train[:512], epochs=3, batch_size=64, shuffle=False, verbose=0
        )
        distances[pull] = sum(
            float(np.sum((k - k0) ** 2)) for k, k0 in zip(kernels(student), start)
        )
    # Measured: squared distance from the start 1.83 without the pull, 0.050 with alpha=1.
    assert distances[1.0] < 0.5 * distances[0.0], distances
