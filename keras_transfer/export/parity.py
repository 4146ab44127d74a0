"""`compare`: how far a `.tflite` file's predictions are from the Keras model's."""

import dataclasses
import warnings

import numpy as np

from keras_transfer.export.runtime import tflite_predict


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """How a `.tflite` file's predictions compare with the model it came from.

    `max_abs_diff` is between de-quantized TFLite outputs and Keras outputs;
    the accuracies are None when no labels were given.
    """

    examples: int
    agreement: float
    max_abs_diff: float
    tflite_accuracy: float = None
    keras_accuracy: float = None

    def __str__(self):
        line = (
            f"{self.examples} examples: top-1 agreement {self.agreement:.4f}, "
            f"max abs diff {self.max_abs_diff:.3g}"
        )
        if self.tflite_accuracy is not None:
            line += (
                f", accuracy tflite {self.tflite_accuracy:.4f} vs keras {self.keras_accuracy:.4f}"
            )
        return line


UNRELATED_AGREEMENT = 0.5  # even int8 files agree with their model on 0.98 or more here


def compare(tflite_path, keras_model, data, batch_size=256):
    """Runs a `.tflite` file and its Keras model on the same data and compares them.

    Args:
        tflite_path: the exported file, run in the LiteRT interpreter.
        keras_model: the model it was exported from (Keras 3, or a quantize-aware model).
        data: inputs `x`, or `(x, y)` with integer labels for accuracies.
        batch_size: examples per call on both sides.

    Returns:
        A `ParityReport`.

    Example:
    >>> print(compare("export/student_int8.tflite", student, (x_test, y_test)))  # doctest: +SKIP
    1000 examples: top-1 agreement 0.9990, max abs diff 0.0712, accuracy tflite ...
    """
    x, y = data if isinstance(data, (tuple, list)) and len(data) == 2 else (data, None)
    x = np.asarray(x, dtype="float32")
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("data holds no examples; expected inputs x or (x, y).")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(x),):
            raise ValueError(f"labels must have shape ({len(x)},), got {y.shape}.")
    tflite_outputs = tflite_predict(tflite_path, x, batch_size=batch_size)
    keras_outputs = np.asarray(keras_model.predict(x, batch_size=batch_size, verbose=0))
    if tflite_outputs.shape != keras_outputs.shape:
        raise ValueError(
            f"The .tflite outputs have shape {tflite_outputs.shape} and the Keras model's "
            f"{keras_outputs.shape}: is keras_model the model this file came from?"
        )
    tflite_top1 = np.argmax(tflite_outputs, -1)
    keras_top1 = np.argmax(keras_outputs, -1)
    agreement = float(np.mean(tflite_top1 == keras_top1))
    if agreement < UNRELATED_AGREEMENT:
        warnings.warn(
            f"The .tflite file and keras_model agree on the top class of only {agreement:.0%} "
            "of the inputs; an export of a model agrees on nearly all: is keras_model the "
            "model this file came from?",
            stacklevel=2,
        )
    return ParityReport(
        examples=len(x),
        agreement=agreement,
        max_abs_diff=float(np.max(np.abs(tflite_outputs - keras_outputs))),
        tflite_accuracy=None if y is None else float(np.mean(tflite_top1 == y)),
        keras_accuracy=None if y is None else float(np.mean(keras_top1 == y)),
    )
