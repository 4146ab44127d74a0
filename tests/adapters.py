"""The table of adaptation methods the harness runs (tests/test_adapters.py,
tests/test_distribute.py).

One row per `keras_transfer.adapt.Adapter` configuration: a name and a callable of (backbone,
classifier) that builds it. A new method adds its row here; tests/test_adapters.py fails until
every Adapter subclass has one.
"""

from functools import partial

import keras

from keras_transfer import adapt
from keras_transfer.adapt.domain import default_discriminator


def no_dropout_discriminator():
    return default_discriminator(64, hidden_layers=2)


ADAPTERS = {
    "dann": partial(adapt.DANN, lambda_=0.3),
    "mmd": partial(adapt.DiscrepancyAdapter, discrepancy="mmd", discrepancy_weight=0.3),
    "coral_at_fc": partial(adapt.DiscrepancyAdapter, discrepancy="coral", layers=["fc"]),
    "cmd": partial(adapt.DiscrepancyAdapter, discrepancy="cmd", discrepancy_weight=0.3),
    "mcc": adapt.MCC,
    # CDAN's default discriminator has dropout, whose masks no two-replica run can reproduce
    "cdan_e": lambda b, c: adapt.CDAN(b, c, discriminator=no_dropout_discriminator(), lambda_=0.3),
    "cdan": lambda b, c: adapt.CDAN(
        b, c, discriminator=no_dropout_discriminator(), entropy_conditioning=False, lambda_=0.3
    ),
}


def digit_networks(input_shape=(8, 8, 1), classes=10):
    """A small conv backbone and a two-layer classifier (its hidden layer named "fc")."""
    backbone = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
        ],
        name="backbone",
    )
    width = backbone.output_shape[-1]
    classifier = keras.Sequential(
        [
            keras.Input((width,)),
            keras.layers.Dense(16, activation="relu", name="fc"),
            keras.layers.Dense(classes, name="logits"),
        ],
        name="classifier",
    )
    return backbone, classifier


def build(name, seed=0):
    """The table's adapter `name` on fresh digit networks, its weights drawn from `seed`."""
    keras.utils.set_random_seed(seed)
    return ADAPTERS[name](*digit_networks())
