"""Knowledge distillation: the Distiller, its loss strategies, teachers from files, a QAT student.

- distiller.py: `Distiller(teacher, student)`, a Keras model on the toolkit's one training step.
- losses.py: the "kl" and "mse" terms as functions and as `keras.distillation.DistillationLoss`
  strategies (`KLDistillation`, `MSEDistillation`, `HintDistillation`).
- teachers.py: teachers from a `.keras` file, a SavedModel folder or TF-Hub; the teacher cache.
- views.py: the one augmented (and mixed) view both networks see; cached teacher views;
  unlabelled inputs beside the labelled.
- schedule.py: `DistillationSchedule`, alpha by epoch (stopping the distillation term early).
- quantize_aware.py: `distill_quantize_aware`, distillation into an int8 (tfmot) student.
"""

from keras_transfer.distill.distiller import TEACHER_OUTPUTS  # noqa: F401
from keras_transfer.distill.distiller import Distiller  # noqa: F401
from keras_transfer.distill.losses import HintDistillation  # noqa: F401
from keras_transfer.distill.losses import KLDistillation  # noqa: F401
from keras_transfer.distill.losses import MSEDistillation  # noqa: F401
from keras_transfer.distill.losses import kl_distillation_loss  # noqa: F401
from keras_transfer.distill.losses import kl_per_example  # noqa: F401
from keras_transfer.distill.losses import mse_distillation_loss  # noqa: F401
from keras_transfer.distill.losses import mse_per_example  # noqa: F401
from keras_transfer.distill.quantize_aware import distill_quantize_aware  # noqa: F401
from keras_transfer.distill.schedule import DistillationSchedule  # noqa: F401
from keras_transfer.distill.teachers import saved_model_teacher  # noqa: F401
