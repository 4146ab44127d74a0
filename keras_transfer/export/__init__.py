"""Export of Keras 3 models for serving and for phones, one concept a module.

- convert.py: `export_saved_model`, `export_tflite` (float32, dynamic, float16, int8),
  `ExportReport`.
- runtime.py: `load_tflite`, `tflite_predict`: a `.tflite` file in the LiteRT interpreter.
- parity.py: `compare`, `ParityReport`: how the file predicts against the Keras model.
- latency.py: `benchmark_tflite`, `LatencyReport`.
"""

from keras_transfer.export.convert import QUANTIZATIONS  # noqa: F401
from keras_transfer.export.convert import ExportReport  # noqa: F401
from keras_transfer.export.convert import export_saved_model  # noqa: F401
from keras_transfer.export.convert import export_tflite  # noqa: F401
from keras_transfer.export.latency import LatencyReport  # noqa: F401
from keras_transfer.export.latency import benchmark_tflite  # noqa: F401
from keras_transfer.export.parity import ParityReport  # noqa: F401
from keras_transfer.export.parity import compare  # noqa: F401
from keras_transfer.export.runtime import load_tflite  # noqa: F401
from keras_transfer.export.runtime import tflite_predict  # noqa: F401
