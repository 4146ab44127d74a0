"""`benchmark_tflite`: per-inference latency of a `.tflite` file in the LiteRT interpreter."""

import dataclasses
import os

import numpy as np

from keras_transfer.export.runtime import load_tflite


@dataclasses.dataclass(frozen=True)
class LatencyReport:
    """Latency of single-example calls of a `.tflite` file, in milliseconds."""

    path: str
    threads: int
    runs: int
    median_ms: float
    p90_ms: float
    default_delegates: bool = True

    def __str__(self):
        kernels = "" if self.default_delegates else ", builtin kernels only"
        return (
            f"{os.path.basename(self.path)}: median {self.median_ms:.3f} ms, "
            f"p90 {self.p90_ms:.3f} ms ({self.runs} runs, {self.threads} thread(s){kernels})"
        )


def benchmark_tflite(path, threads=1, runs=200, warmup=20, example=None, default_delegates=True):
    """Times single-example `invoke()` calls of a `.tflite` file in the LiteRT interpreter.

    Args:
        path: the `.tflite` file.
        threads: interpreter threads.
        runs: timed calls; the median and 90th percentile are reported.
        warmup: untimed calls first.
        example: one input (without batch axis) in the file's input dtype;
            default random values of the right shape and dtype.
        default_delegates: time with LiteRT's default CPU delegate (XNNPACK),
            as an app gets it; False times the builtin kernels alone.

    Returns:
        A `LatencyReport`.

    Example:
    >>> print(benchmark_tflite("export/student_int8.tflite"))  # doctest: +SKIP
    """
    import time

    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}.")
    interpreter = load_tflite(path, num_threads=threads, default_delegates=default_delegates)
    detail = interpreter.get_input_details()[0]
    shape = [1, *detail["shape"][1:]]
    if list(detail["shape"]) != shape:
        interpreter.resize_tensor_input(detail["index"], shape)
        interpreter.allocate_tensors()
    if example is None:
        rng = np.random.default_rng(0)
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            example = rng.uniform(0, 1, shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            example = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    else:
        example = np.asarray(example, dtype=detail["dtype"]).reshape(shape)
    interpreter.set_tensor(detail["index"], example)
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
    return LatencyReport(
        path=os.fspath(path),
        threads=threads,
        runs=runs,
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        default_delegates=default_delegates,
    )
