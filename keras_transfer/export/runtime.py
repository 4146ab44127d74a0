"""Running a `.tflite` file: the LiteRT interpreter, quantized inputs and outputs handled."""

import os

import numpy as np


def load_tflite(path, num_threads=1, default_delegates=True):
    """Opens a `.tflite` file in the LiteRT interpreter, with tensors allocated.

    Args:
        path: the `.tflite` file.
        num_threads: CPU threads the interpreter may use.
        default_delegates: let LiteRT apply its default delegate (XNNPACK on
            CPU); False runs its builtin kernels only.

    Returns:
        An `ai_edge_litert.interpreter.Interpreter`.

    Example:
    >>> interpreter = load_tflite("export/student.tflite")  # doctest: +SKIP
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TFLite file not found: {path!r}.")
    resolver = (
        OpResolverType.AUTO
        if default_delegates
        else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    try:
        interpreter = Interpreter(
            model_path=path, num_threads=num_threads, experimental_op_resolver_type=resolver
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"{path!r} is not a valid TFLite model: {error}") from error
    return interpreter


def _quantization(detail):
    scale, zero_point = detail["quantization"]
    if detail["dtype"] in (np.float32, np.float16) or scale == 0:
        return None
    return (float(scale), int(zero_point))


def tflite_predict(path, x, batch_size=256, num_threads=1):
    """Runs a `.tflite` model on a batch, quantizing inputs and de-quantizing outputs.

    Args:
        path: the `.tflite` file (one input, one output).
        x: float inputs of shape (n, ...), as the Keras model takes them.
        batch_size: examples per interpreter call.
        num_threads: CPU threads for the interpreter.

    Returns:
        float32 numpy outputs of shape (n, ...), comparable with `model.predict(x)`.

    Example:
    >>> probabilities = tflite_predict("export/student_int8.tflite", x_test)  # doctest: +SKIP
    """
    interpreter = load_tflite(path, num_threads)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"{os.fspath(path)!r} has {len(inputs)} inputs and {len(outputs)} outputs; "
            "tflite_predict runs models with one of each (use load_tflite for others)."
        )
    inp = inputs[0]
    x = np.asarray(x, dtype="float32")
    if x.ndim != len(inp["shape"]) or tuple(x.shape[1:]) != tuple(inp["shape"][1:]):
        raise ValueError(
            f"x must have shape (n, {', '.join(str(d) for d in inp['shape'][1:])}) for "
            f"{os.fspath(path)!r}, got {x.shape}."
        )
    outputs = []
    current = None
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        if len(chunk) != current:
            interpreter.resize_tensor_input(inp["index"], [len(chunk), *inp["shape"][1:]])
            interpreter.allocate_tensors()
            inp = interpreter.get_input_details()[0]
            current = len(chunk)
        out = interpreter.get_output_details()[0]
        interpreter.set_tensor(inp["index"], _quantize(chunk, inp))
        interpreter.invoke()
        outputs.append(_dequantize(interpreter.get_tensor(out["index"]), out))
    return np.concatenate(outputs)


def _quantize(x, detail):
    quant = _quantization(detail)
    if quant is None:
        return x.astype(detail["dtype"])
    scale, zero_point = quant
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(y, detail):
    quant = _quantization(detail)
    if quant is None:
        return y.astype("float32")
    scale, zero_point = quant
    return ((y.astype("float32") - zero_point) * scale).astype("float32")
