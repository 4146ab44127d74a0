#!/usr/bin/env python3
"""Run a .tflite model on a phone-class board: LiteRT and numpy only, no TensorFlow.

    python run_tflite.py MODEL.tflite INPUT.npy|INPUT.npz [--threads N] [--runs N] [--key x]

INPUT holds float inputs shaped like the Keras model's (n, ...): a .npy array,
or a .npz with the array under --key (default "x") and, optionally, integer
labels under "y" for accuracy. Integer models get their inputs quantized and
their outputs de-quantized with the scales stored in the file. Prints the top-1
class of the first examples, accuracy when labels are given, and the median
single-example latency over --runs calls.

This file is self-contained on purpose: copy it to the board beside the model.
"""

import argparse
import os
import sys
import time

import numpy as np

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("run_tflite.py needs the LiteRT interpreter: pip install ai-edge-litert numpy")


def load_inputs(path, key):
    if not os.path.isfile(path):
        raise SystemExit(f"error: INPUT file not found: {path}")
    if not path.endswith((".npy", ".npz")):
        raise SystemExit(f"error: INPUT must be a .npy or .npz file, got {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if path.endswith(".npy"):
            return loaded, None
        with loaded as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as error:  # zipfile, OS and format errors all mean the same here
        raise SystemExit(f"error: {path} is not a readable {path[-4:]} file of arrays: {error}")
    if key not in arrays:
        raise SystemExit(f"error: {path} has no array {key!r}; it has {sorted(arrays)}")
    return arrays[key], arrays.get("y")


def open_model(path, threads):
    if not os.path.isfile(path):
        raise SystemExit(f"error: MODEL file not found: {path}")
    try:
        interpreter = Interpreter(model_path=path, num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise SystemExit(f"error: {path} is not a valid TFLite model: {error}")
    return interpreter


def quantization_of(detail):
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f" or scale == 0:
        return None
    return scale, zero_point


def to_model_dtype(x, detail):
    quantization = quantization_of(detail)
    if quantization is None:
        return x.astype(detail["dtype"])
    scale, zero_point = quantization
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def from_model_dtype(y, detail):
    quantization = quantization_of(detail)
    if quantization is None:
        return y.astype(np.float32)
    scale, zero_point = quantization
    return (y.astype(np.float32) - zero_point) * scale


def predict(interpreter, x):
    source = interpreter.get_input_details()[0]
    if tuple(x.shape[1:]) != tuple(source["shape"][1:]):
        raise SystemExit(
            f"error: inputs have shape {x.shape}, the model takes (n, "
            f"{', '.join(str(d) for d in source['shape'][1:])})"
        )
    interpreter.resize_tensor_input(source["index"], [len(x), *source["shape"][1:]])
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    interpreter.set_tensor(source["index"], to_model_dtype(x.astype(np.float32), source))
    interpreter.invoke()
    return from_model_dtype(interpreter.get_tensor(target["index"]), target)


def median_latency_ms(interpreter, example, runs):
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], [1, *source["shape"][1:]])
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    interpreter.set_tensor(
        source["index"], to_model_dtype(example[None].astype(np.float32), source)
    )
    for _ in range(min(10, runs)):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the .tflite file")
    parser.add_argument("inputs", help=".npy inputs, or .npz with inputs (and labels 'y')")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument("--runs", type=int, default=100, help="timed single-example calls")
    parser.add_argument("--key", default="x", help="array name of the inputs in a .npz")
    parser.add_argument("--show", type=int, default=10, help="predictions to print")
    args = parser.parse_args(argv)

    x, y = load_inputs(args.inputs, args.key)
    if x.ndim < 2 or len(x) == 0:
        raise SystemExit(f"error: inputs must be a non-empty batch (n, ...), got shape {x.shape}")
    interpreter = open_model(args.model, args.threads)
    scores = predict(interpreter, x)
    classes = scores.argmax(axis=-1)
    print(f"model: {args.model}")
    print(f"examples: {len(x)}")
    print(f"predictions (first {min(args.show, len(x))}): {classes[: args.show].tolist()}")
    if y is not None:
        print(f"accuracy: {float(np.mean(classes == np.asarray(y).reshape(-1))):.4f}")
    latency = median_latency_ms(interpreter, x[0], args.runs)
    print(
        f"median latency: {latency:.3f} ms per example ({args.threads} thread(s), {args.runs} runs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
