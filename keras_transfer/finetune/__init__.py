"""Fine-tuning tools, one concept a module.

- freezing.py: `freeze`, `unfreeze` (BatchNorm stays in inference mode), `refresh_training`.
- gradual.py: `GradualUnfreezing`, a callback that opens the backbone block by block.
- layerwise.py: `layerwise_optimizer`, lower learning rates nearer the input.
- l2_sp.py: `l2_sp` and its regularizer `StayNear`, a pull towards the pretrained weights.
- lora.py: `add_lora`, low-rank adapters; `resume_lora` after loading a LoRA model.
- recipe.py: `fine_tune`, the two-phase recipe.
"""

from keras_transfer.finetune.freezing import freeze  # noqa: F401
from keras_transfer.finetune.freezing import leaf_layers  # noqa: F401
from keras_transfer.finetune.freezing import refresh_training  # noqa: F401
from keras_transfer.finetune.freezing import unfreeze  # noqa: F401
from keras_transfer.finetune.gradual import GradualUnfreezing  # noqa: F401
from keras_transfer.finetune.l2_sp import StayNear  # noqa: F401
from keras_transfer.finetune.l2_sp import l2_sp  # noqa: F401
from keras_transfer.finetune.layerwise import layerwise_optimizer  # noqa: F401
from keras_transfer.finetune.lora import add_lora  # noqa: F401
from keras_transfer.finetune.lora import resume_lora  # noqa: F401
from keras_transfer.finetune.recipe import fine_tune  # noqa: F401
