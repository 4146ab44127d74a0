"""The first release's path of the demo's adaptation stage: now `keras_transfer.demo.adaptation`."""

from keras_transfer.datasets import uneven_light  # noqa: F401
from keras_transfer.demo.adaptation import AdaptationResult  # noqa: F401
from keras_transfer.demo.adaptation import run_adaptation_stage  # noqa: F401
