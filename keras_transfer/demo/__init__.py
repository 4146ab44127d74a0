"""`keras-transfer demo`: the whole transfer chain on one screen, each stage beside its baseline.

A source model learns clean images with all their labels; the target domain
is the same classes under uneven light, with a few labelled images per class
and many unlabelled ones. The demo adapts the source network to the target
domain without labels (MMD; baseline: the source model as it is), fine-tunes
it on the few labels (baseline: the same network from scratch on them),
distils it into a small student on the unlabelled target images (baseline:
the student trained alone on the labels), exports the student as SavedModel
and TFLite (float32, int8 post-training and int8 quantization-aware; baseline:
the Keras student, then post-training int8), checks each file on held-out
target images, and writes a table (printed, JSON) and figures (PNG).

`run_demo` walks `STAGES`, one function per stage (run.py); a new capability
joins the demo as one more function there. The networks (networks.py) are a
leaf module that tests and benchmarks import.
"""

from keras_transfer.demo.adaptation import AdaptationResult  # noqa: F401
from keras_transfer.demo.adaptation import run_adaptation_stage  # noqa: F401
from keras_transfer.demo.exports import export_quantize_aware_stage  # noqa: F401
from keras_transfer.demo.exports import export_saved_model_stage  # noqa: F401
from keras_transfer.demo.exports import export_tflite_stage  # noqa: F401
from keras_transfer.demo.exports import plot_deployed_confusion  # noqa: F401
from keras_transfer.demo.networks import small_cnn  # noqa: F401
from keras_transfer.demo.networks import small_student  # noqa: F401
from keras_transfer.demo.progress import StageProgress  # noqa: F401
from keras_transfer.demo.report import DemoReport  # noqa: F401
from keras_transfer.demo.report import accuracy  # noqa: F401
from keras_transfer.demo.report import plot_report  # noqa: F401
from keras_transfer.demo.run import STAGES  # noqa: F401
from keras_transfer.demo.run import DemoRun  # noqa: F401
from keras_transfer.demo.run import run_demo  # noqa: F401
from keras_transfer.demo.settings import DemoSettings  # noqa: F401
from keras_transfer.demo.settings import StageResult  # noqa: F401
from keras_transfer.demo.settings import default_settings  # noqa: F401
from keras_transfer.demo.task import DATASETS  # noqa: F401
from keras_transfer.demo.task import TransferTask  # noqa: F401
from keras_transfer.demo.task import make_task  # noqa: F401
from keras_transfer.demo.training import distill_student  # noqa: F401
from keras_transfer.demo.training import fine_tune_on_target_labels  # noqa: F401
from keras_transfer.demo.training import train_source  # noqa: F401
from keras_transfer.demo.training import train_student_alone  # noqa: F401
from keras_transfer.demo.training import train_target_from_scratch  # noqa: F401
