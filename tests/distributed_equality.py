"""Run by tests/test_distribute.py in a fresh process: two logical CPUs must be set before TF
starts.

Its cases also serve tests/multiworker_equality.py, which imports them without the two CPUs.

Trains each custom train_step twice from the same weights on the same batches, once without a
strategy and once under MirroredStrategy on two CPUs, and prints the largest weight and loss
differences as JSON.
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_transfer as kt  # noqa: E402
from keras_transfer.demo import small_cnn  # noqa: E402
from keras_transfer.demo import small_student  # noqa: E402
from tests.adapters import ADAPTERS  # noqa: E402
from tests.adapters import build as build_adapter  # noqa: E402

(X, Y), _ = kt.load_digits(seed=0)
X, Y = X[:1024], Y[:1024]
X_TARGET = X[:, :, ::-1, :].copy()  # mirrored digits: a shifted, unlabelled target domain


def weights_of(seed, build):
    keras.utils.set_random_seed(seed)
    return build().get_weights()


def teacher_and_student_maker():
    """A function giving a fresh teacher and student, with the same starting weights every call."""
    teacher_weights = weights_of(0, lambda: small_cnn((8, 8, 1), 10))
    student_weights = weights_of(1, lambda: small_student((8, 8, 1), 10))

    def make():
        teacher, student = small_cnn((8, 8, 1), 10), small_student((8, 8, 1), 10)
        teacher.set_weights(teacher_weights)
        student.set_weights(student_weights)
        return teacher, student

    return make


def distiller(loss, batch_size=64):
    teacher_and_student = teacher_and_student_maker()

    def build():
        teacher, student = teacher_and_student()
        model = kt.Distiller(teacher, student, alpha=0.3, distillation_loss=loss)
        model.compile(keras.optimizers.SGD(0.1), metrics=["accuracy"])
        return model, student

    def fit(model):
        return model.fit(X, Y, epochs=2, batch_size=64, shuffle=False, verbose=0).history

    return build, fit


def lenet():
    features = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
        ],
        name="features",
    )
    classifier = keras.Sequential([keras.Input((288,)), keras.layers.Dense(10)], name="classifier")
    return features, classifier


def adapter(name, batch_size=64):
    """The adapter `name` of the harness table (tests/adapters.py) on mirrored digits."""
    start = build_adapter(name, seed=2).get_weights()

    def build():
        model = build_adapter(name)
        model.set_weights(start)
        model.compile(keras.optimizers.SGD(0.05), metrics=["accuracy"])
        return model, model

    def fit(model):
        pairs = tf.data.Dataset.from_tensor_slices(((X, Y), X_TARGET)).batch(batch_size)
        return model.fit(pairs, epochs=2, verbose=0).history

    return build, fit


def multitask():
    """Two heads; in each batch of 64, 40 samples are labelled for "low" and 24 for "high", so the
    two
    replicas see different counts per task and only a global count gives the single-device mean."""

    def network():
        backbone = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Conv2D(8, 3, activation="relu"),
                keras.layers.Flatten(),
            ],
            name="backbone",
        )
        heads = {
            name: keras.Sequential([keras.Input((288,)), keras.layers.Dense(5)], name=name)
            for name in ("low", "high")
        }
        return kt.MultiTaskModel(backbone, heads, loss_weights={"high": 0.5})

    keras.utils.set_random_seed(3)
    start = network().get_weights()
    pattern = np.tile(np.r_[np.ones(40), np.zeros(24)], len(X) // 64).astype("float32")
    labels = {"low": (Y % 5).astype("int32"), "high": (Y // 2).astype("int32")}
    masks = {"low": pattern, "high": 1.0 - pattern}

    def build():
        model = network()
        model.set_weights(start)
        model.compile(keras.optimizers.SGD(0.05), metrics=["accuracy"])
        return model, model

    def fit(model):
        return model.fit(
            tf.data.Dataset.from_tensor_slices((X, labels, masks)).batch(64), epochs=2, verbose=0
        ).history

    return build, fit


def zeroshot():
    """ZeroShotClassifier: Keras' own steps (hinge ranking loss) with the toolkit's logs."""
    attributes = np.random.default_rng(0).integers(0, 2, (10, 6)).astype("float32")

    def network():
        images = keras.Sequential(
            [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(8)]
        )
        classes = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8)])
        return kt.ZeroShotClassifier(images, classes, attributes)

    keras.utils.set_random_seed(4)
    start = network().get_weights()

    def build():
        model = network()
        model.set_weights(start)
        model.compile(keras.optimizers.SGD(0.05), loss=kt.HingeRankingLoss(), metrics=["accuracy"])
        return model, model

    def fit(model):
        return model.fit(X, Y, epochs=2, batch_size=64, shuffle=False, verbose=0).history

    return build, fit


def qat_distiller():
    """distill_quantize_aware inside strategy.scope(): tf_keras' fit with the packed-target loss,
    from calibrated activation ranges; the QAT copy's weights include its fake-quant ranges."""
    import tf_keras

    teacher_and_student = teacher_and_student_maker()

    def run():
        teacher, student = teacher_and_student()
        start = kt.quantize_aware(student, calibration_data=X[:256]).get_weights()
        qat = kt.distill_quantize_aware(
            teacher,
            student,
            X,
            Y,
            temperature=4.0,  # test_distribute's tolerances were measured at T=4
            alpha=0.3,
            calibration_data=X[:256],
            optimizer=tf_keras.optimizers.SGD(0.1),
            epochs=2,
            batch_size=64,
            shuffle=False,
            verbose=0,
        )
        return qat.get_weights(), qat.history.history, start

    return run


def compare_runs(run):
    """Like `compare`, for a case that builds and trains in one call."""
    results = []
    for strategy in (
        tf.distribute.get_strategy(),
        tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
    ):
        with strategy.scope():
            results.append(run())
    (w1, h1, start), (w2, h2, _) = results
    return _differences(w1, w2, start, h1, h2)


def _differences(w1, w2, start, h1, h2):
    return {
        "max_weight_diff": float(max(np.abs(a - b).max() for a, b in zip(w1, w2))),
        "max_weight_change": float(max(np.abs(a - b).max() for a, b in zip(w1, start))),
        "max_log_diff": float(max(abs(a - b) for k in h1 for a, b in zip(h1[k], h2[k]))),
        "logs": sorted(h1),
    }


def compare(build, fit):
    results = []
    for strategy in (
        tf.distribute.get_strategy(),
        tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
    ):
        with strategy.scope():
            model, trained = build()
        history = fit(model)
        results.append((trained.get_weights(), history))
    (w1, h1), (w2, h2) = results
    return _differences(w1, w2, build()[1].get_weights(), h1, h2)


CASES = {
    "distiller_kl": lambda: distiller("kl"),
    "distiller_keras_strategy": lambda: distiller(
        keras.distillation.LogitsDistillation(4.0, loss=keras.losses.KLDivergence())
    ),
    **{f"adapter_{name}": (lambda name=name: adapter(name)) for name in ADAPTERS},
    "multitask": multitask,
    "zeroshot": zeroshot,
    # a global batch of 63 splits into 32 + 31 rows (Keras' build summed the two: AddN failed)
    "distiller_uneven_batch": lambda: distiller("kl", batch_size=63),
    "adapter_dann_uneven_batch": lambda: adapter("dann", batch_size=63),
}
SINGLE_CALL_CASES = {"qat_distiller": qat_distiller}

if __name__ == "__main__":
    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    names = sys.argv[1:] or list(CASES)  # one per process when MirroredStrategy runs: see the test
    print(
        json.dumps(
            {
                name: compare_runs(SINGLE_CALL_CASES[name]())
                if name in SINGLE_CALL_CASES
                else compare(*CASES[name]())
                for name in names
            }
        )
    )
