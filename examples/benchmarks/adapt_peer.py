"""The ADAPT package's DANN, CDAN and MDD on the arrays, networks and budget adapt_digits.py gives.

Run by adapt_digits.py in a subprocess, because ADAPT (pip `adapt` 0.4.5, with
`scikeras` and `cvxopt`) is built on tf.keras 2 (TF_USE_LEGACY_KERAS=1, package
tf_keras) while keras-transfer runs on Keras 3:

    TF_USE_LEGACY_KERAS=1 python adapt_peer.py INPUT.npz OUTPUT.npz

INPUT holds the arrays (source, target, test), the initial weights of our
digit networks (`adapt.digit_networks()`: backbone_i, classifier_i and, for
DANN and CDAN, discriminator_i from our model of the same seed) and, under
"settings", a JSON string: method, steps, batch size, seed. Both packages so
start from the same weights, train the same number of steps at the same batch
size with the same optimizer (SGD Nesterov 0.9, weight decay 1e-3, 0.01 x
(1 + 0.001 i)^-0.75) and the same strength ramp (ADAPT's UpdateLambda, the
formula of our DANNSchedule). OUTPUT holds the test predictions and per-step
seconds.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from adapt.feature_based import CDAN  # noqa: E402
from adapt.feature_based import DANN  # noqa: E402
from adapt.feature_based import MDD  # noqa: E402
from adapt.utils import UpdateLambda  # noqa: E402

if os.environ.get("ADAPT_DIGITS_THREADS"):  # adapt_digits.py --jobs: one thread per run, as ours
    tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["ADAPT_DIGITS_THREADS"]))
    tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["ADAPT_DIGITS_THREADS"]))

layers = tf.keras.layers


@tf.keras.utils.register_keras_serializable("adapt_peer")  # ADAPT copies optimizers by config
class InverseDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
        return 0.01 * (1.0 + 0.001 * tf.cast(step, tf.float32)) ** -0.75

    def get_config(self):
        return {}


class StepSeconds(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def networks(weights, method):
    """Our digit networks in tf.keras, holding the weights our Keras 3 models started from."""
    backbone = tf.keras.Sequential(
        [
            layers.InputLayer(input_shape=(28, 28, 1)),
            layers.Rescaling(2.0, offset=-1.0),
            layers.Conv2D(20, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(50, 5, activation="relu"),
            layers.SpatialDropout2D(0.5),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(500, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(256),
            layers.BatchNormalization(),
            layers.ReLU(),
        ]
    )
    classifier = tf.keras.Sequential(  # ADAPT's tasks give probabilities
        [layers.InputLayer(input_shape=(256,)), layers.Dense(10, activation="softmax")]
    )
    parts = [("backbone", backbone), ("classifier", classifier)]
    discriminator = None
    if method == "DANN":  # our DANN's default, with ADAPT's sigmoid output
        discriminator = tf.keras.Sequential(
            [
                layers.InputLayer(input_shape=(256,)),
                layers.Dense(100, activation="relu"),
                layers.Dense(1, activation="sigmoid"),
            ]
        )
    elif method == "CDAN":  # our CDAN's default on the 256 x 10 multilinear map
        discriminator = tf.keras.Sequential(
            [
                layers.InputLayer(input_shape=(2560,)),
                layers.Dense(500, activation="relu"),
                layers.Dropout(0.5),
                layers.Dense(500, activation="relu"),
                layers.Dropout(0.5),
                layers.Dense(1, activation="sigmoid"),
            ]
        )
    if discriminator is not None:
        parts.append(("discriminator", discriminator))
    for name, model in parts:
        model.set_weights([weights[f"{name}_{i}"] for i in range(len(model.get_weights()))])
    return backbone, classifier, discriminator


def run(data, settings):
    method = settings["method"]
    tf.keras.utils.set_random_seed(settings["seed"])
    backbone, classifier, discriminator = networks(data, method)
    lambda_ = tf.Variable(0.0, trainable=False)
    common = dict(
        encoder=backbone,
        task=classifier,
        Xt=data["x_target"],
        lambda_=lambda_,
        random_state=settings["seed"],
        optimizer=tf.keras.optimizers.SGD(
            InverseDecay(), momentum=0.9, nesterov=True, weight_decay=1e-3
        ),
        loss="categorical_crossentropy",
        metrics=["acc"],
        verbose=0,
    )
    if method == "MDD":
        model = MDD(**common)  # its discrepancy head is a copy of the task's
    else:
        model = {"DANN": DANN, "CDAN": CDAN}[method](discriminator=discriminator, **common)
    batch = settings["batch_size"]
    per_epoch = -(-max(len(data["x_source"]), len(data["x_target"])) // batch)
    epochs = -(-settings["steps"] // per_epoch)
    timer = StepSeconds()
    # DANN and CDAN ramp to 1, as ours; MDD to its own default 0.1 (at 1, seed 0 of MNIST -> USPS
    # collapsed to one class, 17.8%)
    lambda_max = 0.1 if method == "MDD" else 1.0
    ramp = UpdateLambda(lambda_max=lambda_max, max_steps=epochs * per_epoch, gamma=10.0)
    model.fit(
        data["x_source"],
        np.eye(10, dtype="float32")[data["y_source"]],
        epochs=epochs,
        batch_size=batch,
        callbacks=[timer, ramp],
        verbose=0,
    )
    predicted = model.predict(data["x_test"], batch_size=1000, verbose=0)
    return {"test_predictions": np.argmax(predicted, -1), "step_seconds": np.array(timer.seconds)}


def main(input_path, output_path):
    data = dict(np.load(input_path))
    settings = json.loads(str(data.pop("settings")))
    np.savez(output_path, **run(data, settings))


if __name__ == "__main__":
    main(*sys.argv[1:3])
