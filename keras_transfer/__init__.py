"""keras-transfer: transfer learning for Keras 3 on TensorFlow.

Fine-tuning, distillation, domain adaptation and export of small models, each as
a Keras layer, loss, callback or model that works inside `compile()` / `fit()`.
"""

import os as _os
import sys as _sys

# The `keras-transfer` command (or `python -m keras_transfer.cli`, during whose import argv[0] is
# "-m") imports this package, and so TensorFlow, before its main() runs: TensorFlow's C++ start-up
# lines are silenced here for it (unless -v), not for library users. TensorFlow 2.21 writes some
# before absl's logging starts, whatever TF_CPP_MIN_LOG_LEVEL says, so its import runs with file
# descriptor 2 closed off.
_COMMAND = _os.path.basename(_sys.argv[0]) == "keras-transfer" or _sys.argv[0] == "-m"
if _COMMAND and not {"-v", "--verbose"} & set(_sys.argv):
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from keras_transfer._quiet import native_stderr_silenced as _silenced

    with _silenced():
        import tensorflow as _tensorflow  # noqa: F401

from keras_transfer._engine import require_tensorflow_backend  # noqa: E402

require_tensorflow_backend()

from keras_transfer import adapt  # noqa: E402
from keras_transfer import images  # noqa: E402
from keras_transfer.backbones import load_backbone  # noqa: E402
from keras_transfer.callbacks import NonFiniteLoss  # noqa: E402
from keras_transfer.datasets import load_digits  # noqa: E402
from keras_transfer.datasets import load_fashion_mnist  # noqa: E402
from keras_transfer.datasets import load_mnist  # noqa: E402
from keras_transfer.datasets import load_mnist_m  # noqa: E402
from keras_transfer.datasets import load_usps  # noqa: E402
from keras_transfer.datasets import resize_images  # noqa: E402
from keras_transfer.datasets import to_common_shape  # noqa: E402
from keras_transfer.distill import DistillationSchedule  # noqa: E402
from keras_transfer.distill import Distiller  # noqa: E402
from keras_transfer.distill import kl_distillation_loss  # noqa: E402
from keras_transfer.distill import mse_distillation_loss  # noqa: E402
from keras_transfer.distill import saved_model_teacher  # noqa: E402
from keras_transfer.distill.quantize_aware import distill_quantize_aware  # noqa: E402
from keras_transfer.domains import domain_pairs  # noqa: E402
from keras_transfer.evaluation import classification_report  # noqa: E402
from keras_transfer.evaluation import plot_confusion_matrix  # noqa: E402
from keras_transfer.evaluation import plot_domain_embedding  # noqa: E402
from keras_transfer.evaluation import plot_history  # noqa: E402
from keras_transfer.export import ExportReport  # noqa: E402
from keras_transfer.export import LatencyReport  # noqa: E402
from keras_transfer.export import ParityReport  # noqa: E402
from keras_transfer.export import benchmark_tflite  # noqa: E402
from keras_transfer.export import compare  # noqa: E402
from keras_transfer.export import export_saved_model  # noqa: E402
from keras_transfer.export import export_tflite  # noqa: E402
from keras_transfer.export import tflite_predict  # noqa: E402
from keras_transfer.features import extract_features  # noqa: E402
from keras_transfer.features import stack  # noqa: E402
from keras_transfer.finetune import GradualUnfreezing  # noqa: E402
from keras_transfer.finetune import StayNear  # noqa: E402
from keras_transfer.finetune import add_lora  # noqa: E402
from keras_transfer.finetune import fine_tune  # noqa: E402
from keras_transfer.finetune import freeze  # noqa: E402
from keras_transfer.finetune import l2_sp  # noqa: E402
from keras_transfer.finetune import layerwise_optimizer  # noqa: E402
from keras_transfer.finetune import refresh_training  # noqa: E402
from keras_transfer.finetune import resume_lora  # noqa: E402
from keras_transfer.finetune import unfreeze  # noqa: E402
from keras_transfer.hub import HubLayer  # noqa: E402
from keras_transfer.multitask import MultiTaskModel  # noqa: E402
from keras_transfer.multitask import task_batches  # noqa: E402
from keras_transfer.quantize import quantize_aware  # noqa: E402
from keras_transfer.quantize import to_tf_keras  # noqa: E402
from keras_transfer.transferability import leep  # noqa: E402
from keras_transfer.transferability import logme  # noqa: E402
from keras_transfer.zeroshot import HingeRankingLoss  # noqa: E402
from keras_transfer.zeroshot import ZeroShotClassifier  # noqa: E402
from keras_transfer.zeroshot import hinge_ranking_loss  # noqa: E402
from keras_transfer.zeroshot import zero_shot_evaluation  # noqa: E402

__version__ = "0.2.0"
