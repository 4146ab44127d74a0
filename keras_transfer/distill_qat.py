"""The first release's path of `distill_quantize_aware`: now
`keras_transfer.distill.quantize_aware`.
"""

from keras_transfer.distill.quantize_aware import LOSSES  # noqa: F401
from keras_transfer.distill.quantize_aware import distill_quantize_aware  # noqa: F401
from keras_transfer.distill.quantize_aware import distillation_objective  # noqa: F401
from keras_transfer.distill.quantize_aware import label_accuracy  # noqa: F401
from keras_transfer.distill.quantize_aware import pack_targets  # noqa: F401
