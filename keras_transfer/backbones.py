"""load_backbone: a feature extractor from keras.applications, TF-Hub, a SavedModel or a Keras
model.
"""

import os

import keras

from keras_transfer._checks import require_keras_archive
from keras_transfer.hub import HubLayer
from keras_transfer.hub import resolve_handle

# Our snake_case names for the keras.applications constructors most used in transfer learning.
APPLICATIONS = {
    "mobilenet": "MobileNet",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_small": "MobileNetV3Small",
    "mobilenet_v3_large": "MobileNetV3Large",
    **{f"efficientnet_b{i}": f"EfficientNetB{i}" for i in range(8)},
    **{f"efficientnet_v2_b{i}": f"EfficientNetV2B{i}" for i in range(4)},
    "efficientnet_v2_s": "EfficientNetV2S",
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet50_v2": "ResNet50V2",
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "densenet121": "DenseNet121",
    "inception_v3": "InceptionV3",
    "xception": "Xception",
    "convnext_tiny": "ConvNeXtTiny",
    "nasnet_mobile": "NASNetMobile",
}


def load_backbone(spec, input_shape=None, weights=None, trainable=False, output_layer=None):
    """A Keras 3 model mapping inputs to features, from any of the usual sources.

    Args:
        spec: a keras.applications name (see `APPLICATIONS`, e.g.
            "mobilenet_v3_small", or the class name "MobileNetV3Small"), a
            TF-Hub URL or a local TF2 SavedModel folder, a `.keras` file
            (loaded in safe mode), or a `keras.Model`.
        input_shape: the input shape without the batch axis. Needed for
            SavedModels whose signature does not fix it; checked against
            Keras models.
        weights: for keras.applications names only: None (random), "imagenet"
            (downloads) or a local weights file.
        trainable: whether the backbone's weights train.
        output_layer: for Keras models and applications: the layer (name or
            index) whose output are the features. Default: the model's output
            (global-average-pooled for applications). A Keras model is copied,
            weights included, so freezing or training the backbone leaves the
            model it came from as it was.

    Returns:
        A `keras.Model`.

    Example:
    >>> backbone = load_backbone("mobilenet_v3_small", input_shape=(96, 96, 3))  # doctest: +SKIP
    >>> features = load_backbone(my_model, output_layer="pool")  # doctest: +SKIP
    """
    if isinstance(spec, keras.Model):
        _no_weights_argument(weights, "a Keras model")
        model = _cut(_copy(spec), output_layer, input_shape)
    elif isinstance(spec, (str, os.PathLike)):
        model = _from_string(os.fspath(spec), input_shape, weights, output_layer, trainable)
    else:
        raise TypeError(
            "spec must be a keras.applications name, a TF-Hub URL, a SavedModel folder, a .keras "
            f"file or a keras.Model; got {type(spec).__name__}."
        )
    model.trainable = bool(trainable)
    return model


def _from_string(spec, input_shape, weights, output_layer, trainable):
    application = APPLICATIONS.get(
        spec.lower(), spec if hasattr(keras.applications, spec) else None
    )
    if application is not None and callable(getattr(keras.applications, application, None)):
        return _cut(_application(application, input_shape, weights), output_layer, input_shape)
    if spec.endswith(".keras"):
        _no_weights_argument(weights, "a .keras file")
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"spec {spec!r}: no such .keras file.")
        require_keras_archive(spec, "spec")
        return _cut(
            keras.saving.load_model(spec, safe_mode=True, compile=False), output_layer, input_shape
        )
    if os.path.isdir(spec) or spec.startswith(("http://", "https://", "gs://")):
        _no_weights_argument(weights, "a SavedModel or TF-Hub module")
        if output_layer is not None:
            raise ValueError(
                "output_layer applies to Keras models; a SavedModel's output is its signature's."
            )
        return _hub_model(spec, input_shape, trainable)
    raise ValueError(
        f"spec={spec!r} is neither a known keras.applications name, an existing folder, a .keras "
        f"file nor a URL. Known names: {', '.join(sorted(APPLICATIONS))}."
    )


def _no_weights_argument(weights, kind):
    if weights is not None:
        raise ValueError(f"weights={weights!r} applies to keras.applications names, not to {kind}.")


def _application(class_name, input_shape, weights):
    path_given = weights not in (None, "imagenet")
    if path_given and not os.path.isfile(os.fspath(weights)):
        raise FileNotFoundError(
            f"weights file not found: {weights!r} (expected None, 'imagenet' or a file)."
        )
    constructor = getattr(keras.applications, class_name)
    try:
        model = constructor(
            include_top=False,
            weights=None if path_given else weights,
            input_shape=None if input_shape is None else tuple(input_shape),
            pooling="avg",
        )
    except ValueError as error:
        raise ValueError(
            f"input_shape={input_shape} cannot be taken by {class_name}: {error}"
        ) from error
    if path_given:
        model.load_weights(os.fspath(weights))
    return model


def _copy(model):
    """An independent copy of a functional or Sequential model (subclassed models are shared)."""
    if not getattr(model, "inputs", None):
        return model
    try:
        copy = keras.models.clone_model(model)
    except (ValueError, TypeError):
        return model
    copy.set_weights(model.get_weights())
    return copy


def _cut(model, output_layer, input_shape):
    if not getattr(model, "inputs", None):
        raise ValueError(
            f"model {model.name!r} has no defined input; call it on data or build it with "
            "keras.Input first."
        )
    if input_shape is not None:
        have = tuple(model.inputs[0].shape[1:])
        want = tuple(input_shape)
        if len(have) != len(want) or any(h is not None and h != w for h, w in zip(have, want)):
            raise ValueError(
                f"input_shape={want} does not fit model {model.name!r}, which takes {have}."
            )
    if output_layer is None:
        return model
    if isinstance(output_layer, int):
        if not -len(model.layers) <= output_layer < len(model.layers):
            raise ValueError(
                f"output_layer={output_layer} is out of range: the model has "
                f"{len(model.layers)} layers."
            )
        layer = model.layers[output_layer]
    else:
        names = [layer.name for layer in model.layers]
        if output_layer not in names:
            raise ValueError(
                f"output_layer={output_layer!r} is not a layer of {model.name!r}; layers: {names}."
            )
        layer = model.get_layer(output_layer)
    return keras.Model(model.inputs, layer.output, name=f"{model.name}_to_{layer.name}")


def _hub_model(handle, input_shape, trainable):
    layer = HubLayer(handle, trainable=trainable)
    if input_shape is None:
        input_shape = _signature_input_shape(layer)
    inputs = keras.Input(tuple(input_shape), name="inputs")
    name = os.path.basename(os.path.normpath(resolve_handle(handle))) or "hub"
    return keras.Model(inputs, layer(inputs), name=f"{_safe_name(name)}_backbone")


def _signature_input_shape(layer):
    for concrete in getattr(layer._function, "concrete_functions", [layer._function]):
        args, kwargs = concrete.structured_input_signature
        specs = [s for s in list(args) + list(kwargs.values()) if hasattr(s, "shape")]
        if specs and specs[0].shape.rank and all(d is not None for d in specs[0].shape[1:]):
            return tuple(specs[0].shape[1:])
    raise ValueError(
        f"input_shape is required: the module at {layer.handle!r} does not fix its input shape."
    )


def _safe_name(name):
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)
