"""The demo's networks: a small CNN (source, teacher) and an int8-friendly student.

A leaf module: the demo's stages, the tests and the benchmarks import it and it imports only Keras.
"""

import keras


def small_cnn(input_shape, num_classes, name="cnn"):
    """A three-block CNN whose `features` layer feeds a logits layer named `head`.

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: number of logits.
        name: model name.

    Returns:
        A functional `keras.Model` from images to logits.

    Example:
    >>> model = small_cnn((8, 8, 1), 5)
    >>> model.output_shape
    (None, 5)
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool3")(x)
    x = keras.layers.Dense(64, activation="relu", name="features")(x)
    outputs = keras.layers.Dense(num_classes, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def small_student(input_shape, num_classes, name="student"):
    """A two-convolution CNN made of int8-friendly layers, 14x smaller than `small_cnn` on 8x8.

    It keeps the pooled feature map's layout (`Flatten`, not global pooling):
    on 8x8 digits the spatial layout is most of what a network this small can
    use (with global pooling it learnt 0.55-0.67 from 50 labels, with `Flatten`
    0.75-0.80; 3 seeds).

    Example:
    >>> small_student((8, 8, 1), 10).count_params() < small_cnn((8, 8, 1), 10).count_params() / 10
    True
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="s_conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="s_pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="s_conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="s_pool2")(x)
    x = keras.layers.Flatten(name="s_flatten")(x)
    outputs = keras.layers.Dense(num_classes, name="s_head")(x)
    return keras.Model(inputs, outputs, name=name)
