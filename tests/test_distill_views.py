"""The Distiller's training views on real digits: one augmented (and mixed) view for both networks,
cached teacher views, unlabelled inputs beside the labelled, and the alpha schedule.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer import DistillationSchedule
from keras_transfer import Distiller
from keras_transfer._training import keras_loss_mean
from keras_transfer.distill.views import blended_task_loss
from keras_transfer.distill.views import mix_batch
from keras_transfer.distill.views import with_unlabelled
from tests.test_distill import CountingTeacher
from tests.test_distill import make_student
from tests.test_distill import numpy_kl
from tests.test_distill import teacher  # noqa: F401  (the trained digits teacher fixture)


def plain_network(seed=0):
    """No BatchNorm, no dropout: training and inference give the same outputs."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def small_mlp(seed=1):
    """A student that can fit 50 images by heart: what distillation from a teacher pays for."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def twin(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def numpy_cross_entropy(labels, logits):
    logits = logits - logits.max(-1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -log_softmax[np.arange(len(labels)), labels]


def shifts():
    return keras.Sequential(
        [keras.layers.RandomTranslation(0.25, 0.25, fill_mode="constant", seed=3)]
    )


def test_teacher_and_student_see_the_same_augmented_and_mixed_view(digits):
    (x_train, y_train), _ = digits
    x, y = tf.constant(x_train[:64]), tf.constant(y_train[:64])
    network = plain_network()
    distiller = Distiller(network, twin(network), alpha=0.5, augment=shifts(), mixup=0.4)
    distiller.compile("adam")
    step = distiller.compute_terms((x, y), training=True)
    # the student's view differs from the clean images ...
    clean = network(x)
    assert float(tf.reduce_max(tf.abs(step.y_pred - clean))) > 0.1
    # ... and the teacher (an identical network) saw that same view: nothing to distil
    assert float(step.terms["distillation_loss"]) < 1e-6
    evaluation = distiller.compute_terms((x, y), training=False)  # no augmentation outside fit
    np.testing.assert_allclose(evaluation.y_pred, clean, atol=1e-5)


def test_mixup_blends_inputs_and_the_labels_loss_by_the_same_share(rng):
    x = tf.constant(rng.normal(size=(16, 4, 4, 1)).astype("float32"))
    mixed, partner, share = mix_batch(x, 0.4, keras.random.SeedGenerator(1))
    partner, share = partner.numpy(), share.numpy()
    assert sorted(partner) == list(range(16)) and np.all((share >= 0) & (share <= 1))
    blend = share[:, None, None, None]
    np.testing.assert_allclose(mixed, blend * x + (1 - blend) * x.numpy()[partner], atol=1e-6)

    labels = rng.integers(0, 10, 16)
    logits = rng.normal(size=(16, 10)).astype("float32")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_mean(y, p, w):
        return keras_loss_mean(loss, y, p, w)

    got = blended_task_loss(loss_mean, tf.constant(labels), logits, None, (partner, share))
    by_hand = np.mean(
        share * numpy_cross_entropy(labels, logits)
        + (1 - share) * numpy_cross_entropy(labels[partner], logits)
    )
    assert float(got) == pytest.approx(by_hand, rel=1e-5)


def test_unlabelled_inputs_take_the_distillation_term_alone(teacher, digits):  # noqa: F811
    (x_train, y_train), _ = digits
    x, targets = with_unlabelled(x_train[:24], y_train[:24], x_train[100:140])
    assert len(x) == 64 and targets["labelled"].sum() == 24
    order = np.random.default_rng(0).permutation(64)  # labelled and unlabelled shuffled together
    distiller = Distiller(teacher, make_student(), temperature=2.0, alpha=0.5)
    distiller.compile("adam")
    batch = (x[order], {k: v[order] for k, v in targets.items()})
    terms = distiller.compute_terms(batch, training=False).terms
    student = distiller.student.predict(x[order], verbose=0)
    labelled = targets["labelled"][order] == 1
    task = np.mean(numpy_cross_entropy(targets["labels"][order][labelled], student[labelled]))
    assert float(terms["task_loss"]) == pytest.approx(task, rel=1e-4)
    kl = numpy_kl(teacher.predict(x[order], verbose=0), student, 2.0)  # over all 64
    assert float(terms["distillation_loss"]) == pytest.approx(kl, rel=1e-4)


def test_unlabelled_images_help_a_student_with_few_labels(teacher, digits):  # noqa: F811
    (x_train, y_train), (x_test, y_test) = digits
    few = np.concatenate([np.flatnonzero(y_train == c)[:5] for c in range(10)])
    rest = np.setdiff1d(np.arange(len(x_train)), few)
    accuracies = {}
    for unlabelled in (None, x_train[rest]):
        student = small_mlp()
        distiller = Distiller(teacher, student)
        distiller.compile(keras.optimizers.Adam(3e-3))
        keras.utils.set_random_seed(7)
        steps = {} if unlabelled is None else {"epochs": 6}  # the same ~250 steps
        distiller.fit(
            x_train[few],
            y_train[few],
            unlabelled=unlabelled,
            batch_size=32,
            verbose=0,
            **{"epochs": 125, **steps},
        )
        accuracies[unlabelled is None] = np.mean(
            student.predict(x_test, verbose=0).argmax(-1) == y_test
        )
    assert accuracies[False] > accuracies[True] + 0.05, accuracies


def test_cached_views_run_the_teacher_once_per_view_and_never_in_a_step(teacher, digits):  # noqa: F811
    (x_train, y_train), _ = digits
    x, y = x_train[:256], y_train[:256]
    counting = CountingTeacher(teacher)
    distiller = Distiller(
        counting, make_student(), cache_teacher=True, augment=shifts(), teacher_views=3
    )
    distiller.compile(keras.optimizers.Adam(1e-3), run_eagerly=True)

    class Steps(keras.callbacks.Callback):
        count = 0

        def on_train_batch_end(self, batch, logs=None):
            Steps.count += 1

    distiller.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[Steps()])
    assert Steps.count == 16  # an epoch is still one pass over x's 256 images
    assert counting.calls <= 2  # traces while labelling the views, none in the 16 steps
    cached_views = distiller._cache._entry[1][0]
    assert cached_views.shape == (3 * 256, 10)
    first, second = cached_views[:256], cached_views[256:512]
    assert np.mean(first.argmax(-1) == second.argmax(-1)) < 0.99, "the views must differ"


def test_a_schedule_stops_the_distillation_term(teacher, digits):  # noqa: F811
    (x_train, y_train), _ = digits
    distiller = Distiller(teacher, make_student(), alpha=0.1)
    distiller.compile(keras.optimizers.Adam(1e-3))
    stop_after_one = DistillationSchedule(lambda epoch: 0.1 if epoch < 1 else 1.0)
    history = distiller.fit(
        x_train[:256],
        y_train[:256],
        epochs=2,
        batch_size=32,
        verbose=0,
        callbacks=[stop_after_one],
    ).history
    assert distiller.alpha == 1.0
    assert history["loss"][0] != pytest.approx(history["task_loss"][0], rel=1e-3)
    assert history["loss"][1] == pytest.approx(history["task_loss"][1], rel=1e-5)
    with pytest.raises(ValueError, match="schedule"):
        DistillationSchedule(lambda epoch: 2.0).on_epoch_begin(0)


def test_augment_and_mixup_survive_a_keras_file(teacher, digits, tmp_path):  # noqa: F811
    (x_train, _), _ = digits
    distiller = Distiller(teacher, make_student(), augment=shifts(), mixup=0.3, teacher_views=2)
    distiller.compile("adam")
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert (loaded.mixup, loaded.teacher_views) == (0.3, 2)
    assert isinstance(loaded.augment.layers[0], keras.layers.RandomTranslation)
    np.testing.assert_allclose(
        loaded.predict(x_train[:32], verbose=0),
        distiller.predict(x_train[:32], verbose=0),
        atol=1e-6,
    )


def test_unlabelled_inputs_take_sample_weights_and_alpha_zero(teacher, digits):  # noqa: F811
    (x_train, y_train), _ = digits
    x, y, pool = x_train[:64], y_train[:64], x_train[64:128]
    weighted = Distiller(teacher, make_student(), alpha=0.5)
    weighted.compile("adam")
    history = weighted.fit(x, y, unlabelled=pool, sample_weight=np.ones(64), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    teacher_only = Distiller(teacher, make_student(), alpha=0.0)
    teacher_only.compile("adam")
    history = teacher_only.fit(x, unlabelled=pool, epochs=1, batch_size=32, verbose=0)
    assert set(history.history) == {"loss", "distillation_loss"}
