"""The table of adaptation methods the harness runs (tests/test_adapters.py,
tests/test_distribute.py).

One row per `keras_transfer.adapt.Adapter` configuration: a name and a callable of (backbone,
classifier) that builds it. A new method adds its row here; tests/test_adapters.py fails until
every Adapter subclass has one.
"""

from functools import partial

import keras

from keras_transfer import adapt

# Smooth activations throughout: a ReLU whose input sits within float32 rounding of 0 switches its
# gradient on or off, so two runs that sum the same batch in another order (one device, two
# replicas) part by 1e-5 at such a step and drift apart (measured on CDAN: 3e-8 after 16 steps,
# 1.1e-5 one step later). tanh keeps them within rounding, which is what the equality tests check.
ACTIVATION = "tanh"


def smooth_discriminator(hidden_units=64, hidden_layers=2):
    """The default discriminator's shape (Dense layers, one logit) with tanh and no dropout:
    dropout masks differ across replicas."""
    hidden = [keras.layers.Dense(hidden_units, activation=ACTIVATION) for _ in range(hidden_layers)]
    return keras.Sequential([*hidden, keras.layers.Dense(1)], name="discriminator")


ADAPTERS = {
    "dann": lambda b, c: adapt.DANN(b, c, discriminator=smooth_discriminator(100, 1), lambda_=0.3),
    "mmd": partial(adapt.DiscrepancyAdapter, discrepancy="mmd", discrepancy_weight=0.3),
    "coral_at_fc": partial(adapt.DiscrepancyAdapter, discrepancy="coral", layers=["fc"]),
    "cmd": partial(adapt.DiscrepancyAdapter, discrepancy="cmd", discrepancy_weight=0.3),
    "mcc": adapt.MCC,
    "cdan_e": lambda b, c: adapt.CDAN(b, c, discriminator=smooth_discriminator(), lambda_=0.3),
    "cdan": lambda b, c: adapt.CDAN(
        b, c, discriminator=smooth_discriminator(), entropy_conditioning=False, lambda_=0.3
    ),
}


def digit_networks(input_shape=(8, 8, 1), classes=10):
    """A small conv backbone and a two-layer classifier (its hidden layer named "fc")."""
    backbone = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(8, 3, activation=ACTIVATION),
            keras.layers.Flatten(),
        ],
        name="backbone",
    )
    width = backbone.output_shape[-1]
    classifier = keras.Sequential(
        [
            keras.Input((width,)),
            keras.layers.Dense(16, activation=ACTIVATION, name="fc"),
            keras.layers.Dense(classes, name="logits"),
        ],
        name="classifier",
    )
    return backbone, classifier


def build(name, seed=0):
    """The table's adapter `name` on fresh digit networks, its weights drawn from `seed`."""
    keras.utils.set_random_seed(seed)
    return ADAPTERS[name](*digit_networks())
