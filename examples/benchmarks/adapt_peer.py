"""The ADAPT package's DANN and DeepCORAL on the data and network adapt_digits.py gives it.

Run by adapt_digits.py in a subprocess, because ADAPT (pip `adapt`) is built
on tf.keras 2 (TF_USE_LEGACY_KERAS=1, package tf_keras) while keras-transfer
runs on Keras 3:

    TF_USE_LEGACY_KERAS=1 python adapt_peer.py INPUT.npz OUTPUT.npz

INPUT holds the arrays (source, target, validation, test) and the initial
weights of our LeNet, its classifier and discriminator, so both packages
start from the same weights; the settings (epochs, batch size, learning
rate, lambda grid, seed) come as a JSON string under "settings". OUTPUT
holds, per run, test predictions, validation probabilities and the features
the caller needs for model selection and the proxy A-distance.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from adapt.feature_based import DANN  # noqa: E402
from adapt.feature_based import DeepCORAL  # noqa: E402
from adapt.utils import UpdateLambda  # noqa: E402

layers = tf.keras.layers


class EpochSeconds(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def networks(weights):
    encoder = tf.keras.Sequential(
        [
            layers.InputLayer(input_shape=(28, 28, 1)),
            layers.Conv2D(20, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(50, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(500, activation="relu"),
        ]
    )
    task = tf.keras.Sequential(
        [layers.InputLayer(input_shape=(500,)), layers.Dense(10, activation="softmax")]
    )
    discriminator = tf.keras.Sequential(
        [
            layers.InputLayer(input_shape=(500,)),
            layers.Dense(500, activation="relu"),
            layers.Dense(500, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    for name, model in (
        ("features", encoder),
        ("classifier", task),
        ("discriminator", discriminator),
    ):
        model.set_weights([weights[f"{name}_{i}"] for i in range(len(model.get_weights()))])
    return encoder, task, discriminator


def run(method, lambda_max, data, settings):
    tf.keras.utils.set_random_seed(settings["seed"])
    encoder, task, discriminator = networks(data)
    lambda_ = tf.Variable(0.0, trainable=False)
    common = dict(
        encoder=encoder,
        task=task,
        Xt=data["x_target"],
        lambda_=lambda_,
        random_state=settings["seed"],
        optimizer=tf.keras.optimizers.Adam(settings["learning_rate"]),
        loss="categorical_crossentropy",
        metrics=["acc"],
        verbose=0,
    )
    model = DANN(discriminator=discriminator, **common) if method == "DANN" else DeepCORAL(**common)
    steps = -(-max(len(data["x_source"]), len(data["x_target"])) // settings["batch_size"])
    timer = EpochSeconds()
    ramp = UpdateLambda(lambda_max=lambda_max, max_steps=settings["epochs"] * steps, gamma=10.0)
    model.fit(
        data["x_source"],
        np.eye(10, dtype="float32")[data["y_source"]],
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        callbacks=[timer, ramp],
        verbose=0,
    )
    embed = lambda x: model.encoder_.predict(x, batch_size=1000, verbose=0)  # noqa: E731
    return {
        "test_predictions": np.argmax(
            model.predict(data["x_test"], batch_size=1000, verbose=0), -1
        ),
        "validation_probabilities": model.predict(data["x_validation"], batch_size=1000, verbose=0),
        "validation_features": embed(data["x_validation"]),
        "source_features": embed(data["x_source"][:1000]),
        "target_features": embed(data["x_target"][:1000]),
        "epoch_seconds": np.array(timer.seconds),
    }


def main(input_path, output_path):
    data = dict(np.load(input_path))
    settings = json.loads(str(data.pop("settings")))
    results = {}
    runs = [("DANN", value) for value in settings["lambda_grid"]] + [
        ("DeepCORAL", settings["coral_weight"])
    ]
    for method, value in runs:
        for key, array in run(method, value, data, settings).items():
            results[f"{method}|{value}|{key}"] = array
    np.savez(output_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:3])
