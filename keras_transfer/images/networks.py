"""The networks of the folder workflow: all take raw pixels in [0, 255].

A `Rescaling` layer named "pixels" scales them as the network expects, so the
Keras model, the `.tflite` file and MediaPipe Tasks are all fed the image itself.
"""

import keras

from keras_transfer.backbones import APPLICATIONS

BUILT_IN = "compact_cnn"
# keras.applications families by the pixels they expect: [0, 255] (their own preprocessing
# inside), [-1, 1], or caffe's BGR minus the ImageNet mean (which an RGB runtime cannot feed).
_RAW = ("MobileNetV3", "EfficientNet", "ConvNeXt", "RegNet")
_SYMMETRIC = ("MobileNet", "NASNet", "Xception", "Inception", "ResNet50V2")
_BGR = ("ResNet50", "ResNet101", "ResNet152", "VGG")


def compact_cnn(input_shape, num_classes, width=32, name=BUILT_IN):
    """The built-in network when no backbone is named: BatchNorm conv blocks, raw pixels in.

    Three blocks of `width`, 2x and 4x filters (3x3 conv, BatchNorm, ReLU, max
    pooling), global average pooling, dropout 0.3 and a logits layer named
    "classes". Inputs larger than 64 pixels are first strided by 2. Every layer
    is int8-friendly (quantization-aware training and int8 export take it).
    BatchNorm tracks its statistics at momentum 0.9: at Keras' 0.99 they lagged
    so far behind a few hundred steps that inference accuracy on the digits sat
    at chance for 7 epochs while training accuracy passed 0.99.

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: number of logits.
        width: filters of the first block.
        name: model name.

    Returns:
        A functional `keras.Model` from [0, 255] images to logits.

    Example:
    >>> compact_cnn((32, 32, 3), 10).output_shape
    (None, 10)
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Rescaling(1 / 255, name="pixels")(inputs)
    stride = 2 if max(input_shape[:2]) > 64 else 1
    for block, filters in enumerate((width, 2 * width, 4 * width)):
        x = keras.layers.Conv2D(
            filters,
            3,
            strides=stride if block == 0 else 1,
            padding="same",
            use_bias=False,
            name=f"conv{block + 1}",
        )(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{block + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{block + 1}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="classes")(x)
    return keras.Model(inputs, outputs, name=name)


def _pixel_scaling(backbone):
    """(scale, offset) taking [0, 255] pixels to what a keras.applications backbone expects."""
    class_name = APPLICATIONS.get(backbone, backbone) if isinstance(backbone, str) else ""
    if class_name.startswith(_BGR) and not class_name.startswith("ResNet50V2"):
        raise ValueError(
            f"backbone {backbone!r} expects caffe-style BGR inputs minus the ImageNet mean, which "
            "a phone runtime feeding RGB images cannot give it; choose mobilenet_v3_small, "
            "mobilenet_v2, efficientnet_b0, resnet50_v2 or another."
        )
    if class_name.startswith(_RAW):
        return 1.0, 0.0
    if class_name.startswith(_SYMMETRIC):
        return 1 / 127.5, -1.0
    return 1 / 255, 0.0


def build_classifier(input_shape, num_classes, backbone=None, weights=None):
    """A classifier from [0, 255] images: the built-in `compact_cnn`, or a backbone and a head.

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: number of classes.
        backbone: None (the built-in network, trained from scratch) or what
            `load_backbone` takes: a keras.applications name, a `.keras` file, a
            SavedModel or TF-Hub folder. A model from a file is fed [0, 1] pixels.
        weights: for keras.applications names: None, "imagenet" or a local file.

    Returns:
        `(model, backbone_model)`; `backbone_model` is None for the built-in network.

    Example:
    >>> model, _ = build_classifier((32, 32, 3), 10)
    >>> model.layers[1].name
    'pixels'
    """
    from keras_transfer.backbones import load_backbone

    if backbone in (None, BUILT_IN):
        if weights is not None:
            raise ValueError(
                f"weights={weights!r} needs a backbone; the built-in network trains from scratch."
            )
        return compact_cnn(input_shape, num_classes), None
    scale, offset = _pixel_scaling(backbone)
    features = load_backbone(backbone, input_shape=tuple(input_shape), weights=weights)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Rescaling(scale, offset, name="pixels")(inputs)
    x = features(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="classes")(x)
    return keras.Model(inputs, outputs, name="classifier"), features


AUGMENTATIONS = ("none", "shift", "full")


def default_augmentation(kind="shift", flip=False, seed=0):
    """Keras preprocessing layers for training batches (inactive at inference).

    "shift" moves images by up to 1/16 of their size; "full" adds rotations of up
    to 11 degrees and zooms of up to 10%. Measured on 2,400 MNIST-M images over 40
    epochs (seed 0, test / shifted-light accuracy): shifts 85.3 / 83.2, full 81.7 /
    78.3 (it had not fitted the training set yet), none 87.0 / 84.3; shifts cost
    nothing over none there, full 1.5x. Flips are off unless asked for: they turn
    digits, letters and signs into other things.

    Args:
        kind: "shift", "full" or "none" (then None is returned, or a flip alone).
        flip: add random horizontal flips.
        seed: the layers' seed.

    Returns:
        A `keras.Sequential` named "augmentation", or None.

    Example:
    >>> [layer.name for layer in default_augmentation("full", flip=True).layers]
    ['shift', 'rotate', 'zoom', 'flip']
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}; got {kind!r}.")
    layers = []
    if kind != "none":
        share = 1 / 16 if kind == "shift" else 0.1
        layers.append(
            keras.layers.RandomTranslation(
                share, share, fill_mode="nearest", seed=seed, name="shift"
            )
        )
    if kind == "full":
        layers += [
            keras.layers.RandomRotation(0.03, fill_mode="nearest", seed=seed + 1, name="rotate"),
            keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 2, name="zoom"),
        ]
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 3, name="flip"))
    return keras.Sequential(layers, name="augmentation") if layers else None


def with_probabilities(model):
    """`model` (logits out) followed by a softmax: the classifier a phone runs.

    Example:
    >>> with_probabilities(compact_cnn((8, 8, 1), 3)).layers[-1].name
    'probability'
    """
    probabilities = keras.layers.Softmax(name="probability")(model.outputs[0])
    return keras.Model(model.inputs, probabilities, name=model.name)
