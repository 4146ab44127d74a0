"""Conversion of Keras 3 models to a serving SavedModel and to TFLite for phones.

Conversion goes through a SavedModel written by `model.export()`: converting a
Keras 3 call with `from_concrete_functions` gave NaN outputs here. Edge files
use builtin TFLite ops only, so they run on the plain LiteRT interpreter.
Every write goes to a temporary path beside the target and is renamed into
place; an existing target is replaced only with `overwrite=True`.
"""

import dataclasses
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_transfer._checks import require_finite
from keras_transfer._checks import warn_about_images
from keras_transfer._files import check_target
from keras_transfer._files import replace_path
from keras_transfer._files import staging_dir
from keras_transfer.export.runtime import _quantization
from keras_transfer.export.runtime import load_tflite

QUANTIZATIONS = ("none", "dynamic", "float16", "int8")
_CALIBRATION_SAMPLES = 200


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What an export wrote: where, how big, and the tensors a runtime sees.

    `input_quantization` and `output_quantization` are `(scale, zero_point)`
    for integer tensors and None for float ones.
    """

    path: str
    format: str
    size_bytes: int
    quantization: str = "none"
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    input_quantization: tuple = None
    output_quantization: tuple = None

    def __str__(self):
        def io(name, dtype, quant):
            if quant is None:
                return f"{name} {dtype}"
            return f"{name} {dtype} (scale {quant[0]:.6g}, zero point {quant[1]})"

        return (
            f"{self.format} [{self.quantization}] {self.path}: {self.size_bytes / 1024:.1f} KiB, "
            f"{io('input', self.input_dtype, self.input_quantization)}, "
            f"{io('output', self.output_dtype, self.output_quantization)}"
        )


def export_saved_model(model, path, overwrite=False):
    """Writes a serving SavedModel (signature `serving_default`, endpoint `serve`).

    Args:
        model: a built Keras 3 model.
        path: the folder to create.
        overwrite: replace a SavedModel folder at `path` (a folder that is not a
            SavedModel, or holds other files, is never replaced).

    Returns:
        An `ExportReport`. `tf.saved_model.load(path).serve(x)` gives the model's outputs.

    Example:
    >>> report = export_saved_model(model, "export/student")  # doctest: +SKIP
    """
    _check_model(model)
    path = check_target(path, overwrite, "saved_model")
    with staging_dir(path) as staging:
        saved = os.path.join(staging, "saved_model")
        _write_saved_model(model, saved)
        replace_path(saved, path, overwrite, "saved_model")
    return ExportReport(path=path, format="saved_model", size_bytes=_size_of(path))


def export_tflite(
    model,
    path,
    quantization=None,
    representative_data=None,
    int8_io=True,
    overwrite=False,
):
    """Converts a Keras 3 model to a `.tflite` file of builtin ops.

    Args:
        model: a built Keras 3 model with one input, or a `quantize_aware()`
            model after training (exported as int8 with its learnt ranges).
        path: the `.tflite` file to write.
        quantization: None or "none" (float32), "dynamic" (int8 weights, float
            activations), "float16" (float16 weights) or "int8" (integer weights
            and activations, calibrated on `representative_data`, which a
            quantization-aware model does not need).
        representative_data: inputs for int8 calibration: an array, an
            `(x, y)` pair, or a `tf.data.Dataset` of inputs or `(x, y)` batches.
            The first 200 examples are used.
        int8_io: with "int8", make the input and output tensors int8 too (what
            integer-only accelerators need); otherwise they stay float32.
        overwrite: replace a `.tflite` model at `path` (anything else there is never
            replaced).

    Returns:
        An `ExportReport` with size, dtypes and input/output quantization.

    Example:
    >>> report = export_tflite(model, "export/student_int8.tflite",
    ...                        quantization="int8", representative_data=x_train)  # doctest: +SKIP
    """
    quantization = "none" if quantization is None else quantization
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"quantization must be one of {QUANTIZATIONS} or None, got {quantization!r}."
        )
    _check_model(model)
    calibration = None
    quantize_aware = _is_quantize_aware(model)
    if quantize_aware and quantization != "int8":
        raise ValueError(
            f"A quantization-aware model exports as int8; got quantization={quantization!r}."
        )
    if quantization == "int8" and not quantize_aware:
        if len(model.inputs) != 1:
            raise ValueError(
                f"int8 export takes a model with one input; this one has {len(model.inputs)}."
            )
        if representative_data is None:
            raise ValueError(
                "quantization='int8' needs representative_data: a few hundred typical "
                "inputs to calibrate activation ranges."
            )
        calibration = _calibration_examples(representative_data, model.inputs[0].shape)
        warn_about_images(calibration, "representative_data", model)
    path = check_target(path, overwrite, "tflite")
    with staging_dir(path) as staging:
        if quantize_aware:
            # Ranges come from training; the SavedModel route would ask for calibration data.
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            _configure_quantize_aware(converter, int8_io)
        else:
            saved = os.path.join(staging, "saved_model")
            _write_saved_model(model, saved)
            converter = tf.lite.TFLiteConverter.from_saved_model(saved)
            _configure(converter, quantization, calibration, int8_io)
        with warnings.catch_warnings():
            # QAT models carry their input ranges, so the converter's note that
            # input statistics were "expected, but not specified" does not apply.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            flatbuffer = converter.convert()
        staged_file = os.path.join(staging, "model.tflite")
        with open(staged_file, "wb") as f:
            f.write(flatbuffer)
        report = _describe_tflite(staged_file, quantization)
        replace_path(staged_file, path, overwrite, "tflite")
    return dataclasses.replace(report, path=path)


def _write_saved_model(model, path):
    # A single-input model is served on a plain tensor, whether it was built from
    # `inputs=x` or `inputs=[x]`; Keras would otherwise keep the list in the signature.
    signature = None
    if len(model.inputs) == 1:
        (tensor,) = model.inputs
        signature = [tf.TensorSpec(tensor.shape, tensor.dtype, name=_input_name(tensor))]
    model.export(path, format="tf_saved_model", verbose=False, input_signature=signature)


def _input_name(tensor):
    name = getattr(tensor, "name", None) or "input"
    return name.split(":")[0].replace("/", "_")


def _configure(converter, quantization, calibration, int8_io):
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "none":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: ([x[None]] for x in calibration)
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8


def _configure_quantize_aware(converter, int8_io):
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


def _is_quantize_aware(model):
    from keras_transfer.quantize import is_tf_keras_model

    return is_tf_keras_model(model) and any(
        type(layer).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")
        for layer in model.layers
    )


def _calibration_examples(data, input_shape):
    if isinstance(data, tf.data.Dataset):
        batches = []
        count = 0
        for batch in data:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            x = np.asarray(x)
            if x.ndim == len(input_shape) - 1:
                x = x[None]
            batches.append(x)
            count += len(x)
            if count >= _CALIBRATION_SAMPLES:
                break
        if not batches:
            raise ValueError("representative_data is an empty dataset; expected typical inputs.")
        examples = np.concatenate(batches)
    else:
        if isinstance(data, (tuple, list)) and len(data) == 2:
            data = data[0]
        examples = np.asarray(data)
    expected = tuple(input_shape[1:])
    if (
        examples.ndim != len(input_shape)
        or len(examples) == 0
        or any(want is not None and got != want for got, want in zip(examples.shape[1:], expected))
    ):
        raise ValueError(
            f"representative_data must be a non-empty batch of model inputs of shape "
            f"(n, {', '.join(str(d) for d in expected)}), got {examples.shape}."
        )
    return require_finite(examples[:_CALIBRATION_SAMPLES].astype("float32"), "representative_data")


def _check_model(model):
    if _is_quantize_aware(model):
        return
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"model must be a keras.Model or a quantize_aware() model, got {type(model).__name__}."
        )
    try:
        model.inputs
    except (AttributeError, ValueError):
        model_inputs = None
    else:
        model_inputs = model.inputs
    if not model.built or not model_inputs:
        raise ValueError(
            "model must be built with a known input shape before export: start it "
            "with keras.Input(shape=...) or call it once on a batch."
        )
    broken = [
        w.path for w in model.weights if not np.all(np.isfinite(keras.ops.convert_to_numpy(w)))
    ]
    if broken:
        raise ValueError(
            f"model has weights that are NaN or inf ({broken[:3]}): training diverged; "
            "export a model from before the divergence."
        )


def _describe_tflite(path, quantization):
    interpreter = load_tflite(path)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    return ExportReport(
        path=path,
        format="tflite",
        size_bytes=os.path.getsize(path),
        quantization=quantization,
        input_dtype=np.dtype(inp["dtype"]).name,
        output_dtype=np.dtype(out["dtype"]).name,
        input_quantization=_quantization(inp),
        output_quantization=_quantization(out),
    )


def _size_of(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )
