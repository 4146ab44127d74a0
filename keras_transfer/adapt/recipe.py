"""The training recipe behind the published digit-adaptation numbers, measured here.

The anchors (TLlib, CDAN, SHOT) train a LeNet with dropout and a BatchNorm
bottleneck on inputs in [-1, 1], with SGD Nesterov whose rate decays as
(1 + 0.001 i)^-0.75, for thousands of steps. Here, with USPS put in MNIST's frame
(`resize_images(..., pad=3)`), source only on 2,000 MNIST images reaches 90.6 / 84.7%
on USPS (seeds 0 / 1, 5,000 steps) where ~470 Adam steps reached 64.4%
(examples/benchmarks/adapt_digits.py has the table).
"""

import keras

from keras_transfer._checks import require_number


@keras.saving.register_keras_serializable(package="keras_transfer")
class InverseDecay(keras.optimizers.schedules.LearningRateSchedule):
    """learning_rate · (1 + gamma · step)^-power: the decay of DANN, CDAN, TLlib and SHOT.

    Args:
        learning_rate: the rate at step 0.
        gamma: how fast it decays (0.001: halved after ~1,500 steps).
        power: the exponent.

    Example:
    >>> schedule = InverseDecay(0.01)
    >>> round(float(schedule(1000)), 5)
    0.00595
    """

    def __init__(self, learning_rate, gamma=0.001, power=0.75):
        self.learning_rate = require_number(learning_rate, "learning_rate", above=True)
        self.gamma = require_number(gamma, "gamma")
        self.power = require_number(power, "power")

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        return self.learning_rate * (1.0 + self.gamma * step) ** -self.power

    def get_config(self):
        return {"learning_rate": self.learning_rate, "gamma": self.gamma, "power": self.power}


def adaptation_optimizer(learning_rate=0.01, momentum=0.9, weight_decay=1e-3):
    """SGD with Nesterov momentum, weight decay and `InverseDecay`: the anchors' optimizer.

    Args:
        learning_rate: the initial rate.
        momentum: Nesterov momentum.
        weight_decay: Keras' decoupled weight decay.

    Returns:
        A `keras.optimizers.SGD`.

    Example:
    >>> optimizer = adaptation_optimizer()
    >>> optimizer.nesterov
    True
    """
    return keras.optimizers.SGD(
        InverseDecay(learning_rate),
        momentum=require_number(momentum, "momentum", maximum=1.0),
        nesterov=True,
        weight_decay=require_number(weight_decay, "weight_decay"),
    )


def digit_networks(num_classes=10, input_shape=(28, 28, 1), bottleneck=256, dropout=0.5):
    """The anchors' digit networks: a LeNet backbone and a linear classifier.

    Backbone: inputs in [0, 1] rescaled to [-1, 1], conv 20-5, pool, conv 50-5,
    channel dropout, pool, dense 500, dropout, then a bottleneck Dense +
    BatchNorm + ReLU (an `Adapter` feeds it both domains as one batch).

    Args:
        num_classes: the classifier's outputs (logits).
        input_shape: per-image shape, channels last.
        bottleneck: width of the features.
        dropout: rate of both dropout layers.

    Returns:
        (backbone, classifier), two `keras.Sequential` models.

    Example:
    >>> backbone, classifier = digit_networks()
    >>> backbone.output_shape, classifier.output_shape
    ((None, 256), (None, 10))
    """
    layers = keras.layers
    backbone = keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Rescaling(2.0, offset=-1.0, name="to_symmetric"),
            layers.Conv2D(20, 5, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(50, 5, activation="relu", name="conv2"),
            layers.SpatialDropout2D(dropout, name="conv2_dropout"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(500, activation="relu", name="fc"),
            layers.Dropout(dropout, name="fc_dropout"),
            layers.Dense(bottleneck, name="bottleneck"),
            layers.BatchNormalization(name="bottleneck_bn"),
            layers.ReLU(name="bottleneck_relu"),
        ],
        name="lenet",
    )
    classifier = keras.Sequential(
        [keras.Input((bottleneck,)), layers.Dense(num_classes, name="logits")], name="classifier"
    )
    return backbone, classifier
