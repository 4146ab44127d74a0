"""Quantization-aware training for Keras 3 models through tensorflow-model-optimization.

tfmot accepts only Keras 2 (`tf_keras`) models (tensorflow/model-optimization
issues 1119 and 1270). `to_tf_keras` rebuilds a Keras 3 functional or
Sequential model layer by layer in tf_keras from its public config and copies
the weights, then checks that both give the same outputs. `quantize_aware`
wraps the result with tfmot's fake-quant layers; `export_tflite` turns it into
an int8 file whose ranges come from training, so it needs no calibration data.

Measured on the digits CNN of the demo: the rebuilt model's outputs equal the
Keras 3 model's to 0.0, and three QAT epochs reach the float model's accuracy.

tfmot and tf_keras are imported here only, on first use: importing tfmot sets
`TF_USE_LEGACY_KERAS=1`, which this module undoes so that child processes and
later `tf.keras` look-ups keep Keras 3.
"""

import inspect
import os

import keras
import numpy as np

SUPPORTED_LAYERS = (
    "InputLayer",
    "Conv2D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "Conv1D",
    "Dense",
    "BatchNormalization",
    "Activation",
    "ReLU",
    "Softmax",
    "LeakyReLU",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "MaxPooling1D",
    "AveragePooling1D",
    "GlobalAveragePooling1D",
    "Add",
    "Multiply",
    "Concatenate",
    "Flatten",
    "Reshape",
    "Dropout",
    "ZeroPadding2D",
    "Rescaling",
)
_BASE_KEYS = {"name", "dtype", "trainable"}
_TOLERANCE = 1e-4


def _import_tf_keras():
    import tf_keras

    return tf_keras


def _import_tfmot():
    previous = os.environ.get("TF_USE_LEGACY_KERAS")
    import tensorflow_model_optimization as tfmot

    if previous is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = previous
    return tfmot


def is_tf_keras_model(model):
    """Whether `model` is a Keras 2 (`tf_keras`) model, such as `quantize_aware`'s result."""
    return any(cls.__module__.startswith("tf_keras") for cls in type(model).__mro__)


def unsupported_layers(model):
    """Names and classes of the layers `to_tf_keras` cannot rebuild; empty when all can."""
    found = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in SUPPORTED_LAYERS or getattr(layer, "lora_enabled", False):
            found.append(
                f"{layer.name} ({kind}{', LoRA enabled' if kind in SUPPORTED_LAYERS else ''})"
            )
        elif _dtype_name(layer.get_config().get("dtype")) != "float32":
            found.append(f"{layer.name} ({kind}, dtype {_dtype_name(layer.get_config()['dtype'])})")
    return found


def _dtype_name(dtype):
    if isinstance(dtype, dict):
        return dtype.get("config", {}).get("name")
    return dtype or "float32"


def _check_translatable(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model (Keras 3), got {type(model).__name__}.")
    if not isinstance(model, keras.Sequential) and "layers" not in model.get_config():
        raise ValueError(
            f"model must be functional or Sequential to rebuild in tf_keras; "
            f"{type(model).__name__} is a subclassed model."
        )
    unsupported = unsupported_layers(model)
    if unsupported:
        raise ValueError(
            "These layers are not supported for quantization-aware training: "
            + ", ".join(unsupported)
            + f". Supported: {', '.join(SUPPORTED_LAYERS)} (float32, LoRA merged)."
        )


def _legacy_layer(tf_keras, class_name, config):
    cls = getattr(tf_keras.layers, class_name)
    allowed = set(inspect.signature(cls.__init__).parameters) | _BASE_KEYS
    kept = {}
    for key, value in config.items():
        # Weights are copied afterwards, so initializers (whose Keras 3 configs
        # carry keys tf_keras does not know) are not needed.
        if key not in allowed or key.endswith("_initializer"):
            continue
        if key == "dtype":
            value = _dtype_name(value)
        elif isinstance(value, dict) and "class_name" in value:
            value = {"class_name": value["class_name"], "config": value.get("config", {})}
        kept[key] = value
    return cls(**kept)


def _legacy_input(tf_keras, config):
    batch_shape = config.get("batch_shape") or config.get("batch_input_shape")
    return tf_keras.Input(
        shape=tuple(batch_shape[1:]),
        batch_size=batch_shape[0],
        name=config["name"],
        dtype=_dtype_name(config.get("dtype")),
    )


def _as_list(references):
    return references if references and isinstance(references[0], list) else [references]


def _rebuild_functional(tf_keras, model):
    config = model.get_config()
    tensors = {}
    layers = {}
    pending = list(config["layers"])
    while pending:
        progressed = []
        for layer_config in pending:
            if _call_layer(tf_keras, layer_config, tensors, layers):
                progressed.append(layer_config["name"])
        if not progressed:
            raise ValueError(
                "Could not order the layers of the model: " + ", ".join(c["name"] for c in pending)
            )
        pending = [c for c in pending if c["name"] not in progressed]
    inputs = [tensors[tuple(ref)] for ref in _as_list(config["input_layers"])]
    outputs = [tensors[tuple(ref)] for ref in _as_list(config["output_layers"])]
    rebuilt = tf_keras.Model(
        inputs if len(inputs) > 1 else inputs[0],
        outputs if len(outputs) > 1 else outputs[0],
        name=model.name,
    )
    return rebuilt, layers


def _call_layer(tf_keras, layer_config, tensors, layers):
    """Rebuilds one layer and applies it to every input it had; False if inputs are not ready."""
    name = layer_config["name"]
    if layer_config["class_name"] == "InputLayer":
        tensors[(name, 0, 0)] = _legacy_input(tf_keras, layer_config["config"])
        return True
    nodes = layer_config.get("inbound_nodes", [])

    def resolve(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            return tensors[tuple(value["config"]["keras_history"])]
        if isinstance(value, (list, tuple)):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    try:
        calls = [(resolve(node["args"]), resolve(node.get("kwargs", {}))) for node in nodes]
    except KeyError:
        return False
    layer = _legacy_layer(tf_keras, layer_config["class_name"], layer_config["config"])
    for node_index, (args, kwargs) in enumerate(calls):
        outputs = layer(*args, **kwargs)
        for tensor_index, tensor in enumerate(outputs if isinstance(outputs, list) else [outputs]):
            tensors[(name, node_index, tensor_index)] = tensor
    layers[name] = layer
    return True


def _rebuild_sequential(tf_keras, model):
    shape = model.inputs[0].shape
    x = inputs = tf_keras.Input(shape=tuple(shape[1:]), name=model.inputs[0].name.split(":")[0])
    layers = {}
    for layer in model.layers:
        legacy = _legacy_layer(tf_keras, type(layer).__name__, layer.get_config())
        x = legacy(x)
        layers[layer.name] = legacy
    return tf_keras.Model(inputs, x, name=model.name), layers


def to_tf_keras(model):
    """Rebuilds a Keras 3 functional or Sequential model in tf_keras, weights included.

    Args:
        model: a built Keras 3 model made of `SUPPORTED_LAYERS`.

    Returns:
        A `tf_keras.Model` whose outputs equal `model`'s (checked on a random batch).

    Example:
    >>> legacy = to_tf_keras(student)  # doctest: +SKIP
    """
    _check_translatable(model)
    tf_keras = _import_tf_keras()
    if isinstance(model, keras.Sequential):
        rebuilt, layers = _rebuild_sequential(tf_keras, model)
    else:
        rebuilt, layers = _rebuild_functional(tf_keras, model)
    for layer in model.layers:
        if layer.name in layers:
            layers[layer.name].set_weights(layer.get_weights())
    _check_same_outputs(model, rebuilt)
    return rebuilt


def _check_same_outputs(model, rebuilt):
    rng = np.random.default_rng(0)
    batch = [rng.uniform(0, 1, (4, *tensor.shape[1:])).astype("float32") for tensor in model.inputs]
    batch = batch if len(batch) > 1 else batch[0]
    expected = model.predict(batch, verbose=0)
    got = rebuilt.predict(batch, verbose=0)
    for want, have in zip(_flat(expected), _flat(got)):
        gap = float(np.max(np.abs(np.asarray(want) - np.asarray(have))))
        if gap > _TOLERANCE * max(1.0, float(np.max(np.abs(want)))):
            raise RuntimeError(
                f"The tf_keras rebuild of {model.name!r} differs from it by {gap:.3g}; "
                "please report this model's layers."
            )


def _flat(outputs):
    return outputs if isinstance(outputs, (list, tuple)) else [outputs]


def quantize_aware(model, calibration_data=None, batch_size=256):
    """Makes a quantization-aware copy of a Keras 3 model for int8 deployment.

    The copy is a tf_keras model with fake-quant layers (tensorflow-model-
    optimization's default 8-bit scheme). Compile and fit it as usual, with
    tf_keras optimizers or optimizer names (a Keras 3 optimizer object does not
    drive a tf_keras model); then `export_tflite(qat_model, path,
    quantization="int8")` writes an int8 file with the ranges learnt in
    training.

    tfmot starts every activation range at [-6, 6] and moves it by an
    exponential average with decay 0.999, so a short QAT run (a few hundred
    steps) keeps ranges near that guess: logits above 6 are clipped and tie.
    `calibration_data` starts each range at the float model's observed
    [min, max] instead (weight ranges are set by the first training step).

    Args:
        model: a built Keras 3 functional or Sequential model made of
            `SUPPORTED_LAYERS`; unsupported layers are listed in the error.
        calibration_data: optional array of inputs (a few hundred typical
            images) to initialise the activation ranges from.
        batch_size: batch size for the calibration pass.

    Returns:
        A `tf_keras.Model` ready to compile and train.

    Example:
    >>> qat = quantize_aware(student, calibration_data=x_train[:500])  # doctest: +SKIP
    >>> qat.compile("adam", "sparse_categorical_crossentropy")  # doctest: +SKIP
    >>> qat.fit(x_train, y_train, epochs=2)  # doctest: +SKIP
    >>> export_tflite(qat, "student_qat.tflite", quantization="int8")  # doctest: +SKIP
    """
    if calibration_data is not None:
        calibration_data = np.asarray(calibration_data, dtype="float32")
        if calibration_data.size == 0:
            raise ValueError(
                "calibration_data is empty; pass a few hundred typical inputs or None."
            )
    legacy = to_tf_keras(model)
    tfmot = _import_tfmot()
    qat = tfmot.quantization.keras.quantize_model(legacy)
    if calibration_data is not None:
        calibrate_activation_ranges(qat, legacy, calibration_data, batch_size)
    return qat


def calibrate_activation_ranges(qat, float_model, data, batch_size=256):
    """Sets the activation ranges of a tfmot QAT model to the float model's observed ranges.

    Each `quant_<name>` wrapper tracks the output of layer `<name>`; a
    `QuantizeLayer` tracks its input. Ranges always include 0, as TFLite needs.

    Args:
        qat: the model `quantize_model` made from `float_model`.
        float_model: the tf_keras float model (same layer names).
        data: calibration inputs.
        batch_size: batch size of the pass.

    Returns:
        A dict {variable name: value set}.
    """
    tracked = {}
    for layer in qat.layers:
        source = _tracked_layer_name(layer)
        if source is not None:
            tracked[layer.name] = source
    names = sorted(set(tracked.values()) - {"<input>"})
    probe = (
        type(float_model)(float_model.inputs, [float_model.get_layer(n).output for n in names])
        if names
        else None
    )
    ranges = {"<input>": (float(np.min(data)), float(np.max(data)))}
    if probe is not None:
        outputs = probe.predict(data, batch_size=batch_size, verbose=0)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        for name, values in zip(names, outputs):
            ranges[name] = (float(np.min(values)), float(np.max(values)))
    assigned = {}
    for layer in qat.layers:
        if layer.name not in tracked:
            continue
        low, high = ranges[tracked[layer.name]]
        for variable, end in _range_variables(layer):
            value = min(low, 0.0) if end == "min" else max(high, 0.0)
            variable.assign(value)
            assigned[variable.name] = value
    return assigned


_WRAPPER_RANGES = {"post_activation_min", "post_activation_max", "output_min", "output_max"}


def _range_variables(layer):
    """(variable, "min" | "max") of a QAT layer's activation range, not its weight ranges.

    A QuantizeLayer's variables take the layer's name, which tf_keras numbers
    (quantize_layer_1/quantize_layer_1_min); a wrapper's have fixed names.
    """
    quantize_layer = type(layer).__name__ == "QuantizeLayer"
    for variable in layer.non_trainable_weights:
        short = variable.name.split("/")[-1].split(":")[0]
        if (quantize_layer and short.endswith(("_min", "_max"))) or short in _WRAPPER_RANGES:
            yield variable, short[-3:]


def _tracked_layer_name(layer):
    """Which float layer's output a QAT layer's activation range covers, or None."""
    kind = type(layer).__name__
    if kind == "QuantizeWrapperV2" or kind == "QuantizeWrapper":
        return layer.layer.name
    if kind == "QuantizeLayer":
        inbound = layer.inbound_nodes[0].inbound_layers
        inbound = inbound[0] if isinstance(inbound, list) else inbound
        if type(inbound).__name__ == "InputLayer":
            return "<input>"
        return (
            _tracked_layer_name(inbound)
            if type(inbound).__name__.startswith("Quantize")
            else inbound.name
        )
    return None
