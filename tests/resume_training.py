"""Trains a DANN with BackupAndRestore; run by test_resume.py, which kills it mid-epoch and resumes
it.

    python tests/resume_training.py FOLDER [--die-at EPOCH BATCH]

Writes FOLDER/final.npz (the weights after the last epoch) when training ends.
With --die-at, the process exits abruptly (os._exit, no clean-up) inside that
batch, as a killed job would. Ops are deterministic and the batch order is
fixed (shuffle=False), so a resumed run can end with the same weights as an
uninterrupted one.
"""

import argparse
import os

os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_transfer as kt  # noqa: E402
from keras_transfer import adapt  # noqa: E402
from keras_transfer.datasets import uneven_light  # noqa: E402

EPOCHS = 4


class DieAt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self._current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self._current, batch) == (self.epoch, self.batch):
            os._exit(17)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--die-at", type=int, nargs=2, default=None)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    (x, y), _ = kt.load_digits(seed=0)
    features = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
        ]
    )
    classifier = keras.Sequential([keras.Input((32,)), keras.layers.Dense(10)])
    model = adapt.DANN(features, classifier)
    model.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model(x[:1])  # BackupAndRestore needs a built model
    pairs = kt.domain_pairs(
        (x[:600], y[:600]), uneven_light(x[600:1200], 1), batch_size=32, shuffle=False
    )
    callbacks = [
        adapt.DANNSchedule(),
        keras.callbacks.BackupAndRestore(os.path.join(args.folder, "backup")),
    ]
    if args.die_at:
        callbacks.append(DieAt(*args.die_at))
    history = model.fit(pairs, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    print("epochs run:", " ".join(str(e) for e in history.epoch))
    np.savez(os.path.join(args.folder, "final.npz"), *model.get_weights())


if __name__ == "__main__":
    main()
